"""The stall watchdog end to end: a worker whose agent stops taking events while records wait
exits with status 75 and says why (docs/operations.md "Stall watchdog")."""

from __future__ import annotations

import signal
import time
from itertools import islice
from typing import Any, Callable

import pytest

from bench.chaos import READ_AGAIN_LINES, read_again_counts
from model import ProfileModel
from stream import Settings
from stream.process import free_port
from stream.replay import iter_dataset_events, produce_events
from stream.stall import EXIT_STALLED

from .conftest import REPO, Worker, wait_for
from .helpers import Outputs, assert_parity, caught_up

pytestmark = pytest.mark.integration


def _one_users_events(s: Settings) -> list[dict[str, Any]]:
    """Up to 20 ML-100k events of the first user: one user, one partition, so later records wait
    behind whatever holds the first."""
    uid = next(iter(iter_dataset_events("ml-100k", s)))["user_id"]
    events = [e for e in islice(iter_dataset_events("ml-100k", s), 2000) if e["user_id"] == uid][:20]
    assert len(events) >= 5
    return events


def _until_it_exits(stream_settings: Settings, module: str) -> tuple[Settings, list[dict[str, Any]], str, float]:
    """Run `tests.integration.<module>` (3 s stall time), send one user's events, and wait until the
    worker exits with 75: its settings, the events, its log and the seconds from the send to the exit."""
    s = stream_settings.with_(batch_size=1, stall_exit_s=3.0, standby_replicas=0)
    events = _one_users_events(s)
    log = stream_settings.state_dir.parent / f"{module}.log"
    w = Worker(s, log, module=f"tests.integration.{module}", args=(), cwd=REPO).start()
    t0 = time.monotonic()
    produce_events(s, events, progress=False)
    wait_for(lambda: not w.alive(), timeout=90, what=f"the worker ({module}) to exit")
    took = time.monotonic() - t0
    assert w.proc is not None and w.proc.returncode == EXIT_STALLED, w.tail()
    return s, events, log.read_text(errors="replace"), took


def test_a_stalled_worker_exits_with_75_and_names_the_cause(stream_settings: Settings) -> None:
    s, _, text, took = _until_it_exits(stream_settings, "stalled_worker")
    assert "stalled: the agents saw no event for over 3 s while" in text
    assert f"records wait in {s.topic('events')}[" in text  # the profile agent's partition, not events.raw
    assert took >= 3.0  # not before the configured time
    print(f"\n[stall watchdog] exited {EXIT_STALLED} {took:.1f} s after the events were sent")


def test_a_worker_whose_fetches_stop_is_ended_and_a_fresh_one_applies_every_event(
        stream_settings: Settings, worker_factory: Callable[..., Worker]) -> None:
    """The upstream stall's symptom, injected: after the first batch no fetch is answered, silently,
    while the group stays joined. The watchdog must end that worker, and the worker started after
    it must apply every event exactly once."""
    s = stream_settings.with_(batch_size=1, stall_exit_s=3.0, standby_replicas=0)
    events = _one_users_events(s)
    first = events[0]
    log = stream_settings.state_dir.parent / "deaf.log"
    deaf = Worker(s, log, module="tests.integration.deaf_worker", args=(), cwd=REPO).start()
    outputs = Outputs(s)
    produce_events(s, events[:1], progress=False)
    wait_for(lambda: caught_up(outputs, {first["user_id"]: 1}), timeout=60, what="the first event applied",
             poll=outputs.poll)
    t0 = time.monotonic()
    produce_events(s, events[1:], progress=False)  # fetched by nobody
    wait_for(lambda: not deaf.alive(), timeout=90, what="the deaf worker to exit")
    took = time.monotonic() - t0
    assert deaf.proc is not None and deaf.proc.returncode == EXIT_STALLED, deaf.tail()
    assert "stalled: the agents saw no event for over 3 s while" in log.read_text(errors="replace")
    assert outputs.profiles[first["user_id"]]["events_seen"] == 1  # the rest really waited
    fresh = worker_factory(s, "fresh").start()
    wait_for(lambda: caught_up(outputs, {first["user_id"]: len(events)}), timeout=120,
             what=f"all {len(events)} events applied by the fresh worker", poll=outputs.poll)
    m = fresh.metrics()
    assert m["profilestream_events_applied_total"] == len(events) - 1, m
    assert m["profilestream_events_duplicate_total"] == 0
    assert_parity(ProfileModel.load(s.artifact_path), outputs, {first["user_id"]: events}, s.top_k)
    outputs.close()
    print(f"\n[stall watchdog] deaf fetcher: exited {EXIT_STALLED} {took:.1f} s after the events were sent; "
          f"a fresh worker applied the other {len(events) - 1}")


