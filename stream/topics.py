"""Topic names and their creation. profilestream creates its topics itself (explicit partitions
and configs) instead of relying on broker auto-creation."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BrokerError
from .settings import Settings

__all__ = ["TopicNames", "topic_names", "ensure_topics", "check_single_hop_partitions"]


@dataclass(frozen=True)
class TopicNames:
    raw: str
    events: str
    dlq: str
    profiles: str
    recommendations: str

    def all(self) -> tuple[str, ...]:
        return (self.raw, self.events, self.dlq, self.profiles, self.recommendations)


def topic_names(settings: Settings) -> TopicNames:
    t = settings.topic
    return TopicNames(t("events.raw"), t("events"), t("events.dlq"), t("profiles"), t("recommendations"))


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    n = topic_names(settings)
    week = str(7 * 24 * 3600 * 1000)
    return {
        n.raw: {"retention.ms": week},
        n.events: {"retention.ms": week},
        n.dlq: {"retention.ms": str(30 * 24 * 3600 * 1000), "max.message.bytes": "2097152"},
        # The latest profile per user is the product: compaction keeps it forever, and erasure
        # tombstones remove it.
        n.profiles: {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"},
        n.recommendations: {"cleanup.policy": "compact", "segment.ms": "3600000"},
    }


def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create any missing profilestream topic; return the names created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # not in __all__

    admin = AdminClient(settings.confluent_config())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BrokerError(f"Kafka not reachable at {settings.bootstrap_servers} ({exc.args[0]}) — run "
                          "`profilestream broker up`, or set PROFILESTREAM_BOOTSTRAP_SERVERS") from None
    new = [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor, config=cfg)
           for name, cfg in topic_configs(settings).items() if name not in existing]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent creator won; fine
                raise BrokerError(f"could not create topic {name}: {exc.args[0].str()}") from None
    return created


def check_single_hop_partitions(settings: Settings, *, timeout: float = 30.0) -> None:
    """In single-hop mode the state table is partitioned like events.raw (a user's state lives in
    the partition of its raw events), so events.raw must have exactly `partitions` partitions.
    Raises ConfigError naming both counts and the fix."""
    from confluent_kafka.admin import AdminClient

    from .errors import ConfigError

    raw = topic_names(settings).raw
    meta = AdminClient(settings.confluent_config()).list_topics(topic=raw, timeout=timeout)
    have = len(meta.topics[raw].partitions) if raw in meta.topics and meta.topics[raw].error is None else None
    if have is not None and have != settings.partitions:
        raise ConfigError(f"{raw} has {have} partitions but PROFILESTREAM_PARTITIONS is {settings.partitions}: in "
                          f"single-hop mode the state table is partitioned like {raw}; set "
                          f"PROFILESTREAM_PARTITIONS={have}, or run with PROFILESTREAM_SINGLE_HOP=0")
