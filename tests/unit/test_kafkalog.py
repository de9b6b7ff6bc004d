"""librdkafka's log lines through `stream.kafkalog`: one line of a kind per window, the held-back
repeats counted, instead of one "Connection refused" line per reconnect attempt."""

from __future__ import annotations

import logging
import time

from stream.kafkalog import RepeatFilter, kafka_logger
from stream.process import free_port
from stream.settings import Settings


def _record(text: str, client: str = "rdkafka#consumer-1") -> logging.LogRecord:
    # what confluent-kafka hands its logger: facility, client name, message
    return logging.LogRecord("profilestream.kafka", logging.ERROR, __file__, 0, "%s [%s] %s",
                             ("FAIL", client, text), None)


REFUSED = "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: " \
          "Connection refused (after {}ms in state CONNECT)"


def test_repeats_within_the_window_are_held_back_and_counted_in_the_next_line_shown() -> None:
    now = [100.0]
    f = RepeatFilter(30.0, clock=lambda: now[0])
    first = _record(REFUSED.format(0))
    assert f.filter(first)
    assert first.getMessage() == ("kafka client rdkafka#consumer-1: 127.0.0.1:9/bootstrap: Connect to "
                                  "ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)")
    # the same line from another client, with other numbers in it, is the same kind
    shown = [f.filter(_record(REFUSED.format(ms), client=f"rdkafka#producer-{ms}")) for ms in range(1, 6)]
    now[0] += 29.9
    shown.append(f.filter(_record(REFUSED.format(7))))
    assert shown == [False] * 6
    other = _record("127.0.0.1:9/1: Disconnected: connection reset by peer")
    assert f.filter(other) and "more like it" not in other.getMessage()  # another kind passes
    now[0] += 0.2  # 30.1 s after the first showing
    again = _record(REFUSED.format(0))
    assert f.filter(again)
    assert again.getMessage().endswith("(after 0ms in state CONNECT) [6 more like it in the last 30 s]")
    nothing_held = _record(REFUSED.format(0))
    now[0] += 31
    assert f.filter(nothing_held) and "more like it" not in nothing_held.getMessage()


def test_records_that_are_not_confluent_kafkas_pass_unchanged() -> None:
    f = RepeatFilter(30.0, clock=lambda: 0.0)
    rec = logging.LogRecord("x", logging.WARNING, __file__, 0, "plain %s", ("text",), None)
    assert f.filter(rec) and rec.getMessage() == "plain text"


def test_the_kinds_remembered_are_bounded() -> None:
    f = RepeatFilter(30.0, clock=lambda: 0.0)
    for i in range(f.MAX_KINDS + 50):
        assert f.filter(_record(f"topic t{'x' * (i % 7)}{chr(97 + i % 26)}{chr(97 + i // 26 % 26)} error"))
    assert len(f._kinds) <= f.MAX_KINDS


def test_a_client_of_the_settings_logs_a_few_lines_while_no_broker_listens() -> None:
    """A real librdkafka consumer with a group, at a port nothing listens on, tries to connect about
    twenty times a second; through the settings' logger a person sees one or two lines of it."""
    from confluent_kafka import Consumer, TopicPartition

    seen: list[logging.LogRecord] = []
    shown: list[str] = []

    class Count(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record)
            return True

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            shown.append(record.getMessage())

    lg = kafka_logger()
    count, keep = Count(), Keep()
    lg.filters.insert(0, count)  # sees every record, before the repeat filter
    lg.addHandler(keep)
    try:
        conf = Settings.from_env({}, bootstrap_servers=f"127.0.0.1:{free_port()}").confluent_config()
        assert conf["logger"] is lg
        c = Consumer({**conf, "group.id": "kafkalog-test"})
        c.assign([TopicPartition("t", 0, 0)])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            c.poll(0.2)
        c.close()
    finally:
        lg.removeFilter(count)
        lg.removeHandler(keep)
    refused = [r for r in seen if "Connection refused" in r.getMessage()]
    assert len(refused) >= 10, [r.getMessage() for r in seen]  # librdkafka did try again and again
    assert sum("Connection refused" in m for m in shown) <= 3, shown
    assert all(m.startswith("kafka client rdkafka#") for m in shown), shown
