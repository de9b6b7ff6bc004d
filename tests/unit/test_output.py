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


def test_stuck_check_asks_the_broker_only_after_records_waited_stuck_s_without_a_report() -> None:
    probe = _Probe(None)
    out = _unreachable(message_timeout_ms=60_000, stuck_s=10, probe=probe)
    out._quiet_since -= 1_000  # the last report was long ago …
    out.check_stuck(now=time.monotonic() + 1_000)  # … but nothing is in flight: nothing to judge
    assert probe.calls == []
    out.send("ps-test.profiles", b"u1", b"{}")  # the clock starts at this send, not at the last report
    out.check_stuck(now=time.monotonic() + 5)
    assert probe.calls == []
    out.check_stuck(now=time.monotonic() + 11)
    assert probe.calls == [["ps-test.profiles"]]  # the broker was asked about the topics sent to …
    out.check_stuck(now=time.monotonic() + 15)  # … and is not asked again within stuck_s
    assert len(probe.calls) == 1
    out.check_stuck(now=time.monotonic() + 22)  # it did not answer (None): ask again later, never raise
    assert len(probe.calls) == 2
    out.close(0)


def test_stuck_check_raises_with_the_brokers_answer_and_a_report_restarts_the_clock() -> None:
    probe = _Probe("the broker answers and leads every partition of ps-test.profiles")
    out = _unreachable(message_timeout_ms=60_000, stuck_s=10, probe=probe)
    out.send("ps-test.profiles", b"u1", b"{}")
    out.send("ps-test.profiles", b"u2", b"{}")
    out._on_delivery(0, None, None)  # one report came: the other record's wait starts now
    out.check_stuck(now=time.monotonic() + 9)
    assert probe.calls == []
    with pytest.raises(OutputError, match=r"1 output record\(s\) had no delivery report for 1\d s although the "
                                          r"broker answers and leads every partition of ps-test\.profiles: the "
                                          r"output producer is stuck"):
        out.check_stuck(now=time.monotonic() + 11)
    out.close(0)


def test_stuck_check_off_with_zero() -> None:
    probe = _Probe("anything")
    out = _unreachable(message_timeout_ms=60_000, stuck_s=0, probe=probe)
    out.send("t", b"k", b"v")
    out.check_stuck(now=time.monotonic() + 1e6)
    assert probe.calls == []
    out.close(0)


def test_probe_of_an_unreachable_broker_says_wait() -> None:
    assert probe_topics({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, ["t"], timeout_s=1.0) is None
