"""The agents' librdkafka output producer (stream/output.py) against the real broker.

The consumer flushes it before every offset commit, while the agents keep sending: under load
librdkafka's queue is never empty, so a flush that waited for an empty queue would hold every
commit back for as long as the load lasts. The flush must end once the records sent before it
are delivered, and they must then be on the broker. Records must also land where Faust's own
producer put them (murmur2 of the key, as aiokafka's DefaultPartitioner computes it; consumers
of the compacted output topics rely on one key staying on one partition) and keep their order.
A worker with this producer is tested in test_pipeline.py (`test_restart_recovers_state`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream import Settings
from stream.output import OutputError, OutputProducer, probe_topics

pytestmark = pytest.mark.integration

PARTITIONS = 3
KEYS = [f"user-{i}".encode() for i in range(40)]


def _high_watermarks(s: Settings, topic: str) -> int:
    c = Consumer({**s.confluent_config(), "group.id": f"probe-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS))
    finally:
        c.close()


def _fresh_topic(broker: Settings) -> tuple[Settings, str, AdminClient]:
    """A fresh prefix and its `out` topic of PARTITIONS partitions; the admin client is returned to
    be kept (a collected client fails its futures)."""
    s = broker.with_(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    topic = s.topic("out")
    admin = AdminClient(s.confluent_config())
    for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        fut.result(30)
    return s, topic, admin


def test_flush_ends_under_continuous_sending_and_records_keep_partition_and_order(broker: Settings) -> None:
    s, topic, _admin = _fresh_topic(broker)
    out = OutputProducer(s.confluent_config(), linger_ms=5)  # records wait 5 ms: the queue never empties

    async def scenario() -> tuple[int, int, int, int]:
        stop, warm = asyncio.Event(), asyncio.Event()
        sent = 0

        async def sender() -> None:
            nonlocal sent
            while not stop.is_set():
                for _ in range(100):
                    out.send(topic, KEYS[sent % len(KEYS)], b"%d" % sent)
                    sent += 1
                if sent >= 5_000:
                    warm.set()
                await asyncio.sleep(0.001)

        task = asyncio.create_task(sender())
        await asyncio.wait_for(warm.wait(), timeout=30)
        before = sent
        await asyncio.wait_for(out.flush(), timeout=20)  # must end although the sender goes on
        on_broker = _high_watermarks(s, topic)  # (blocks the loop, so the sender waits meanwhile)
        after = sent
        stop.set()
        await task
        await asyncio.wait_for(out.flush(), timeout=20)
        return before, on_broker, after, sent

    before, on_broker, after, total = asyncio.run(scenario())
    assert out.close(5) == 0
    assert after > before, "the sender did not run while the flush waited: the test proved nothing"
    assert on_broker >= before, f"flush returned with {before - on_broker} of the {before} records before it undelivered"

    c = Consumer({**s.confluent_config(), "group.id": f"check-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen: dict[bytes, list[int]] = defaultdict(list)
    n = 0
    try:
        misplaced = 0
        while n < total:
            msgs = c.consume(1000, timeout=10)
            assert msgs, f"only {n} of {total} records came back"
            for m in msgs:
                assert m.error() is None, m.error()
                misplaced += m.partition() != (murmur2(m.key()) & 0x7FFFFFFF) % PARTITIONS
                seen[m.key()].append(int(m.value()))
                n += 1
    finally:
        c.close()
    assert n == total and misplaced == 0
    for key, values in seen.items():
        assert values == sorted(values), f"records of {key!r} out of order"
    assert sorted(v for vs in seen.values() for v in vs) == list(range(total))  # none lost, none twice


def test_flush_does_not_wait_for_records_sent_after_it_began(broker: Settings) -> None:
    """Deterministic form of the above: a record sent after the flush began stays queued (its topic
    does not exist and may not be created), and the flush must still end once the records before
    it are delivered. A flush that waited for librdkafka's queue to empty would wait ~30 s, until
    librdkafka gave that record up."""
    s, topic, _admin = _fresh_topic(broker)
    missing = s.topic("missing")
    out = OutputProducer({**s.confluent_config(), "allow.auto.create.topics": False})

    async def scenario() -> None:
        for i in range(1_000):
            out.send(topic, KEYS[i % len(KEYS)], b"%d" % i)
        flush = asyncio.ensure_future(out.flush())
        await asyncio.sleep(0)  # one turn of the loop: the flush has begun
        out.send(missing, b"k", b"stays queued")
        await asyncio.wait_for(flush, timeout=15)

    asyncio.run(scenario())
    assert _high_watermarks(s, topic) == 1_000
    assert out.in_flight() == 1  # the record to the missing topic, still queued
    assert out.close(0) == 1  # … and dropped by close, which must not wait for it


def test_a_flush_held_by_an_undeliverable_record_ends_with_the_cause_once_stuck_s_passed(broker: Settings) -> None:
    """A record that cannot be delivered while the broker answers (here: its topic does not exist
    and may not be created; in the wild: librdkafka#5430's unknown leader) must not hold the flush,
    and with it every offset commit, until message.timeout.ms (5 minutes), even while the records
    sent to other partitions are delivered: after `stuck_s` a fresh client asks the broker, and
    the flush raises with its answer."""
    s, topic, _admin = _fresh_topic(broker)
    missing = s.topic("missing")
    out = OutputProducer({**s.confluent_config(), "allow.auto.create.topics": False}, stuck_s=2)

    async def scenario() -> int:
        out.send(missing, b"k", b"stays queued")
        flush = asyncio.ensure_future(out.flush())
        sent = 0
        while not flush.done():  # meanwhile, records to a healthy topic go on and are delivered
            for _ in range(10):
                out.send(topic, KEYS[sent % len(KEYS)], b"%d" % sent)
                sent += 1
            await asyncio.sleep(0.01)
        with pytest.raises(OutputError, match=rf"a flush waited for the records sent before it for \d+ s .*"
                                              rf"although the broker answers and {missing} does not exist"):
            await flush
        return sent

    t0 = time.monotonic()
    sent = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert time.monotonic() - t0 < 30  # not message.timeout.ms
    assert out.close(2) == 1  # only the stranded record is left
    assert _high_watermarks(s, topic) == sent  # the healthy topic's records were delivered meanwhile


def test_probe_reads_leaders_and_missing_topics_from_the_broker(broker: Settings) -> None:
    s, topic, _admin = _fresh_topic(broker)
    missing = s.topic("missing")
    assert probe_topics(s.confluent_config(), [topic]) == f"the broker answers and leads every partition of {topic}"
    assert probe_topics(s.confluent_config(), [topic, missing]) == f"the broker answers and {missing} does not exist"
