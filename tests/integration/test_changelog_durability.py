"""The offsets of an event are committed only after its state change is on the changelog topic.

Faust writes a table's changelog records through its producer buffer, and its commit flushes that
buffer first, but the flush gives up after 0.1 s without progress (faust-streaming 0.15
`ProducerBuffer.flush_atmost`), and the commit goes out all the same. A worker that then died, or
handed its partitions to another worker, left the committed events' state changes unwritten: the
next owner restored an older state from the changelog and never applied those events again (the
lost events and stale records of the CI rebalance run of 2026-12-07; docs/operations.md
"Rebalances and Faust", item 6).

With a commit wait shorter than the slowed changelog, commits are skipped. Faust then counts their
offsets as committed all the same and would not send them again while no new event arrives
(stream.sequencer.HeldCommits): the second case shows that every offset still reaches the broker."""

from __future__ import annotations

import signal
from itertools import islice
from typing import Any, Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from model import ProfileModel
from stream import Settings
from stream.process import free_port
from stream.replay import iter_dataset_events, produce_events

from .conftest import REPO, Worker, wait_caught_up, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration


def _committed_everything(s: Settings, topics: list[str]) -> bool:
    c = Consumer({**s.confluent_config(), "group.id": s.app_id, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(s.partitions)]
        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=10)}
        ends = {(t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for t, p in committed}
        return all(ends[tp] <= 0 or committed[tp] >= ends[tp] for tp in committed)
    finally:
        c.close()


@pytest.mark.parametrize("commit_wait_s", [None, 0.05], ids=["commit-waits", "commit-skipped-then-sent"])
def test_a_commit_waits_for_the_changelog_so_a_new_owner_restores_every_committed_event(
        stream_settings: Settings, worker_factory: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
        commit_wait_s: float | None) -> None:
    if commit_wait_s is not None:
        monkeypatch.setenv("SLOW_CHANGELOG_COMMIT_WAIT_S", str(commit_wait_s))
    s = stream_settings.with_(standby_replicas=0, stall_exit_s=0.0)
    events = list(islice(iter_dataset_events("ml-100k", s, event_ids=False), 400))
    first, later = events[:300], events[300:]
    log = stream_settings.state_dir.parent / "slow-changelog.log"
    slow = Worker(s, log, module="tests.integration.slow_changelog_worker", args=(), cwd=REPO).start()
    outputs = Outputs(s)
    try:
        produce_events(s, first, progress=False)
        histories: dict[str, list[dict[str, Any]]] = by_user(first)
        wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=120,
                 what="the first events applied", poll=outputs.poll)
        # Every event's offset committed: from here on, nobody reads these events again.
        wait_for(lambda: _committed_everything(s, [s.topic("events.raw"), s.topic("events")]), timeout=120,
                 what="the offsets of every event committed")
        skipped = slow.metrics().get('profilestream_commits_held_total{reason="changelog"}', 0.0)
        assert skipped == log.read_text(errors="replace").count("commit skipped")
        if commit_wait_s is not None:
            assert skipped > 0, f"no commit was skipped, so this case tests nothing:\n{slow.tail()}"
        assert slow.stop(signal.SIGKILL) == -signal.SIGKILL
        # A worker with empty local state: it has only what the changelog topic holds.
        fresh = worker_factory(s.with_(state_dir=stream_settings.state_dir.parent / "fresh-state",
                                       web_port=free_port()), "fresh").start()
        produce_events(s, later, progress=False)
        for u, h in by_user(later).items():
            histories.setdefault(u, []).extend(h)
        want = {u: len(h) for u, h in histories.items()}
        wait_caught_up(outputs, want, timeout=60, what="every user's profile to count all its events",
                       logs=stream_settings.state_dir.parent)
        worst = assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
        m = fresh.metrics()
    finally:
        outputs.close()
        if slow.alive():
            slow.stop(signal.SIGKILL)
    print(f"\n[changelog] {len(first)} events committed by a worker whose changelog records took "
          f"0.25 s each to leave the buffer ({skipped:.0f} commits skipped and sent later), then kill -9; a worker "
          f"restored from the changelog alone applied {m['profilestream_events_applied_total']:.0f} more, "
          f"every profile exact (max |diff| {worst:.1e})")
