"""Root exception of the stream package; messages name the cause and the fix."""

__all__ = ["StreamError", "BrokerError", "ConfigError"]


class StreamError(Exception):
    """Base class of every error raised by `stream`."""


class BrokerError(StreamError):
    """The Kafka broker is unreachable, or the local broker cannot be started or stopped."""


class ConfigError(StreamError):
    """A setting that cannot be used."""
