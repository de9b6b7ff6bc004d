"""The librdkafka output producer without a broker: what a worker does when outputs cannot be
delivered, and the bookkeeping its flush relies on (stream/output.py). Delivery to a real broker,
ordering and the flush under continuous sending are in tests/integration/test_output_producer.py."""

from __future__ import annotations

import asyncio

import pytest

from stream.output import OutputError, OutputProducer
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
