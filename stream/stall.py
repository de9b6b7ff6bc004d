"""The stall watchdog: a worker whose agents see no event while their partitions hold unread
records exits with `EXIT_STALLED`, so its supervisor starts a fresh one.

Why: faust-streaming 0.15 / aiokafka 0.14 can stop fetching for good after a broker outage: the
coordinator is marked dead, found again, offsets commit, and then nothing is fetched, with no
error logged (faust-streaming issue #523 describes the same). Seen once in the broker-restart
chaos test (2026-11-29: 2,588 of 4,000 events never applied; the worker silent for 30 s after
the broker was back). A fresh worker resumes from the committed offsets, and the state's source
positions skip whatever is delivered twice, so exiting is safe (the kill -9 tests show it).

The decision is `StallWatch.check`; the worker's timer feeds it with the end offsets of its
assigned source partitions, read through a separate librdkafka client (the Faust consumer's own
view may be the stuck part), and with the last offset its agents saw per partition. A second
check, `GroupView` with `StallWatch.orphans_stuck`, catches what that one cannot see: source
partitions the stable group gave to no member, so that no worker holds them to judge.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

__all__ = ["StallWatch", "EXIT_STALLED", "backlog", "generation_progress", "assigned_source_partitions",
           "EndOffsets", "orphaned", "GroupView"]

#: Exit status of a worker the watchdog stopped (EX_TEMPFAIL: try again).
EXIT_STALLED = 75


def backlog(end_offsets: Mapping[tuple[str, int], int], seen: Mapping[tuple[str, int], int],
            settled: Callable[[tuple[str, int], int, int], bool] = lambda tp, seen, end: False,
            ) -> dict[tuple[str, int], int] | None:
    """Records beyond the last one an agent saw, per partition both maps know; None when no
    partition is in both (nothing to judge by). `end_offsets` are the end offsets (the next offset
    to be written; a read_committed client gets the last stable offset), `seen` the last offsets
    processed. `settled(tp, seen, end)` says the worker's fetch has read the partition up to `end`
    and handed every record over: the offsets left then hold no records (a transactional producer's
    markers, aborted records) and wait for nobody."""
    common = {tp: 0 if settled(tp, seen[tp], end) else max(0, end - 1 - seen[tp])
              for tp, end in end_offsets.items() if tp in seen}
    return common or None


def generation_progress(assigned: Iterable[tuple[str, int]], last: Mapping[tuple[str, int], tuple[int, int]],
                        generation: int, floor: Callable[[tuple[str, int]], int | None],
                        committed: Callable[[tuple[str, int]], int | None]) -> dict[tuple[str, int], int]:
    """The `seen` map for `backlog`: per assigned source partition, the last offset the agents saw in
    the current consumer `generation`, and no less than the offset before `floor(tp)`, where this
    generation's run began (the committed offset the partition was sought to; None before the seek).
    `last` maps partitions to (last offset seen, generation seen in), as agents.GapWatch keeps them.

    Why not the last offset seen, whenever: a worker that lost a partition in a rebalance and got it
    back after another worker had read it to the end still held the last offset *it* had seen there,
    far behind the end offset, and with nothing new arriving counted the records in between as
    waiting: a false stall, exit 75 (found 2026-12-07 in a CI rebalance run;
    `tests/integration/test_stall.py`).

    A partition with neither a record seen in this generation nor a seek counts from its committed
    offset, `committed(tp)` (None: nothing committed, so from offset 0). The watchdog asks only
    while no rebalance runs, when every assigned partition has had its seek: a partition without one
    never began its run, and the fetch loop holds its records back for a seek that is not coming
    (stream/sequencer.py, Verdict.WAIT), so they count as waiting and the watchdog can end the
    worker. Until 2026-12-07 (second session) such a partition was left out, or judged by an offset
    seen in an earlier generation (`tests/integration/test_stall.py`, a worker whose seeks never
    reach the fetch loop)."""
    out: dict[tuple[str, int], int] = {}
    for tp in assigned:
        prev = last.get(tp)
        start = floor(tp)
        known = ([prev[0]] if prev is not None and prev[1] == generation else []) + \
                ([start - 1] if start is not None else [])
        if known:
            out[tp] = max(known)
        else:
            at = committed(tp)
            out[tp] = (0 if at is None else at) - 1
    return out


class StallWatch:
    """Says when the agents have been idle for `stall_s` seconds although records wait for them.
    Idle with nothing to read is fine, and so is any pause while the worker rebalances or
    recovers its tables (`busy`); both restart the clock. So does an unknown backlog (the end
    offsets could not be read, e.g. while the broker is down): after an outage the worker gets
    the full `stall_s` to resume before it counts as stalled."""

    #: Seconds between two "held" log lines (`held`).
    HELD_LOG_EVERY_S = 30.0

    def __init__(self, stall_s: float, now: float | None = None) -> None:
        self.stall_s = stall_s
        self.last_progress = time.monotonic() if now is None else now
        self.last_event = self.last_progress
        self._held_logged_at: float | None = None
        self._orphans_since: float | None = None

    def saw_event(self, now: float | None = None) -> None:
        self.last_progress = self.last_event = time.monotonic() if now is None else now

    def held(self, *, behind: int | None, busy: bool, now: float | None = None) -> bool:
        """True, at most once per HELD_LOG_EVERY_S, when no event has reached an agent for over
        `stall_s` seconds and only an exemption keeps `check` from firing: a rebalance or
        suspended flow (`busy`) or an unknown backlog (`behind` None). The worker logs it, so a
        stall that sits in one of those states shows in the log (docs/operations.md "Stall
        watchdog"). Nothing waiting (`behind` 0) is plain idleness and never counts."""
        now = time.monotonic() if now is None else now
        if behind == 0 or not (busy or behind is None) or now - self.last_event <= self.stall_s:
            return False
        if self._held_logged_at is not None and now - self._held_logged_at < self.HELD_LOG_EVERY_S:
            return False
        self._held_logged_at = now
        return True

    def orphans_stuck(self, orphans: list[tuple[str, int]] | None, now: float | None = None) -> bool:
        """True once the same stable group has left source partitions to no member (`GroupView`)
        for over `stall_s` seconds without a break. A clock of its own: the worker's own events do
        not restart it, since they say nothing about the partitions nobody fetches. Unknown (None:
        rebalancing, broker not answering) or none orphaned restart it."""
        now = time.monotonic() if now is None else now
        if not orphans:
            self._orphans_since = None
            return False
        if self._orphans_since is None:
            self._orphans_since = now
        return now - self._orphans_since > self.stall_s

    def check(self, *, behind: int | None, busy: bool, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if busy or not behind:  # 0 or None
            self.last_progress = now
            return False
        return now - self.last_progress > self.stall_s


def orphaned(partitions: Iterable[tuple[str, int]], assigned: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The source partitions of a stable consumer group that no member was given: nobody fetches
    them, so every record written there waits until the group rebalances. A worker holding none
    of them sees only that it has nothing to do (idle, not stalled); this names them."""
    return sorted(set(partitions) - set(assigned))


class GroupView:
    """The consumer group as the broker's coordinator sees it, through a librdkafka admin client
    of its own: which source partitions its members hold. `__call__` returns the orphaned ones
    (`orphaned`) when the group is stable, or None when that cannot be known: the broker does not
    answer in time, or the group is rebalancing, empty or unknown. Like `EndOffsets`, a failed
    query drops the client and the next one builds a fresh one (confluentinc/librdkafka#5430)."""

    def __init__(self, conf: dict[str, Any], group: str, timeout: float = 2.0) -> None:
        self.conf = conf
        self.group = group
        self.timeout = timeout
        self._admin: object | None = None

    def __call__(self, topics: Iterable[str]) -> list[tuple[str, int]] | None:
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        try:
            if self._admin is None:
                self._admin = AdminClient(dict(self.conf))
            admin: Any = self._admin
            desc = admin.describe_consumer_groups([self.group], request_timeout=self.timeout)[self.group].result(
                timeout=self.timeout + 1)
            if desc.state != ConsumerGroupState.STABLE:
                return None
            meta = admin.list_topics(timeout=self.timeout)
            partitions = []
            for t in topics:
                tm = meta.topics.get(t)
                if tm is None or tm.error is not None or not tm.partitions:
                    return None  # a source topic the broker cannot describe now: nothing to judge by
                partitions += [(t, p) for p in tm.partitions]
            assigned = [(tp.topic, tp.partition) for m in desc.members
                        for tp in (m.assignment.topic_partitions if m.assignment else [])]
            return orphaned(partitions, assigned)
        except Exception:  # noqa: BLE001 - KafkaException, a timeout, or anything else: a watchdog never ends a worker by raising
            self._admin = None
            return None


def assigned_source_partitions(assignment: Iterable[object], topics: set[str]) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in assignment if tp.topic in topics)  # type: ignore[attr-defined]


class EndOffsets:
    """High watermarks through a librdkafka consumer of its own (no group, nothing committed).

    After a query fails the client is closed and the next query builds a fresh one: librdkafka can
    keep a partition without a leader for good after a broker restart (its metadata cache keeps
    the leader -1 it saw while the broker was away; "new leader-1 not found in cache",
    confluentinc/librdkafka#5430), and a watchdog that asked through such a client would read
    "broker does not answer" for ever, exactly after the broker outages it exists for."""

    def __init__(self, conf: dict[str, Any], timeout: float = 2.0) -> None:
        self.conf = conf
        self.timeout = timeout
        self._consumer: object | None = None

    def __call__(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int] | None:
        """{(topic, partition): high watermark}, or None when the broker does not answer in time."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        try:
            if self._consumer is None:
                self._consumer = Consumer({**self.conf, "group.id": "profilestream-stall-watch",
                                           "enable.auto.commit": False})
            return {(t, p): self._consumer.get_watermark_offsets(  # type: ignore[attr-defined]
                TopicPartition(t, p), timeout=self.timeout, cached=False)[1] for t, p in tps}
        except KafkaException:
            self.reset()
            return None

    def reset(self) -> None:
        """Drop the client (best effort); the next query starts a fresh one."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a client that will not close is dropped anyway
                pass
