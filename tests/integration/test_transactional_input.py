"""Raw events written by a transactional producer, with aborted transactions between the committed
ones. Each transaction leaves a control marker in `events.raw`, an offset without a record, and
the worker reads committed records only (stream/app.py ISOLATION_LEVEL), so an aborted
transaction's records are offsets without records too. The worker's fetch loop hands records over
strictly in offset order (stream/sequencer.py) and must tell such offsets from records it has not
been given yet, or the partition stalls at the first marker. Every committed event must be applied
exactly once, in order, no aborted event at all, and the skipped offsets show up as `gap` on
/metrics, not as offset gaps (the agents' watch for records skipped by mistake). Real broker."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from model import ProfileModel
from stream import Settings
from stream.replay import iter_dataset_events
from stream.topics import ensure_topics, topic_names

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration

GAP_METRIC = 'profilestream_fetch_held_back_total{reason="gap"}'


def _aborted_copy(e: dict, other_item: object) -> dict:
    """An event that would change the user's profile if it were applied: another item, the same
    user and time, an event id of its own (so it is not skipped as a repeat of `e`)."""
    return {**e, "item_id": other_item, "type": "purchase", "value": 1, "event_id": f"{e['event_id']}:aborted"}


@pytest.mark.parametrize("single_hop", [False, True], ids=["two-hop", "single-hop"])
def test_committed_transactions_are_applied_and_aborted_ones_never(stream_settings: Settings,
                                                                   worker_factory,  # type: ignore[no-untyped-def]
                                                                   single_hop: bool) -> None:
    # the stall watchdog at 3 s: each partition ends with a commit marker, and it must not read that
    # as a record waiting, or the idle worker exits with status 75
    s = stream_settings.with_(single_hop=single_hop, stall_exit_s=3.0)
    events = list(iter_dataset_events("ml-100k", s))[:600]
    ensure_topics(s)
    worker: Worker = worker_factory(s).start()
    outputs = Outputs(s)
    try:
        conf = s.confluent_config()
        conf.update({"transactional.id": f"{s.topic_prefix}tx", "partitioner": "murmur2_random"})
        prod = Producer(conf)
        prod.init_transactions(30)
        raw = topic_names(s).raw
        aborted = 0

        def produce(batch: list[dict]) -> None:
            for e in batch:
                prod.produce(raw, key=str(e["user_id"]).encode(), value=json.dumps(e).encode())

        for n, i in enumerate(range(0, len(events), 40)):  # 15 committed transactions, a marker per partition each
            if n % 3 == 1:  # and 5 aborted ones: the same users, other items
                prod.begin_transaction()
                batch = [_aborted_copy(e, events[-1 - j]["item_id"]) for j, e in enumerate(events[i:i + 40])]
                produce(batch)
                prod.flush(30)  # on the broker, readable uncommitted, before the abort
                prod.abort_transaction(30)
                aborted += len(batch)
            prod.begin_transaction()
            produce(events[i:i + 40])
            prod.commit_transaction(30)
        hist = by_user(events)
        applied = "profilestream_events_applied_total"
        # done when every committed event shows, or as soon as more were applied than were committed
        wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in hist.items()}) or
                 worker.metrics()[applied] > len(events), timeout=120,
                 what=f"all {len(events)} committed transactional events applied", poll=outputs.poll)
        m = worker.metrics()
        assert m[applied] == len(events), f"{m[applied] - len(events):.0f} of {aborted} aborted events applied"
        assert_parity(ProfileModel.load(s.artifact_path), outputs, hist, s.top_k)
        assert set(outputs.profiles) == set(hist)
        assert m.get(GAP_METRIC, 0) >= 1, "no commit marker was met: the test did not test the gap path"
        # the markers and aborted records are offsets the fetch proved free of records, not holes:
        # no offset-gap warning
        gaps = {k: v for k, v in m.items() if k.startswith("profilestream_offset_gaps_total")}
        assert not any(gaps.values()), (gaps, worker.tail())
        assert not outputs.dlq
        # a watchdog check after the last transaction sees nothing waiting, and the worker lives on
        checks = m["profilestream_stall_checks_total"]

        def idle_and_nothing_waiting() -> bool:
            assert worker.alive(), f"the worker exited (status {worker.proc.returncode}):\n{worker.tail()}"
            try:
                now = worker.metrics()
            except OSError:  # the worker may be exiting: the next round sees it
                return False
            return now["profilestream_stall_checks_total"] > checks + 1 and now["profilestream_records_waiting"] == 0

        wait_for(idle_and_nothing_waiting, timeout=30, what="a stall-watchdog check that finds no record waiting")
        assert worker.alive(), worker.tail()
    finally:
        outputs.close()
