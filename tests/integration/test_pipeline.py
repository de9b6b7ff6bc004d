"""End to end through the real broker: ML-100k events in, profiles and recommendations out,
equal to the offline model pass (stream/batch parity)."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest

from model import ProfileModel
from stream import Settings
from stream.replay import iter_dataset_events, produce_events

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration

N_EVENTS = 5000


@pytest.mark.parametrize("batch_size", [1, 64])
def test_stream_batch_parity(stream_settings: Settings, worker_factory: Callable[..., Worker], batch_size: int) -> None:
    s = stream_settings.with_(batch_size=batch_size)
    events = list(iter_dataset_events("ml-100k", s))[:N_EVENTS]
    histories = by_user(events)
    assert len(events) == N_EVENTS and len(histories) >= 50
    worker = worker_factory(s).start()
    outputs = Outputs(s)
    t0 = time.perf_counter()
    produce_events(s, events, progress=False)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=240,
             what=f"profiles of {len(histories)} users", poll=outputs.poll)
    elapsed = time.perf_counter() - t0
    print(f"\n[parity batch={batch_size}] {N_EVENTS} events, {len(histories)} users: {elapsed:.2f} s end to end "
          f"= {N_EVENTS / elapsed:.0f} events/s")
    worst = assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
    print(f"[parity batch={batch_size}] max |stream - offline| = {worst:.2e}; {outputs.validated} records schema-valid")
    m = worker.metrics()
    assert m["profilestream_events_applied_total"] == N_EVENTS
    assert m["profilestream_events_duplicate_total"] == 0
    assert not outputs.dlq
    outputs.close()


def test_restart_recovers_state(stream_settings: Settings, worker_factory: Callable[..., Worker]) -> None:
    """SIGTERM the worker, start it again: state comes back and parity holds for later events."""
    s = stream_settings.with_(batch_size=32)
    events = list(iter_dataset_events("ml-100k", s))[:3000]
    first, second = events[:1500], events[1500:]
    worker = worker_factory(s).start()
    outputs = Outputs(s)
    produce_events(s, first, progress=False)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in by_user(first).items()}), timeout=120,
             what="first half applied", poll=outputs.poll)
    assert worker.stop() == 0, worker.tail()
    worker.start()
    produce_events(s, second, progress=False)
    histories = by_user(events)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=120,
             what="second half applied", poll=outputs.poll)
    continuing = [u for u in by_user(second) if u in by_user(first)]
    assert continuing, "the second half must continue users of the first half"
    assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
    assert worker.metrics()["profilestream_events_applied_total"] == len(second)
    outputs.close()


def test_bad_input_goes_to_dlq_and_good_events_are_applied(stream_settings: Settings,
                                                           worker_factory: Callable[..., Worker]) -> None:
    from tests.malformed import MALFORMED

    s = stream_settings.with_(batch_size=16)
    good = list(iter_dataset_events("ml-100k", s))[:400]
    unknown_item = {"user_id": "zz-unknown", "item_id": "no-such-item", "type": "view", "ts": 893000000.0}
    mixed: list[Any] = []
    bad_payloads = [raw for _, raw in MALFORMED]
    for j, ev in enumerate(good):  # interleave: one bad message after every few good ones
        mixed.append(ev)
        if j % 8 == 0 and j // 8 < len(bad_payloads):
            mixed.append(bad_payloads[j // 8])
    mixed.append(unknown_item)
    assert sum(1 for x in mixed if not isinstance(x, dict)) == len(MALFORMED) >= 25
    worker = worker_factory(s).start()
    pid = worker.proc.pid  # type: ignore[union-attr]
    outputs = Outputs(s)
    produce_events(s, mixed, progress=False)
    histories = by_user(good)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()})
             and len(outputs.dlq) >= len(MALFORMED) + 1, timeout=120, what="good events applied and DLQ filled",
             poll=outputs.poll)
    normalize_dlq = [d for d in outputs.dlq if d["stage"] == "normalize"]
    assert len(normalize_dlq) == len(MALFORMED)
    sent_bad = sorted((raw or b"") for raw in bad_payloads)
    import base64

    got_bad = sorted(base64.b64decode(d["raw_base64"] or "") if not d["raw_truncated"] else b"" for d in normalize_dlq)
    assert [b for b in got_bad if b] == [b for b in sent_bad if len(b) <= 256 * 1024 and b]
    for d in normalize_dlq:
        assert len(d["reason"]) > 8 and d["source"]["offset"] >= 0
    profile_dlq = [d for d in outputs.dlq if d["stage"] == "profile"]
    assert len(profile_dlq) == 1 and "not in the catalogue" in profile_dlq[0]["reason"]
    assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
    assert worker.alive() and worker.proc.pid == pid and worker.starts == 1  # type: ignore[union-attr]
    m = worker.metrics()
    assert m["profilestream_events_in_total"] == len(mixed)  # counters never reset: no restart
    outputs.close()
