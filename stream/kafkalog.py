"""librdkafka's log lines through Python logging, each kind shown once per window.

Left to itself, librdkafka writes every log line to stderr, and while a broker is down a consumer
writes one "Connection refused" line per reconnect attempt: about twenty a second, which buried the
demo's live view and any message that named the cause. Every confluent-kafka client this project
builds from `Settings.confluent_config()` logs through `kafka_logger()` instead: the first line of
a kind is shown, repeats within `REPEAT_WINDOW_S` are held back and counted, and the next one shown
after the window says how many were held ("… [37 more like it in the last 30 s]"). Lines of one
kind differ only in their digits ("after 0ms", counters) or in the client that logged them, so
those are left out of the comparison.

The logger propagates: in a worker, Faust's logging writes the lines to the worker's log with its
timestamps; in a command (replay, tail, demo, bench) with no logging set up, Python's last-resort
handler writes warnings and errors to stderr. confluent-kafka hands a client's log lines over in
its `poll()` (and `flush()`), in the polling thread.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable

__all__ = ["REPEAT_WINDOW_S", "RepeatFilter", "kafka_logger"]

#: Repeats of a line within this many seconds of its last showing are held back and counted.
REPEAT_WINDOW_S = 30.0

_DIGITS = re.compile(r"\d+")
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")  # librdkafka's internal thread name, noise to a reader


class RepeatFilter(logging.Filter):
    """Passes a record unless one of the same kind passed less than `window_s` ago; the next one
    to pass after held-back repeats carries their count. Also rewrites confluent-kafka's records
    ("%s [%s] %s": facility, client, message) into "kafka client CLIENT: MESSAGE"."""

    #: kinds remembered at most; older ones are forgotten first (a forgotten kind shows again)
    MAX_KINDS = 1000

    def __init__(self, window_s: float = REPEAT_WINDOW_S, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()  # clients poll in several threads (the demo's replay, its view)
        self._kinds: dict[str, list[float]] = {}  # kind → [time last shown, repeats held since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "%s [%s] %s" and isinstance(record.args, tuple) and len(record.args) == 3:
            _, client, text = record.args
            text = _THREAD.sub("", str(text))
            record.msg, record.args = "kafka client %s: %s", (client, text)
            kind = _DIGITS.sub("#", text)  # the same line from the demo's producer and its reader: one kind
        else:
            kind = _DIGITS.sub("#", record.getMessage())
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.window_s:
                seen[1] += 1
                return False
            held = int(seen[1]) if seen is not None else 0
            self._kinds.pop(kind, None)
            self._kinds[kind] = [now, 0]
            if len(self._kinds) > self.MAX_KINDS:
                del self._kinds[next(iter(self._kinds))]
        if held:
            record.msg = f"{record.msg} [{held} more like it in the last {self.window_s:.0f} s]"
        return True


_logger: logging.Logger | None = None
_logger_lock = threading.Lock()


def kafka_logger() -> logging.Logger:
    """The logger every confluent-kafka client of this project logs through ("profilestream.kafka",
    with one `RepeatFilter`)."""
    global _logger
    with _logger_lock:
        if _logger is None:
            lg = logging.getLogger("profilestream.kafka")
            lg.addFilter(RepeatFilter())
            _logger = lg
        return _logger
