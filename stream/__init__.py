"""profilestream's stream package: settings, the Faust app and agents, the local broker,
replay and the CLI. Entry points: `profilestream` (stream.cli:main), `create_app`, `Settings`."""

from .broker import broker_down, broker_status, broker_up, wait_reachable
from .errors import BrokerError, ConfigError, StreamError
from .settings import Settings
from .topics import TopicNames, ensure_topics, topic_names

__all__ = [
    "BrokerError", "ConfigError", "Settings", "StreamError", "TopicNames", "broker_down", "broker_status",
    "broker_up", "ensure_topics", "topic_names", "wait_reachable",
]
