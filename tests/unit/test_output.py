"""The librdkafka output producer without a broker: what a worker does when outputs cannot be
delivered, and the bookkeeping its flush relies on (stream/output.py). Delivery to a real broker,
ordering and the flush under continuous sending are in tests/integration/test_output_producer.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream.output import OutputError, OutputProducer, probe_topics
from stream.process import free_port


def _unreachable(**kw: object) -> OutputProducer:
    # a port nothing listens on: librdkafka keeps retrying until message.timeout.ms
    # (log_level 2: librdkafka's "connection refused" lines are the point here, not news)
    return OutputProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "log_level": 2}, **kw)  # type: ignore[arg-type]


def test_flush_raises_naming_the_topic_when_records_cannot_be_delivered() -> None:
    out = _unreachable(message_timeout_ms=1500)
    out.send("ps-test.profiles", b"u1", b"{}")
    out.send("ps-test.profiles", b"u2", b"{}")
    with pytest.raises(OutputError, match=r"2 output record\(s\) not delivered, the first to ps-test\.profiles"):
        asyncio.run(asyncio.wait_for(out.flush(), timeout=30))
    assert out.in_flight() == 0
    assert out.close(0) == 0


def test_flush_waits_for_records_sent_before_it_only() -> None:
    out = _unreachable(message_timeout_ms=60_000)
    out.send("t", b"k", b"before")
    old = out._new_epoch()
    out.send("t", b"k", b"after")
    assert not out._settled(old)  # the record sent before the flush is still in flight
    assert out.in_flight() == 2
    out._on_delivery(old, None, None)  # its report comes in …
    assert out._settled(old)  # … and the flush is done, although a later record is in flight
    assert out.in_flight() == 1


def test_a_record_librdkafka_refuses_leaves_nothing_in_flight() -> None:
    out = OutputProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.max.bytes": 1000, "log_level": 2})
    with pytest.raises(OutputError, match="refused"):
        out.send("t", b"k", b"x" * 5000)
    assert out.in_flight() == 0
    asyncio.run(asyncio.wait_for(out.flush(), timeout=5))  # nothing to wait for
    assert out.close(0) == 0


class _Probe:
    """Stands in for the broker query of the stuck check; records when it was asked."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, topics: list[str]) -> str | None:
        self.calls.append(topics)
        return self.answer


def test_stuck_check_asks_the_broker_once_a_wait_passed_stuck_s_and_then_once_per_period() -> None:
    probe = _Probe(None)
    out = _unreachable(message_timeout_ms=60_000, stuck_s=10, probe=probe)
    out.send("ps-test.profiles", b"u1", b"{}")
    out.send("ps-test.dlq", b"u1", b"{}")
    out.check_stuck(100.0, "a flush waited", now=109.0)
    assert probe.calls == []
    out.check_stuck(100.0, "a flush waited", now=111.0)
    assert probe.calls == [["ps-test.dlq", "ps-test.profiles"]]  # every topic sent to
    out.check_stuck(100.0, "a flush waited", now=120.0)  # not again within stuck_s …
    assert len(probe.calls) == 1
    out.check_stuck(100.0, "a flush waited", now=121.5)  # … the broker did not answer (None): ask again, never raise
    assert len(probe.calls) == 2
    out.check_stuck(200.0, "a flush waited", now=205.0)  # a new wait has its own clock
    assert len(probe.calls) == 2
    out.close(0)


def test_stuck_check_raises_with_the_brokers_answer() -> None:
    probe = _Probe("the broker answers and leads every partition of ps-test.profiles")
    out = _unreachable(message_timeout_ms=60_000, stuck_s=10, probe=probe)
    out.send("ps-test.profiles", b"u1", b"{}")
    with pytest.raises(OutputError, match=r"a flush waited for 12 s \(1 output record\(s\) in flight\) although the "
                                          r"broker answers and leads every partition of ps-test\.profiles: the "
                                          r"output producer is stuck"):
        out.check_stuck(100.0, "a flush waited", now=112.0)
    out.close(0)


def test_a_flush_ends_with_the_stuck_check_although_other_records_are_delivered_meanwhile() -> None:
    """#5430 strands one partition's records while the others' are delivered: the clock must be
    the flush's, not the time since the last delivery report."""
    probe = _Probe("the broker answers and leads every partition of t")
    out = _unreachable(message_timeout_ms=60_000, stuck_s=0.5, probe=probe)
    out.send("t", b"k", b"stranded")

    async def scenario() -> None:
        flush = asyncio.ensure_future(out.flush(step_s=0.01))
        while not flush.done():  # reports for later records keep coming while the flush waits
            out.send("t", b"k", b"later")
            out._on_delivery(out._epoch, None, None)
            await asyncio.sleep(0.02)
        await flush

    t0 = time.monotonic()
    with pytest.raises(OutputError, match=r"a flush waited for the records sent before it for \d+ s"):
        asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    assert time.monotonic() - t0 < 10
    assert len(probe.calls) == 1
    out.close(0)


def test_stuck_check_off_with_zero() -> None:
    probe = _Probe("anything")
    out = _unreachable(message_timeout_ms=60_000, stuck_s=0, probe=probe)
    out.send("t", b"k", b"v")
    out.check_stuck(0.0, "a flush waited", now=1e6)
    assert probe.calls == []
    out.close(0)


def test_probe_of_an_unreachable_broker_says_wait() -> None:
    assert probe_topics({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, ["t"], timeout_s=1.0) is None
