"""End to end through the real broker: ML-100k events in, profiles and recommendations out,
equal to the offline model pass (stream/batch parity)."""

from __future__ import annotations

import json
import signal
import time
from typing import Any, Callable

import pytest

from model import ProfileModel
from stream import Settings
from stream.metrics import BATCH_PHASES
from stream.replay import iter_dataset_events, produce_events

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration

N_EVENTS = 5000


@pytest.mark.parametrize("batch_size,single_hop,window_ms,loop,handoff,thread", [
    (1, False, 5.0, "asyncio", "direct", False), (64, False, 5.0, "asyncio", "wait_first", True),
    (64, True, 5.0, "uvloop", "direct", False), (64, False, 0.0, "asyncio", "direct", False),
    (64, True, 0.0, "asyncio", "direct", False)],
    ids=["per-event", "batch64-faust-thread-and-handoff", "batch64-single-hop-uvloop", "batch64-no-window",
         "batch64-single-hop-no-window"])
def test_stream_batch_parity(stream_settings: Settings, worker_factory: Callable[..., Worker], batch_size: int,
                             single_hop: bool, window_ms: float, loop: str, handoff: str, thread: bool) -> None:
    """window_ms 0: micro-batches of what has arrived (stream/take.py) instead of Faust's take_events.
    One case runs the worker on uvloop (PROFILESTREAM_EVENT_LOOP) instead of asyncio's loop; one runs
    the Kafka consumer in Faust's consumer thread (PROFILESTREAM_CONSUMER_THREAD) and hands records to
    the agents through Faust's wait_first (PROFILESTREAM_RECORD_HANDOFF), both as before 2026-12-07."""
    s = stream_settings.with_(batch_size=batch_size, single_hop=single_hop, batch_window_ms=window_ms,
                              event_loop=loop, record_handoff=handoff, consumer_thread=thread)
    events = list(iter_dataset_events("ml-100k", s))[:N_EVENTS]
    histories = by_user(events)
    assert len(events) == N_EVENTS and len(histories) >= 50
    worker = worker_factory(s).start()
    outputs = Outputs(s)
    t0 = time.perf_counter()
    wall0 = time.time()
    # Single-hop mode works with any partitioner that is consistent per key: produce with
    # librdkafka's own default (CRC32), not Kafka's murmur2, and expect the worker to notice.
    produce_events(s, events, progress=False, partitioner="consistent_random" if single_hop else "murmur2_random")
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=240,
             what=f"profiles of {len(histories)} users", poll=outputs.poll)
    elapsed = time.perf_counter() - t0
    print(f"\n[parity batch={batch_size} single_hop={single_hop}] {N_EVENTS} events, {len(histories)} users: {elapsed:.2f} s end to end "
          f"= {N_EVENTS / elapsed:.0f} events/s")
    worst = assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
    print(f"[parity batch={batch_size}] max |stream - offline| = {worst:.2e}; {outputs.validated} records schema-valid")
    m = worker.metrics()
    assert m["profilestream_events_applied_total"] == N_EVENTS
    assert m["profilestream_events_duplicate_total"] == 0
    # the bench reads a burst's end from this gauge: the worker's clock at its last applying batch,
    # set after that batch's outputs were made (their `updated_at`)
    last_out = max(p["updated_at"] for p in outputs.profiles.values())
    assert wall0 < last_out <= m["profilestream_last_applied_time_seconds"] <= time.time()
    # the worker times its collector's pauses: 5,000 events make many generation-1 collections
    assert m['profilestream_gc_pause_seconds_count{generation="1"}'] > 0
    assert not outputs.dlq
    assert_batch_phases(m, wait=batch_size > 1 and window_ms == 0)
    log = worker.tail(10**6)
    assert f"event loop {loop}" in log, "the worker's start-up note names another event loop"
    where = "consumer in Faust's consumer thread" if thread else "consumer on the worker's event loop"
    assert where in log, f"the worker's start-up note does not say: {where}"
    outputs.close()


