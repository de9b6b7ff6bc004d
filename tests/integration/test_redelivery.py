"""The normalize stage forwarding a long run of one user's events again (as after a crash before
its raw offsets were committed): the copies land at new offsets of `events` and must all be
skipped. Found by `profilestream chaos --scenario kill` on 2026-11-29: a heavy ML-100k user's
304 events were forwarded twice and every copy was applied, because the 256-id window let the
run through. The copies here are the normalize agent's own records of `events`, sent again to
the same partitions of the real broker with the same key, content and headers."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Producer

from model import ProfileModel
from stream import Settings
from stream.agents import RAW_POSITION_HEADER
from stream.consume import TopicReader
from stream.records import encode
from stream.replay import iter_dataset_events, produce_events
from stream.topics import topic_names

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity

pytestmark = pytest.mark.integration


def test_a_run_of_300_forwarded_copies_is_skipped(stream_settings: Settings, worker_factory) -> None:  # type: ignore[no-untyped-def]
    s = stream_settings.with_(single_hop=False)
    events = list(iter_dataset_events("ml-100k", s))
    heavy = Counter(str(e["user_id"]) for e in events).most_common(1)[0][0]
    mine = [e for e in events if str(e["user_id"]) == heavy][:301]
    assert len(mine) == 301
    worker: Worker = worker_factory(s).start()
    outputs = Outputs(s)
    try:
        produce_events(s, mine[:300], progress=False)
        wait_for(lambda: outputs.profiles.get(heavy, {}).get("events_seen") == 300, timeout=120,
                 what="the first 300 events applied", poll=outputs.poll)
        # The normalize agent's records of `events`, with the raw position it put on each.
        reader = TopicReader(s, [topic_names(s).events], start="earliest")
        forwarded: list = []
        wait_for(lambda: forwarded.extend(reader.poll(0.5, 1000)) or len(forwarded) >= 300, timeout=60,
                 what="300 records on events")
        reader.close()
        raw_positions = {dict(r.headers).get(RAW_POSITION_HEADER) for r in forwarded}
        assert len(raw_positions) == 300 and None not in raw_positions
        prod = Producer(s.confluent_config())
        for r in forwarded:  # the same records again, at new offsets of the same partition
            prod.produce(r.topic, key=r.key, value=encode(r.value), partition=r.partition,
                         headers=list(r.headers.items()))
        prod.flush(30)
        produce_events(s, mine[300:], progress=False)

        def settled() -> bool:  # all 601 records of `events` taken (applied or skipped), outputs read
            m = worker.metrics()
            done = m.get("profilestream_events_applied_total", 0) + m.get("profilestream_events_duplicate_total", 0)
            prof = outputs.profiles.get(heavy, {})
            return done >= 601 and prof.get("events_seen", 0) >= 301 and prof.get("seq") == outputs.recs.get(heavy, {}).get("seq")

        wait_for(settled, timeout=120, what="all 601 records of events taken", poll=outputs.poll)
        assert outputs.profiles[heavy]["events_seen"] == 301  # 601 when the copies are applied
        assert worker.metrics()["profilestream_events_duplicate_total"] >= 300
        assert_parity(ProfileModel.load(s.artifact_path), outputs, {heavy: mine}, s.top_k)
    finally:
        outputs.close()

