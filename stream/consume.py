"""Plain confluent-kafka readers of the output topics (no consumer group, all partitions):
used by `tail`, the demo's live view, the tests and the bench."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, cast

from .settings import Settings

__all__ = ["TopicReader", "Record", "OutputFollower"]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any] | None  # None = tombstone
    timestamp_ms: int
    headers: dict[str, bytes]


class TopicReader:
    """Reads every partition of `topics` from `start` ('earliest', 'latest' or N = last N per
    partition) without joining a consumer group."""

    def __init__(self, settings: Settings, topics: list[str], *, start: str | int = "earliest") -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        conf = settings.confluent_config()
        conf.update({"group.id": f"profilestream-reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10, "enable.partition.eof": False})
        self.consumer = Consumer(conf)
        tps = []
        for topic in topics:
            deadline = time.monotonic() + 15
            while True:  # a topic created a moment ago may not be in the metadata yet
                md = self.consumer.list_topics(topic, timeout=10).topics[topic]
                if md.error is None and md.partitions:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {topic}: {md.error.str() if md.error else 'no partitions'}")
                time.sleep(0.1)
            for p in md.partitions:
                if start == "earliest":
                    off = OFFSET_BEGINNING
                elif start == "latest":
                    # The end offset now, not OFFSET_END: that is resolved only when fetching starts,
                    # so records produced right after this constructor returned could be skipped.
                    off = self._watermarks(topic, p)[1]
                else:
                    lo, hi = self._watermarks(topic, p)
                    off = max(lo, hi - int(start))
                tps.append(TopicPartition(topic, p, off))
        self.tps = tps
        self.consumer.assign(tps)

    def _watermarks(self, topic: str, partition: int, timeout: float = 15.0) -> tuple[int, int]:
        """(low, high) offsets; retried for `timeout` s (a topic created a moment ago may have no
        leader yet: NOT_LEADER_FOR_PARTITION), then the broker's error is raised."""
        from confluent_kafka import KafkaException, TopicPartition

        deadline = time.monotonic() + timeout
        while True:
            try:
                lo, hi = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                return int(lo), int(hi)
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): self._watermarks(tp.topic, tp.partition)[1] for tp in self.tps}

    def poll(self, timeout: float = 0.5, max_records: int = 1000) -> list[Record]:
        # poll() returns as soon as one record is there; consume(n, t) would wait for n or t.
        first = self.consumer.poll(timeout)
        msgs = [first] + self.consumer.consume(max_records - 1, 0) if first is not None else []
        out = []
        for msg in msgs:
            if msg.error() is not None:
                continue
            raw = msg.value()
            # a message without an error always has its topic, partition and offset
            out.append(Record(cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset()), msg.key(),
                              json.loads(raw) if raw is not None else None, msg.timestamp()[1],
                              cast(dict[str, bytes], dict(msg.headers() or []))))
        return out

    def read_to_end(self, *, timeout: float = 30.0) -> Iterator[Record]:
        """Every record up to the end offsets as of the call."""
        ends = self.end_offsets()
        pos: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(pos.get(k, -1) + 1 >= v for k, v in ends.items() if v > 0):
                return
            for r in self.poll(0.2):
                pos[(r.topic, r.partition)] = r.offset
                yield r
        raise TimeoutError(f"did not reach the end offsets {ends} within {timeout} s (at {pos})")

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "TopicReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class OutputFollower:
    """The latest profile and recommendations per user, tombstones and DLQ records, read from a
    deployment's output topics. `validate(kind, value)` (kind: profile | recommendations | dlq)
    is called on every non-null record when given (tests check the JSON Schemas with it)."""

    def __init__(self, settings: Settings,
                 validate: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        from .topics import topic_names

        self.names = topic_names(settings)
        self.reader = TopicReader(settings, [self.names.profiles, self.names.recommendations, self.names.dlq])
        self.validate = validate
        self.profiles: dict[str, dict[str, Any]] = {}
        self.recs: dict[str, dict[str, Any]] = {}
        self.dlq: list[dict[str, Any]] = []
        self.tombstones: dict[str, set[str]] = {"profiles": set(), "recommendations": set()}
        self.validated = 0
        self.stale = 0  # records older (by seq) than one already held for the same user
        self.last_record_at = time.monotonic()

    def poll(self, timeout: float = 0.2) -> int:
        records = self.reader.poll(timeout, 5000)
        for r in records:
            key = r.key.decode("utf-8", "replace") if r.key else ""  # DLQ keys are whatever producers sent
            kind = ("dlq" if r.topic == self.names.dlq else
                    "profile" if r.topic == self.names.profiles else "recommendations")
            if r.value is None:
                if kind != "dlq":
                    self.tombstones["profiles" if kind == "profile" else "recommendations"].add(key)
                    (self.profiles if kind == "profile" else self.recs).pop(key, None)
                continue
            if self.validate is not None:
                self.validate(kind, r.value)
                self.validated += 1
            if kind == "dlq":
                self.dlq.append(r.value)
                continue
            store = self.profiles if kind == "profile" else self.recs
            held = store.get(key)
            # A worker giving up a partition in a rebalance may still finish its in-flight
            # micro-batch, so an older record of a user can arrive after a newer one from the
            # partition's new owner: keep the highest per-user `seq`.
            if held is not None and int(r.value.get("seq", 0)) < int(held.get("seq", 0)):
                self.stale += 1
                continue
            store[key] = r.value
        if records:
            self.last_record_at = time.monotonic()
        return len(records)

    def close(self) -> None:
        self.reader.close()
