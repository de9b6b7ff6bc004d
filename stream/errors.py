"""Root exception of the stream package; messages name the cause and the fix."""

__all__ = ["StreamError", "BrokerError", "ConfigError", "WorkerExited"]


class StreamError(Exception):
    """Base class of every error raised by `stream`."""


class BrokerError(StreamError):
    """The Kafka broker is unreachable, or the local broker cannot be started or stopped."""


class ConfigError(StreamError):
    """A setting that cannot be used."""


class WorkerExited(StreamError, RuntimeError):
    """A worker child process (stream/process.py) ended when it was expected to run."""