def assert_batch_phases(m: dict[str, float], *, wait: bool) -> None:
    """`profilestream_batch_phase_seconds`: every processed micro-batch went through each phase once,
    and the phases after `wait` add up to the batch's whole time in the processor."""
    batches = m["profilestream_step_seconds_count"]
    assert batches > 0 and batches == m["profilestream_batch_events_count"]
    total = m["profilestream_step_seconds_sum"]
    parts = 0.0
    for phase in BATCH_PHASES[1:]:
        assert m[f'profilestream_batch_phase_seconds_count{{phase="{phase}"}}'] == batches, phase
        seconds = m[f'profilestream_batch_phase_seconds_sum{{phase="{phase}"}}']
        assert seconds > 0, phase
        parts += seconds
    assert 0.9 * total <= parts <= total * (1 + 1e-9), (parts, total)
    # only micro-batches of what has arrived (stream/take.py) wait in a buffer of their own
    assert m.get('profilestream_batch_phase_seconds_count{phase="wait"}', 0.0) == (batches if wait else 0.0)


@pytest.mark.parametrize("single_hop,output_client,stop_signal",
                         [(False, "faust", signal.SIGTERM), (True, "faust", signal.SIGHUP),
                          (False, "librdkafka", signal.SIGTERM), (True, "librdkafka", signal.SIGTERM)],
                         ids=["two-hop", "single-hop-sighup", "two-hop-librdkafka", "single-hop-librdkafka"])
def test_restart_recovers_state(stream_settings: Settings, worker_factory: Callable[..., Worker],
                                single_hop: bool, output_client: str, stop_signal: int) -> None:
    """SIGTERM the worker, start it again: state comes back and parity holds for later events.
    Also with the librdkafka output producer (stream/output.py), whose records the final commit
    of a stop must flush; two bad messages check that its DLQ records arrive too. One case hangs
    up instead (SIGHUP, a closed terminal), which must stop the worker as cleanly (exit 0)."""
    s = stream_settings.with_(batch_size=32, single_hop=single_hop, output_client=output_client)
    events = list(iter_dataset_events("ml-100k", s))[:3000]
    first, second = events[:1500], events[1500:]
    worker = worker_factory(s).start()
    outputs = Outputs(s)
    produce_events(s, first + [b"{not json", json.dumps({"user_id": "u", "type": "view"}).encode()], progress=False)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in by_user(first).items()}) and len(outputs.dlq) >= 2,
             timeout=120, what="first half applied and 2 DLQ records", poll=outputs.poll)
    assert worker.stop(stop_signal) == 0, worker.tail()
    worker.start()
    produce_events(s, second, progress=False)
    histories = by_user(events)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=120,
             what="second half applied", poll=outputs.poll)
    continuing = [u for u in by_user(second) if u in by_user(first)]
    assert continuing, "the second half must continue users of the first half"
    assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
    assert worker.metrics()["profilestream_events_applied_total"] == len(second)
    assert len(outputs.dlq) == 2 and all(d["reason"] for d in outputs.dlq)
    outputs.close()