def test_a_worker_whose_seek_never_reaches_the_fetch_loop_is_ended(stream_settings: Settings) -> None:
    """Records held back for a seek that never comes (tests/integration/unsought_worker.py): no
    partition has a record seen or a seek in this generation, and the watchdog must still count its
    records as waiting, from the committed offset, and end the worker."""
    _, events, text, took = _until_it_exits(stream_settings, "unsought_worker")
    assert f"stalled: the agents saw no event for over 3 s while {len(events)} records wait in" in text, text[-3000:]
    print(f"\n[stall watchdog] seek never reached the fetch loop: exited {EXIT_STALLED} {took:.1f} s after the "
          f"events were sent")


@pytest.mark.parametrize("hidden", [False, True], ids=["fetch-loop-sees-it", "only-the-watchdog-sees-it"])
def test_records_fetched_but_never_handed_over_are_read_again(stream_settings: Settings, hidden: bool) -> None:
    """The first round of records after the seek is dropped after the Kafka client counted it
    consumed (tests/integration/dropping_worker.py), and nothing new arrives: the fetch sits at the
    end, the agents saw nothing. Every event must still be applied, by the same worker, without a
    restart. Dropped where faust-streaming's `getmany` drops records, the fetch loop reads them
    again itself, with the watchdog off; dropped out of its sight (`--hide`), the watchdog's check
    sends the fetch back."""
    s = stream_settings.with_(batch_size=1, stall_exit_s=20.0 if hidden else 0.0, standby_replicas=0)
    events = _one_users_events(s)
    uid = events[0]["user_id"]
    produce_events(s, events, progress=False)  # all there before the worker starts: one round
    log = stream_settings.state_dir.parent / "dropping.log"
    t0 = time.monotonic()
    w = Worker(s, log, module="tests.integration.dropping_worker", args=("--hide",) if hidden else (),
               cwd=REPO).start()
    outputs = Outputs(s)
    try:
        wait_for(lambda: caught_up(outputs, {uid: len(events)}), timeout=60,
                 what=f"all {len(events)} events applied after the dropped round", poll=outputs.poll)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{w.tail()}") from None
    took = time.monotonic() - t0
    assert w.alive(), w.tail()
    text = log.read_text(errors="replace")
    if hidden:
        assert "but handed over only up to" in text, text[-3000:]
        assert "were not yielded by Faust's getmany" not in text, text[-3000:]
    else:
        assert "were not yielded by Faust's getmany" in text and "; reading from 0 again" in text, text[-3000:]
    # /metrics says which path read them again
    m = w.metrics()
    again = {r: m[f'profilestream_read_again_total{{reason="{r}"}}'] for r in READ_AGAIN_LINES}
    assert (again["watchdog"] >= 1 and again["not_yielded"] == 0) if hidden else \
        (again["not_yielded"] >= 1 and again["watchdog"] == 0), again
    assert read_again_counts([text]) == again  # what `profilestream chaos` reads from a worker's log
    assert_parity(ProfileModel.load(s.artifact_path), outputs, {uid: events}, s.top_k)
    outputs.close()
    w.stop()
    by = "the watchdog" if hidden else "the fetch loop"
    print(f"\n[dropped round] read again by {by}; every event applied {took:.1f} s after the start")


def test_a_worker_exits_when_the_stable_group_leaves_source_partitions_to_nobody(stream_settings: Settings) -> None:
    """The gap the per-partition check leaves: a worker with no source partitions sees nothing to
    do. The group check names the partitions no member holds and ends the worker like a stall."""
    s = stream_settings.with_(stall_exit_s=3.0, standby_replicas=0)
    log = stream_settings.state_dir.parent / "orphaning.log"
    w = Worker(s, log, module="tests.integration.orphaning_worker", args=(), cwd=REPO).start()
    t0 = time.monotonic()
    wait_for(lambda: not w.alive(), timeout=120, what="the worker of an orphaning group to exit")
    took = time.monotonic() - t0
    assert w.proc is not None and w.proc.returncode == EXIT_STALLED, w.tail()
    text = log.read_text(errors="replace")
    assert "have been assigned to no member of consumer group" in text, w.tail()
    for topic in (s.topic("events.raw"), s.topic("events")):
        for p in range(s.partitions):
            assert f"{topic}[{p}]" in text, (topic, p, w.tail())
    print(f"\n[stall watchdog] orphaned source partitions: exited {EXIT_STALLED} {took:.1f} s after start")


