"""The agents' output producer with `PROFILESTREAM_OUTPUT_CLIENT=librdkafka`: confluent-kafka
instead of Faust's aiokafka producer. Not the default: after a broker restart librdkafka can keep
an output partition leaderless and its records unsent (confluentinc/librdkafka#5430; one chaos
`broker` run lost 33,091 events that way, docs/operations.md "Output producer").

Everything the agents write (`events`, `profiles`, `recommendations`, `events.dlq`) goes through
one confluent-kafka `Producer`; the state table's changelog stays with Faust. A Faust
`Topic.send` is a chain of coroutines, futures and sensor hooks in the worker's one Python
thread, and aiokafka builds and writes the produce requests in that thread too; `produce()` only
copies the record into librdkafka's queue, whose own threads batch, send and retry it outside the
GIL (bench/README.md, "Output producer"): −21 to −24 % worker CPU per event.

At-least-once holds as before: the consumer flushes this producer before every offset commit
(`_Consumer._commit` in stream/app.py), so no offset is committed ahead of an output of
the events below it. The producer is idempotent (ordered per partition, no duplicates from its
own retries) and keys go to partitions by murmur2, as Faust's producer and Kafka's Java client
place them. A record librdkafka gives up on (`message.timeout.ms`) makes the next flush raise
`OutputError`; the worker then exits without committing (`EXIT_OUTPUT_FAILED`), and a fresh one
applies the events again from the committed offsets and re-sends their outputs.

A stuck producer is ended the same way. When a flush has waited `stuck_s` seconds (60) for the
records sent before it, or `send` has found librdkafka's queue full for that long, a fresh client
asks the broker for the metadata of the output topics. If the broker answers and every partition
has a leader, the producer should have delivered. It is stuck (#5430 leaves a partition's leader
unknown in its cache), and the wait raises. A broker that does not answer, or a partition without
a leader, is an outage: the producer keeps waiting and asks again after another `stuck_s`. A
topic that does not exist also raises, since its records cannot be delivered. The clock is the
wait's, not the time since the last delivery report: #5430 can strand one partition's records
while the others' are delivered, and reports keep coming.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

from confluent_kafka import KafkaException, Producer

__all__ = ["OutputProducer", "DeliveryWatch", "ChangelogWatch", "OutputError", "EXIT_OUTPUT_FAILED", "exit_output_failed", "output_for", "probe_topics"]

log = logging.getLogger("profilestream.output")

#: exit status of a worker whose outputs could not be delivered (EX_IOERR)
EXIT_OUTPUT_FAILED = 74


class OutputError(RuntimeError):
    """Records could not be delivered; offsets must not be committed past them."""


def exit_output_failed(exc: OutputError) -> None:
    """End the worker at once, without committing: a fresh worker reads the events again from the
    committed offsets, skips those its state already has and re-sends their outputs. Raising
    instead would let Faust ack the batch and commit past outputs that were never sent."""
    log.error("%s; exiting with status %d without committing, so a fresh worker applies those events again "
              "from the committed offsets and re-sends their outputs (is the broker reachable? "
              "docs/operations.md 'Output producer')", exc, EXIT_OUTPUT_FAILED)
    logging.shutdown()
    os._exit(EXIT_OUTPUT_FAILED)


class OutputProducer:
    """One confluent-kafka Producer for every agent output. `send` never awaits; `flush` waits,
    off the event loop, until every record sent before it began is delivered.

    A flush cannot wait for librdkafka's queue to empty: the agents keep sending while a periodic
    commit flushes, and under load the queue is never empty. Records are therefore counted in
    epochs: `flush` starts a new epoch and waits until no record of an earlier one is in flight.
    Each epoch's delivery callback is one object made when the epoch starts, not one per record."""

    def __init__(self, conf: dict[str, Any], *, linger_ms: float = 0.0, message_timeout_ms: int = 300_000,
                 stuck_s: float = 60.0, probe: Callable[[list[str]], str | None] | None = None) -> None:
        self._p = Producer({
            **conf,
            "enable.idempotence": True,  # implies acks=all, ordered retries without duplicates
            "linger.ms": linger_ms,
            "partitioner": "murmur2_random",  # Kafka's default for keyed records, as aiokafka's
            "message.timeout.ms": message_timeout_ms,
            "error_cb": self._on_error,
        })
        self._lock = threading.Lock()
        self._epoch = 0
        self._in_flight: dict[int, int] = {0: 0}  # epoch → records sent, not yet reported
        self._report = functools.partial(self._on_delivery, 0)
        self.failed: str | None = None
        self.n_failed = 0
        self._n = 0  # records in flight, all epochs
        # the stuck check (module docstring): its period, the broker query, when it last asked, and
        # every topic this producer has sent to
        self.stuck_s = stuck_s
        self._probe = probe if probe is not None else functools.partial(probe_topics, conf)
        self._probed_at = -float("inf")
        self._topics: set[str] = set()

    def _on_error(self, err: Any) -> None:
        # Transient errors (a broker down for a while) are retried by librdkafka itself; a fatal one
        # (an idempotence violation) fails every record still queued, and no record will be sent again.
        if err.fatal() and self.failed is None:
            self.failed = f"the producer (fatal: {err.str()})"

    def _on_delivery(self, epoch: int, err: Any, msg: Any) -> None:
        with self._lock:
            self._in_flight[epoch] -= 1
            self._n -= 1
            if err is not None:
                self.n_failed += 1
                if self.failed is None:
                    self.failed = f"{msg.topic()}[{msg.partition()}]: {err.str()}"

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]] | None = None) -> None:
        """Queue one record (never blocks the loop for long: a full queue is served for 50 ms)."""
        with self._lock:
            self._in_flight[self._epoch] += 1
            self._n += 1
        self._topics.add(topic)
        full_since = None
        while True:
            try:
                self._p.produce(topic, value, key, headers=headers,  # type: ignore[arg-type]  # any sequence of pairs
                                on_delivery=self._report)
                return
            except BufferError:  # librdkafka's queue is full: serve its reports, then try again
                full_since = time.monotonic() if full_since is None else full_since
                self._p.poll(0.05)
                self.check_stuck(full_since, "librdkafka's queue stayed full")
            except BaseException as exc:
                with self._lock:
                    self._in_flight[self._epoch] -= 1
                    self._n -= 1
                if isinstance(exc, KafkaException):
                    raise OutputError(f"output record to {topic} refused: {exc.args[0].str()}") from exc
                raise

    def in_flight(self) -> int:
        """Records sent and not yet delivered or failed (as far as reports were served)."""
        with self._lock:
            return self._n

    def check(self) -> None:
        """Raise OutputError if any record failed since the producer started."""
        if self.failed is not None:
            raise OutputError(f"{self.n_failed} output record(s) not delivered, the first to {self.failed}")

    def check_stuck(self, since: float, what: str, now: float | None = None) -> None:
        """Raise OutputError when a wait that began at `since` (monotonic) has lasted over `stuck_s`
        although the broker answers for the output topics (module docstring). `what` says what was
        waited for. The broker is asked at most once per `stuck_s`."""
        if self.stuck_s <= 0:
            return
        now = time.monotonic() if now is None else now
        if now - since <= self.stuck_s or now - self._probed_at <= self.stuck_s:
            return
        self._probed_at = now
        reason = self._probe(sorted(self._topics))
        if reason is not None:
            raise OutputError(f"{what} for {now - since:.0f} s ({self.in_flight()} output record(s) in flight) "
                              f"although {reason}: the output producer is stuck (a librdkafka client can keep a "
                              "partition's leader unknown after a broker restart, confluentinc/librdkafka#5430)")

    def _new_epoch(self) -> int:
        with self._lock:
            old = self._epoch
            self._epoch += 1
            self._in_flight[self._epoch] = 0
            self._report = functools.partial(self._on_delivery, self._epoch)
            return old

    def _settled(self, upto: int) -> bool:
        with self._lock:
            for e in [e for e in self._in_flight if e <= upto]:  # upto < the current epoch
                if self._in_flight[e]:
                    return False
                del self._in_flight[e]
            return True

    def _wait(self, upto: int, step_s: float) -> None:
        since = time.monotonic()
        while not self._settled(upto):
            self._p.poll(step_s)
            self.check()
            self.check_stuck(since, "a flush waited for the records sent before it")

    async def flush(self, step_s: float = 0.05) -> None:
        """Wait until every record sent before this call is delivered; OutputError once a record
        failed, or once the stuck check finds the wait over `stuck_s` with the broker answering.
        Through an outage it waits as long as librdkafka retries (message.timeout.ms), like
        Faust's producer."""
        upto = self._new_epoch()
        await asyncio.get_running_loop().run_in_executor(None, self._wait, upto, step_s)
        self.check()

    def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued (up to `timeout_s`), drop the rest and close the client; the number
        of records dropped. (librdkafka's own close blocked for over a minute on an undeliverable record.)"""
        left = self._p.flush(timeout_s)
        self._p.purge()
        self._p.poll(0)
        self._p.close()
        return left


def probe_topics(conf: dict[str, Any], topics: list[str], timeout_s: float = 5.0) -> str | None:
    """Ask the broker, through a fresh client, for the metadata of `topics`. None when it does not
    answer or a partition has no leader (an outage: wait); otherwise what it says, in words (a
    topic that does not exist, or every partition led)."""
    from confluent_kafka.admin import AdminClient

    conf = {k: v for k, v in conf.items() if k not in ("error_cb", "logger", "debug")}
    try:
        md = AdminClient({**conf, "log_level": 2}).list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    missing = [t for t in topics if t not in md.topics]
    if missing:
        return f"the broker answers and {', '.join(missing)} does not exist"
    if any(md.topics[t].error is not None or any(p.leader < 0 for p in md.topics[t].partitions.values())
           for t in topics):  # e.g. a leader being elected
        return None
    return f"the broker answers and leads every partition of {', '.join(topics)}"


def output_for(settings: Any) -> OutputProducer | None:
    """The output producer `settings` ask for (PROFILESTREAM_OUTPUT_CLIENT); None = Faust's producer."""
    if settings.output_client != "librdkafka":
        return None
    return OutputProducer(settings.confluent_config(), linger_ms=settings.producer_linger_ms,
                          stuck_s=settings.output_stuck_s)


class DeliveryWatch:
    """Delivery reports of the records the agents send straight through Faust's aiokafka producer
    (`PROFILESTREAM_OUTPUT_CLIENT=faust`, the default): the done-callback of each record's future.
    Faust flushes that producer before it commits, but a record aiokafka gave up on resolves its
    future with the error and the flush returns all the same; Faust's own `Topic.send` keeps such
    an error in a future no one reads, and the commit goes past the lost record. The consumer asks
    `check()` after the flush and before the commit (stream/app.py `_Consumer._commit`), and the
    worker exits without committing, as with the librdkafka producer. The check sees every record
    the flush waited for: aiokafka resolves a batch's future and then its records' futures in one
    go (`MessageBatch.done` / `failure`), so their callbacks are queued in the same loop iteration,
    and the flushing task wakes only in a later one, after `asyncio.wait` has seen the batch."""

    #: what the watched records are, for the log line and the error
    what = "output record"

    def __init__(self) -> None:
        self.failed: str | None = None
        self.n_failed = 0

    def __call__(self, fut: "asyncio.Future[Any]") -> None:
        if fut.cancelled():
            exc: BaseException | None = asyncio.CancelledError("the record's send was cancelled")
        else:
            exc = fut.exception()
        if exc is not None:
            self.n_failed += 1
            if self.failed is None:
                self.failed = f"{type(exc).__name__}: {exc}"
                log.error("%s not delivered (%s); the worker exits before its next commit", self.what, self.failed)

    def check(self) -> None:
        """Raise OutputError if any record failed since the worker started."""
        if self.failed is not None:
            raise OutputError(f"{self.n_failed} {self.what}(s) not delivered, the first: {self.failed}")


class ChangelogWatch(DeliveryWatch):
    """The state table's changelog records that are not on the broker yet, so that no offset is
    committed ahead of the state change of an event below it (`_Consumer._commit` in stream/app.py
    waits for them).

    Faust writes a table's changelog records through its producer buffer (`Producer.send_soon`),
    and its commit flushes that buffer first. But `ProducerBuffer.flush_atmost` (faust-streaming
    0.15) returns as soon as 0.1 s pass without a record leaving the buffer, and it does not see the
    record its sender task holds; the commit then goes out all the same. On a busy event loop or a
    slow broker the offsets of a batch were therefore committed while its state changes still sat
    in the buffer. A worker that died, or handed its partitions over, before they left it took them
    with it: the next owner restored an older state from the changelog, and the committed events
    were never applied again (the CI rebalance run of 2026-12-07: 112 events lost, 8 stale records;
    docs/operations.md "Rebalances and Faust", item 6). `tests/integration/test_changelog_durability.py`
    shows it with a worker whose changelog records take 0.25 s each to leave the buffer.

    `track` is given each changelog record's future (`stream/tables.py`); `wait` waits until every
    record tracked so far is delivered or failed; `check` (DeliveryWatch's) raises OutputError if one failed."""

    what = "state changelog record"

    def __init__(self) -> None:
        super().__init__()
        self.pending: set[asyncio.Future[Any]] = set()

    def track(self, fut: "asyncio.Future[Any]") -> None:
        self.pending.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: "asyncio.Future[Any]") -> None:
        self.pending.discard(fut)
        self(fut)

    async def wait(self, timeout: float) -> bool:
        """True once every record tracked before the call is delivered (or failed); False if some
        are still on their way after `timeout` seconds."""
        waiting = list(self.pending)
        if not waiting:
            return True
        _, not_done = await asyncio.wait(waiting, timeout=timeout)
        return not not_done