@pytest.mark.parametrize("single_hop", [False, True], ids=["two-hop", "single-hop"])
def test_bad_input_goes_to_dlq_and_good_events_are_applied(stream_settings: Settings,
                                                           worker_factory: Callable[..., Worker],
                                                           single_hop: bool) -> None:
    from tests.malformed import MALFORMED

    s = stream_settings.with_(batch_size=16, single_hop=single_hop)
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
    # Valid events that are not keyed by their user_id: fine in two-hop mode (the normalize agent
    # re-keys them), bad input in single-hop mode (the key decides the partition, hence the order).
    unkeyed = [{**good[1], "user_id": "zz-miskeyed"}, {**good[2], "user_id": "zz-keyless"}]
    mixed += [(b"someone-else", json.dumps(unkeyed[0]).encode()), json.dumps(unkeyed[1]).encode()]
    worker = worker_factory(s).start()
    pid = worker.proc.pid  # type: ignore[union-attr]
    outputs = Outputs(s)
    produce_events(s, mixed, progress=False)
    histories = by_user(good)
    if not single_hop:
        histories.update(by_user(unkeyed))
    n_dlq = len(MALFORMED) + 1 + (len(unkeyed) if single_hop else 0)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()})
             and len(outputs.dlq) >= n_dlq, timeout=120, what="good events applied and DLQ filled",
             poll=outputs.poll)
    key_dlq = [d for d in outputs.dlq if "keyed by user_id" in d["reason"]]
    if single_hop:
        assert sorted(json.loads(d["raw"])["user_id"] for d in key_dlq) == ["zz-keyless", "zz-miskeyed"]
        assert all(d["stage"] == "normalize" and "PROFILESTREAM_SINGLE_HOP=0" in d["reason"] for d in key_dlq)
        assert {"zz-keyless", "zz-miskeyed"}.isdisjoint(outputs.profiles)
    else:
        assert not key_dlq
    normalize_dlq = [d for d in outputs.dlq if d["stage"] == "normalize" and d not in key_dlq]
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


def test_single_hop_refuses_a_raw_topic_partitioned_unlike_the_state_table(stream_settings: Settings) -> None:
    """In single-hop mode a user's state lives in the partition of its raw events, so a worker
    must not start on an events.raw with another partition count: it names both counts and the fix."""
    import subprocess
    import sys

    from stream.topics import ensure_topics

    s = stream_settings
    ensure_topics(s.with_(partitions=2))
    proc = subprocess.run([sys.executable, "-m", "stream", "worker", "--single-hop", "--partitions", "3",
                           "--bootstrap-servers", s.bootstrap_servers, "--topic-prefix", s.topic_prefix,
                           "--state-dir", str(s.state_dir), "--artifact", str(s.artifact_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{s.topic('events.raw')} has 2 partitions but PROFILESTREAM_PARTITIONS is 3" in proc.stderr
    assert "set PROFILESTREAM_PARTITIONS=2, or run with PROFILESTREAM_SINGLE_HOP=0" in proc.stderr


def test_switching_two_hop_to_single_hop_keeps_state_and_skips_nothing(stream_settings: Settings,
                                                                       worker_factory: Callable[..., Worker]) -> None:
    """A deployment moved to single-hop mode keeps its users' state, and the position check does
    not compare offsets of events.raw with those of events: the first half goes through two-hop mode
    with every raw event under one key (so one raw partition, while `events` spreads them by user);
    the second half, keyed by user, then starts at low offsets on the other raw partitions, below
    the `events` offsets those users' states hold."""
    s = stream_settings.with_(batch_size=32)
    events = list(iter_dataset_events("ml-100k", s))[:3000]
    first, second = events[:1500], events[1500:]
    two_hop = worker_factory(s, "two-hop").start()
    outputs = Outputs(s)
    produce_events(s, [(b"one-key", json.dumps(ev).encode()) for ev in first], progress=False)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in by_user(first).items()}), timeout=120,
             what="first half applied (two-hop)", poll=outputs.poll)
    assert two_hop.stop() == 0, two_hop.tail()
    single = worker_factory(s.with_(single_hop=True), "single-hop").start()
    produce_events(s, second, progress=False)
    histories = by_user(events)
    wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=120,
             what="second half applied (single-hop)", poll=outputs.poll)
    assert [u for u in by_user(second) if u in by_user(first)], "the second half must continue users of the first"
    assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
    m = single.metrics()
    assert m["profilestream_events_applied_total"] == len(second)
    assert m["profilestream_events_duplicate_total"] == 0
    # produce_events uses murmur2_random, the Java client's partitioner: the worker's own
    # murmur2 check must agree with librdkafka's placement of every event
    assert m["profilestream_raw_partition_mismatch_total"] == 0
    assert not outputs.dlq
    outputs.close()