def test_group_view_names_the_partitions_no_member_holds(broker: Settings) -> None:
    """GroupView against the real broker: a stable group whose only member subscribes to one topic
    leaves another topic's partitions to nobody; a member that subscribes to it takes them."""
    import uuid

    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic

    from stream.stall import GroupView

    conf = broker.confluent_config()
    tag = uuid.uuid4().hex[:8]
    held, left, group = f"gv{tag}.held", f"gv{tag}.left", f"gv{tag}.group"
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(held, 1, 1), NewTopic(left, 2, 1)]).values():
        f.result(timeout=30)
    view = GroupView(conf, group)
    assert view([held, left]) is None  # no such group yet: nothing to judge by
    consumers = []
    try:
        def member(topics: list[str]) -> Consumer:
            c = Consumer({**conf, "group.id": group, "session.timeout.ms": 6000})
            c.subscribe(topics)
            consumers.append(c)
            return c

        member([held])

        def orphans_are(expected: list[tuple[str, int]]) -> bool:
            for c in consumers:
                c.poll(0.1)
            return view([held, left]) == expected

        wait_for(lambda: orphans_are([(left, 0), (left, 1)]), timeout=60, what="the left topic's partitions orphaned")
        member([left])
        wait_for(lambda: orphans_are([]), timeout=60, what="the second member to take the left topic")
    finally:
        for c in consumers:
            c.close()
        admin.delete_topics([held, left])


def test_a_worker_that_gets_back_partitions_another_worker_finished_is_not_stalled(
        stream_settings: Settings, worker_factory: Callable[..., Worker]) -> None:
    """A false stall: a worker that lost partitions in a rebalance and got them back after another
    worker had read them to the end still remembered the last offsets *it* had seen there, long
    behind the end offsets, so with nothing new arriving it counted those records as waiting and
    exited with 75 (found 2026-12-07 in a CI rebalance run). Only this generation's progress counts:
    here, the committed offset the partition was sought to."""
    s = stream_settings.with_(stall_exit_s=3.0, standby_replicas=0, partitions=3)
    events = list(islice(iter_dataset_events("ml-100k", s), 1200))
    expected: dict[str, int] = {}
    first = worker_factory(s, "first").start()
    outputs = Outputs(s)  # the worker created the topics

    def send(part: list[dict[str, Any]]) -> None:
        produce_events(s, part, progress=False)
        for e in part:
            expected[str(e["user_id"])] = expected.get(str(e["user_id"]), 0) + 1
        wait_for(lambda: caught_up(outputs, expected), timeout=120, what=f"{len(expected)} users caught up",
                 poll=outputs.poll)

    send(events[:600])
    second = worker_factory(s.with_(web_port=free_port(), state_dir=s.state_dir.parent / "state-second"), "second").start()
    send(events[600:])  # the second worker applies those of the partitions it took
    took_some = second.metrics()["profilestream_events_applied_total"]
    assert 0 < took_some < 600, took_some
    assert second.stop(signal.SIGTERM) == 0
    checks = first.metrics()["profilestream_stall_checks_total"]
    # Four checks (every 5 s) after the first worker got the partitions back, with a 3 s stall time.

    def four_checks_or_exit() -> bool:
        if not first.alive():
            return True
        try:
            return first.metrics()["profilestream_stall_checks_total"] >= checks + 4
        except OSError:  # exiting meanwhile: the next poll sees it gone
            return False

    wait_for(four_checks_or_exit, timeout=90, what="four stall checks after the second worker left")
    assert first.alive(), first.tail()
    assert "stalled:" not in first.log.read_text(errors="replace")
    assert first.metrics()["profilestream_records_waiting"] == 0
    outputs.close()
    print(f"\n[stall watchdog] partitions taken back after the other worker applied {took_some:.0f} events there: "
          f"no exit in {first.metrics()['profilestream_stall_checks_total'] - checks:.0f} checks")
