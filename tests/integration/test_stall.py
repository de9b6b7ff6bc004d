"""The stall watchdog end to end: a worker whose agent stops taking events while records wait
exits with status 75 and says why (docs/operations.md "Stall watchdog")."""

from __future__ import annotations

import time
from itertools import islice

import pytest

from stream import Settings
from stream.replay import iter_dataset_events, produce_events
from stream.stall import EXIT_STALLED

from .conftest import REPO, Worker, wait_for

pytestmark = pytest.mark.integration


def test_a_stalled_worker_exits_with_75_and_names_the_cause(stream_settings: Settings, tmp_path: object) -> None:
    s = stream_settings.with_(batch_size=1, stall_exit_s=3.0, standby_replicas=0)
    first = next(iter(iter_dataset_events("ml-100k", s)))
    events = [e for e in islice(iter_dataset_events("ml-100k", s), 2000) if e["user_id"] == first["user_id"]][:20]
    assert len(events) >= 5  # one user: one partition, so records wait behind the hung batch
    log = stream_settings.state_dir.parent / "stalled.log"
    w = Worker(s, log, module="tests.integration.stalled_worker", args=(), cwd=REPO).start()
    t0 = time.monotonic()
    produce_events(s, events, progress=False)
    wait_for(lambda: not w.alive(), timeout=90, what="the stalled worker to exit")
    took = time.monotonic() - t0
    assert w.proc is not None and w.proc.returncode == EXIT_STALLED, w.tail()
    text = log.read_text(errors="replace")
    assert "stalled: the agents saw no event for over 3 s while" in text
    assert f"records wait in {s.topic('events')}[" in text  # the profile agent's partition, not events.raw
    assert took >= 3.0  # not before the configured time
    print(f"\n[stall watchdog] exited {EXIT_STALLED} {took:.1f} s after the events were sent")
