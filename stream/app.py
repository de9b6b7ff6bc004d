"""The one Faust app of a worker. `create_app(settings, model)` builds it, then the topic,
table and agent modules declare themselves on it.

Consumer and latency settings, and why (see docs/operations.md):
- commit interval 1 s instead of 2.8 s: less re-delivery after a crash (state skips it anyway).
- session timeout 10 s / heartbeat 1 s: a dead worker's partitions move in ~10 s, not 60 s.
- aiokafka fetch_max_wait_ms: Faust hard-codes 1500 ms; we lower it to 50 ms (see `_LowLatencyConsumer`)
  so an idle partition in the same fetch never holds up a busy one for 1.5 s.
- isolation level read_committed (Faust reads uncommitted): a transactional producer's aborted
  events are never applied, and committed ones only once their transaction commits.
- records handed to the agents' queues in the fetch loop's own task when there is room (`deliver`),
  not through mode's `wait_first` and its four tasks per record (PROFILESTREAM_RECORD_HANDOFF).
- the aiokafka consumer on the worker's event loop (`_InLoopConsumer`), not in Faust's consumer
  thread, so a fetch does not cross between two threads and two loops (PROFILESTREAM_CONSUMER_THREAD).
- stream_wait_empty off: a rebalance does not wait for every buffered event to drain. Turned on for
  a while on 2026-11-28; one of two full broker-restart chaos runs then hung after the second
  restart (worker idle, nothing consumed), so it is off again (docs/operations.md). A stop still
  finishes the current batch (`_to_completion` in agents.py).
- Rebalances (issue 5; docs/operations.md, "Rebalances and Faust"): faust-streaming 0.15 lost or
  reordered records around a rebalance in three ways, and this module closes them. `_FlowControl`
  keeps Faust's second `flow_control.resume()` from emptying queues that already hold records of
  the new generation; `ProfilestreamApp._on_partitions_revoked` stops new batches and waits for the
  one in hand before Faust revokes the tables, and the agents hold back events of an old
  generation unacked (agents.is_current); `_Consumer` hands stream records to the agents strictly
  in offset order from the committed offset and commits only runs that start there
  (stream/sequencer.py), where Faust's fetch loop dropped records it fetched again after a seek.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import types
from collections import deque
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service
from mode.utils.futures import maybe_async
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from model import ProfileModel

from .metrics import WorkerMetrics
from .output import ChangelogWatch, DeliveryWatch, OutputError, OutputProducer, exit_output_failed, output_for
from .sequencer import HeldCommits, Sequencer, Verdict, commit_may_advance, covered, describe
from .settings import Settings

__all__ = ["create_app", "create_app_shell", "ProfilestreamApp"]

log = logging.getLogger("profilestream.app")

#: At most this many proven record-free stretches are kept per partition for the agents' offset-gap
#: watch (one per transaction marker). Stretches below the committed offset are dropped as soon as
#: a new one comes, so only those of records still in flight stay.
NO_RECORDS_KEPT = 8192

#: ms a fetch may wait on the broker for data; Faust's driver hard-codes 1500.
FETCH_MAX_WAIT_MS = 50


@types.coroutine
def _continued(coro: Any, yielded: Any) -> Any:
    """`yield from coro` for a coroutine that has already run up to its first suspension, where it
    yielded `yielded`: hands that and every later suspension to the enclosing task, and what the
    task sends or throws back (a wake-up, a cancellation) to `coro`, as `yield from` would."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: B036 - cancellation included: `coro` must see it
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _rest_of(coro: Any, yielded: Any) -> Any:
    return await _continued(coro, yielded)


async def hand_over_via_wait_first(coro: Any, suspend_flow: Any, wait_first: Any) -> None:
    """Faust's own hand-over (PROFILESTREAM_RECORD_HANDOFF=wait_first), kept for comparisons."""
    await wait_first(coro, suspend_flow.wait())


async def deliver(coro: Any, suspend_flow: Any, wait_first: Any) -> None:
    """Faust's `await wait_first(coro, suspend_flow.wait())` for one fetched record, without its
    cost when `coro` (the conductor's callback, which puts the record into the agents' queues) does
    not have to wait, which is nearly always: `Service.wait_first` makes four tasks per record, waits
    on them and cancels three, ≈ 35 µs per record on the 2-core bench VM against ≈ 1 µs for the
    callback (docs/operations.md "Handing records to the agents"). `coro` runs at once, in this task;
    only if it suspends (a full queue) does the rest of it go to `wait_first` as a task, so a flow
    suspension (a rebalance) still interrupts the wait, as before."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return
    await wait_first(asyncio.ensure_future(_rest_of(coro, yielded)), suspend_flow.wait())


#: seconds a commit waits for the state table's changelog records before it is skipped (`_Consumer._commit`)
CHANGELOG_COMMIT_WAIT_S = 30.0

#: The worker reads only committed transactions. Faust reads uncommitted records unless the app
#: itself runs exactly-once, so a transactional producer's aborted events reached the agents and
#: were applied, and a transaction's events were applied before it committed. For records of
#: producers without transactions the two levels read the same (the last stable offset is then the
#: high watermark).
ISOLATION_LEVEL = "read_committed"


class _LowLatencyConsumer(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads these attributes when it builds its Fetcher in start(), after this call.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer


class _InLoopConsumer(_LowLatencyConsumer):
    """The aiokafka consumer on the worker's own event loop, not in Faust's consumer thread
    (PROFILESTREAM_CONSUMER_THREAD=0). Faust runs it in a second thread with a second event loop, and
    every fetch, commit and seek crosses between the two through a method queue: two
    `call_soon_threadsafe` wake-ups (a self-pipe write each) and a hand-over of the GIL. Here the
    same service runs as a task of the worker's loop, and those calls are plain awaits. Heartbeats
    then share the loop with the agents; a batch takes milliseconds against a session timeout of
    seconds."""

    def __init__(self, consumer: Any, *, loop: Any = None, **kwargs: Any) -> None:
        loop = loop or asyncio.get_event_loop_policy().get_event_loop()
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)
        self._serving: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        # ServiceThread.start, with a task of this loop in place of the thread that runs `_serve`.
        assert not self._thread_started.is_set()
        self._thread_started.set()
        self._thread_running = asyncio.Future(loop=self.parent_loop)
        self._serving = asyncio.ensure_future(self._serve())
        try:
            await self._thread_running
        finally:
            self._thread_running = None

    async def stop(self) -> None:
        if self._started.is_set():
            await Service.stop(self)  # ServiceThread.stop, less the join of a thread there is not
        if self._serving is not None:
            # Wait for `_serve` to finish its shutdown (the aiokafka consumer's stop). A crash of it
            # was logged and reported by `crash` already, as the thread version's was.
            await asyncio.wait({self._serving})
            if not self._serving.cancelled():
                self._serving.exception()

    async def _gather_remaining_tasks(self) -> None:
        # The thread's version cancels every task left on its own loop: here that loop is the
        # worker's, whose tasks are not this service's to cancel. aiokafka's own tasks end in
        # `on_thread_stop` (the consumer's stop).
        return None

    async def call_thread(self, fun: Any, *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))


class _Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with the stream topics' records handed to the agents strictly in
    offset order and commits that never pass a record no agent finished (`stream/sequencer.py`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: partition → the latest stretches [start, end) of offsets the fetch proved hold no records
        #: (`_mark_no_records`); agents.GapWatch reads them through `holds_no_records`.
        self.no_records: dict[Any, deque[tuple[int, int]]] = {}
        self.sequencer = Sequencer()
        #: offsets whose commit did not go out, sent with the next one (sequencer.HeldCommits)
        self.held_commits = HeldCommits()
        self._fetch_round = 0
        self._last_seek: dict[Any, int | None] = {}
        #: partition → (generation, next offset) at which `read_again_if_skipped` last sent the fetch back
        self._probed: dict[Any, tuple[int, int]] = {}
        #: partition → (generation, next offset) at which `read_again_if_skipped` first saw the fetch past
        #: records not handed over; it sends the fetch back when the next check sees the same
        self._suspect: dict[Any, tuple[int, int]] = {}
        self._reread: list[asyncio.Future[bool]] = []  # those seeks (kept referenced until done)
        #: stream partition → [lowest, highest offset, count] of the records held back (Verdict.WAIT)
        #: since its assignment, before this generation's seek; `perform_seek` reads them again
        self._waited: dict[Any, list[int]] = {}
        #: stream partition → (first, last offset, count) of the records the latest fetch round took
        #: from the Kafka client (`_wait_next_records`), to find those Faust's `getmany` never yields
        self._round_fetched: dict[Any, tuple[int, int, int]] = {}

    def _new_consumer_thread(self) -> Any:
        ps_settings = getattr(self.app, "ps_settings", None)
        cls = _LowLatencyConsumer if ps_settings is None or ps_settings.consumer_thread else _InLoopConsumer
        return cls(self, loop=self.loop, beacon=self.beacon)

    def _is_stream(self, tp: Any) -> bool:
        return bool(self.app.topics.acks_enabled_for(tp.topic))

    async def seek_to_committed(self) -> Any:
        offsets = await super().seek_to_committed()
        self._last_seek = {ensure_TP(tp): off for tp, off in offsets.items()}
        return offsets

    async def perform_seek(self) -> None:
        self._last_seek = {}
        await super().perform_seek()
        sought = []
        for tp, off in list(self._last_seek.items()):
            if not self._is_stream(tp):
                continue
            # Nothing committed yet (None, -1): the Kafka client did not seek, so the run starts at 0.
            off = 0 if off is None or off <= 0 else off
            self.sequencer.sought(tp, off)
            sought.append(f"{describe(tp)} {off}")
            # Records this generation fetched before now were held back (Verdict.WAIT) and are read
            # again from `off`. The client's own seek to the committed offset does that only for
            # records it returned before that seek; one it returned after it, before the line above,
            # would stay behind its fetch position, so the fetch goes back once more. The sequencer
            # knows the run's start now, so what comes from here is handed over.
            waited = self._waited.pop(tp, None)
            if waited is not None:
                log.info("%s: %d record(s) (offsets %d … %d) came before this generation's seek and were held "
                         "back; reading from %d again", describe(tp), waited[2], waited[0], waited[1], off)
            read_again = waited is not None and waited[1] >= off
            if read_again:
                self._count("read_again", "before_seek")
            if off == 0 or read_again:
                await self._seek_quietly(tp, off)
        # Until a partition is sought here its records are held back (Verdict.WAIT): this line says
        # which partitions a generation reads and from where.
        log.info("stream partitions read from their committed offsets: %s", ", ".join(sorted(sought)) or "none")

    async def _wait_next_records(self, timeout: float) -> Any:
        records, active = await super()._wait_next_records(timeout)
        self._round_fetched = {tp: (recs[0].offset, recs[-1].offset, len(recs))
                               for tp, recs in (records or {}).items() if recs and self._is_stream(tp)}
        return records, active

    def _held_back(self, tp: Any, first: int, last: int, n: int = 1) -> None:
        w = self._waited.get(tp)
        if w is None:
            self._waited[tp] = [first, last, n]
        else:
            w[0], w[1], w[2] = min(w[0], first), max(w[1], last), w[2] + n

    async def _read_unyielded_again(self, yielded: dict[Any, int], generation: int) -> None:
        """The stream records of the last fetch round that Faust's `getmany` took from the Kafka client
        but never yielded: it ends a round when the flow stops or the generation changes, and the
        client's position is then past them. Before this generation's seek they count as held back
        (`perform_seek` reads them again); after it the fetch goes back to the next offset now."""
        for tp, (first, last, n) in self._round_fetched.items():
            got = yielded.get(tp)
            if got is not None and got >= last:
                continue
            start = first if got is None else got + 1
            nxt = self.sequencer.next_offset(tp)
            log.info("%s: %d of the %d record(s) of a fetch round (offsets %d … %d) were not yielded by Faust's "
                     "getmany (flow %s, generation %d → %d)%s", describe(tp), last - start + 1, n, first, last,
                     "active" if self.flow_active else "stopped", generation, self.app.consumer_generation_id,
                     "" if nxt is None or nxt > last else f"; reading from {nxt} again")
            if nxt is None:
                self._held_back(tp, start, last, last - start + 1)
            elif nxt <= last:
                self._count("read_again", "not_yielded")
                await self._seek_quietly(tp, nxt)
        self._round_fetched = {}

    def _count(self, counter: str, reason: str) -> None:
        """One more on the worker's counter `counter` (a WorkerMetrics attribute) for `reason`;
        nothing where the app has no metrics (unit tests of the consumer alone)."""
        metrics = getattr(self.app, "metrics", None)
        if metrics is not None:
            getattr(metrics, counter).labels(reason).inc()

    async def _seek_quietly(self, tp: Any, offset: int) -> bool:
        try:
            await self.seek_wait({tp: offset})
            return True
        except Exception as exc:  # revoked meanwhile: the next owner seeks it
            log.info("%s: seek to %d failed (%r); the partition's next assignment seeks it again",
                     describe(tp), offset, exc)
            return False

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self.sequencer.reset(revoked)
        for tp in revoked:
            self._waited.pop(tp, None)
        self.held_commits.forget(revoked)
        await super().on_partitions_revoked(revoked)
        self.sequencer.reset(revoked)  # a hand-over cut short by the revoke may have finished meanwhile

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        self.sequencer.reset(assigned)
        for tp in assigned:
            self._waited.pop(tp, None)
        self.held_commits.forget(assigned)  # the seek to the broker's committed offset reads them again
        await super().on_partitions_assigned(assigned, generation_id)

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if acked and self._is_stream(tp):
            base = self._committed_offset.get(tp)
            if base is None:
                base = self.sequencer.floor(tp)
            if not commit_may_advance(acked, (iv.begin for iv in self._gap[tp]), base):
                return None
        return super()._new_offset(tp)

    def _mark_no_records(self, tp: Any, start: int, end: int) -> None:
        """Offsets [start, end) of a stream partition hold no records: done, for the commit."""
        # debug, not info: a transactional producer leaves one such stretch per transaction
        log.debug("%s: offsets %d … %d hold no records (a transactional producer's markers or "
                  "compaction); counted as done", describe(tp), start, end - 1)
        gap = self._gap[tp]
        gap.addi(start, end)
        gap.merge_overlaps()
        kept = self.no_records.setdefault(tp, deque(maxlen=NO_RECORDS_KEPT))
        committed = self._committed_offset.get(tp)
        # The watch asks about a jump onto a record not yet acked, so onto an offset at or above
        # the committed one: a stretch that ends below it is never asked about again.
        while kept and committed is not None and kept[0][1] < committed:
            kept.popleft()
        kept.append((start, end))

    def fetch_position(self, tp: Any) -> int | None:
        """The aiokafka consumer's fetch position in `tp` (the next offset it will fetch), read from
        this thread; None while it is unknown (not assigned, no position yet)."""
        try:
            consumer: Any = self._thread._consumer  # aiokafka's AIOKafkaConsumer
            position: int | None = consumer._subscription.subscription.assignment.state_value(tp).position
            return position
        except (AttributeError, AssertionError, KeyError, TypeError):
            return None

    def settled(self, tp: Any, seen: int, end: int) -> bool:
        """Whether the fetch has read stream partition `tp` up to `end` and the agents have seen every
        record it handed over (the last at `seen`): then no record below `end` waits for them, and
        any offsets in [seen + 1, end) hold none (markers, aborted records), or were dropped before
        the hand-over (`read_again_if_skipped`). For the stall watchdog, which would otherwise count
        a transaction's final marker as a record waiting (stream/stall.py). A query, no side effect;
        not settled while the fetch position is unknown."""
        position = self.fetch_position(tp)
        return position is not None and position >= end and self.sequencer.next_offset(tp) == seen + 1

    def read_again_if_skipped(self, tp: Any, end: int) -> bool:
        """When the fetch of `tp` is at or past `end` but the agents got records only up to the next
        offset to hand over, below `end`, and the same holds at the next call, send the fetch back
        to that offset, once per partition, generation and offset. Whether it did. The stall
        watchdog calls it for each partition it found `settled`; the fetch loop reads the drops it
        knows of again itself (`perform_seek`, `_read_unyielded_again`), so this is the backstop.

        Markers hold no records, but records taken from the Kafka client and dropped before the
        hand-over look the same: a rebalance CI run of 2026-12-07 left 102 records of events.raw[1]
        unread this way, the watchdog silent (docs/operations.md "Records fetched but never handed
        over"). Read the stretch once more from the next offset: if it holds records they come now,
        and if it holds markers only the fetch is back at the end by the next check. The partition
        still counts as settled meanwhile: a re-read is not a stall (a CI run of a first version,
        which counted it as waiting, ended a worker whose partitions ended with transaction
        markers, 3 s stall time)."""
        position = self.fetch_position(tp)
        nxt = self.sequencer.next_offset(tp)
        if position is None or nxt is None or position < end or end <= nxt:
            return False
        if tp in self._round_fetched:
            return False  # the fetch loop is still handing over a round with records of `tp`
        mark = (self.app.consumer_generation_id, nxt)
        if self._probed.get(tp) == mark:
            return False
        if self._suspect.get(tp) != mark:
            # First sighting: a round the client thread has taken may still be on its way to the
            # fetch loop, and its records come without a seek. A drop is still there at the next
            # check. (Re-reading at first sight, the full chaos runs of 2026-12-07 logged 22–23
            # re-reads per run of five scenarios, of records that were real and not lost.)
            self._suspect[tp] = mark
            return False
        self._probed[tp] = mark
        log.info("%s: fetched to %d but handed over only up to %d; reading from %d again", describe(tp),
                 position, nxt, nxt)
        self._count("read_again", "watchdog")
        self._reread = [f for f in self._reread if not f.done()]
        self._reread.append(asyncio.ensure_future(self._seek_quietly(tp, nxt)))
        return True

    async def _commit(self, offsets: Any) -> bool:
        # Faust calls this right after it flushed its own producer, just before the offsets go to the
        # broker; every output of the events below them must be delivered by then. With
        # PROFILESTREAM_OUTPUT_CLIENT=librdkafka the outputs went through a producer of their own
        # (stream/output.py), flushed here; with the default they went into Faust's producer
        # directly, and a record aiokafka gave up on must stop the commit (`DeliveryWatch`).
        app = cast("ProfilestreamApp", self.app)
        try:
            if app.output is not None:
                await app.output.flush()
            if app.deliveries is not None:
                app.deliveries.check()
            # Faust's flush of its producer buffer can return with the state table's changelog
            # records still in it (output.ChangelogWatch): wait for them here.
            changelog = getattr(self.app, "changelog", None)
            if changelog is not None:
                if not await changelog.wait(CHANGELOG_COMMIT_WAIT_S):
                    log.warning("commit skipped: %d state changelog record(s) are not on the broker after %.1f s; "
                                "the next commit sends these offsets, and until then a restart reads those events "
                                "again (and skips what the state has)", len(changelog.pending), CHANGELOG_COMMIT_WAIT_S)
                    self._hold(offsets, "changelog")
                    return False
                changelog.check()
        except OutputError as exc:
            exit_output_failed(exc)
        if await super()._commit(offsets):
            self.held_commits.sent(offsets)
            return True
        self._hold(offsets, "refused")  # e.g. in a rebalance: kept unless the partition is revoked
        return False

    def _hold(self, offsets: Any, reason: str) -> None:
        # only partitions still assigned: one revoked meanwhile is read again by its next owner
        assigned = self.assignment()
        self.held_commits.hold({tp: off for tp, off in offsets.items() if tp in assigned})
        self._count("commits_held", reason)

    def _filter_committable_offsets(self, tps: Any) -> dict[Any, int]:
        # Faust counts offsets as committed even when `_commit` did not send them (HeldCommits):
        # each commit carries them again until one goes out.
        return self.held_commits.add_to(super()._filter_committable_offsets(tps))

    def holds_no_records(self, tp: Any, start: int, end: int) -> bool:
        """Whether the fetch proved offsets [start, end) of `tp` free of records (`Verdict.GAP`)."""
        return covered(self.no_records.get(tp, ()), start, end)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in every worker test
        """faust-streaming 0.15.3's `Consumer._drain_messages`, except that records of the stream
        topics go through `self.sequencer` instead of Faust's read offset and gap marks (see
        stream/sequencer.py for the loss those caused). Changelog records keep Faust's logic."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        seq = self.sequencer
        suspend_flow = self.suspend_flow
        metrics = getattr(self.app, "metrics", None)
        held = metrics.fetch_held if metrics is not None else None
        ps_settings = getattr(self.app, "ps_settings", None)
        hand_over = (hand_over_via_wait_first if ps_settings is not None and ps_settings.record_handoff == "wait_first"
                     else deliver)
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    self._fetch_round += 1
                    fetch_round = self._fetch_round
                    generation = self.app.consumer_generation_id
                    yielded: dict[Any, int] = {}
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        if acks_enabled_for(message.topic):
                            yielded[tp] = offset
                            verdict = seq.admit(tp, offset, fetch_round)
                            if verdict is Verdict.WAIT:
                                self._held_back(tp, offset, offset)
                            if verdict is not Verdict.DELIVER and held is not None:
                                held.labels(verdict.value).inc()
                            if verdict is Verdict.SEEK:
                                nxt = seq.next_offset(tp)
                                log.info("%s: fetched offset %d ahead of the next one to hand over (%s); "
                                         "seeking back", describe(tp), offset, nxt)
                                if nxt is not None:
                                    await self._seek_quietly(tp, nxt)
                                continue
                            if verdict is Verdict.GAP:
                                self._mark_no_records(tp, *seq.skip_gap(tp, offset))
                            elif verdict is not Verdict.DELIVER:
                                continue
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await hand_over(callback(message), suspend_flow, self.wait_first)
                            if suspend_flow.is_set():
                                seq.cut_short(tp)
                            else:
                                seq.delivered(tp, offset, fetch_round)
                            continue
                        # changelog topics: Faust's own logic
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            await hand_over(callback(message), suspend_flow, self.wait_first)
                            set_read_offset(tp, offset)
                    if self._round_fetched:
                        await self._read_unyielded_again(yielded, generation)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


#: seconds a rebalance waits for the batch in hand before it revokes the partitions anyway
REVOKE_WAIT_S = 10.0


class Inflight:
    """Counts the agents' batches in progress, so a rebalance can wait for them to finish."""

    def __init__(self) -> None:
        self.n = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> "Inflight":
        self.n += 1
        self._idle.clear()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.n -= 1
        if self.n == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once no batch runs; False if one still runs after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


class _FlowControl(FlowControlEvent):
    """Faust's flow control, except that `resume()` empties the stream queues only when the flow
    was suspended.

    faust-streaming resumes the flow once when table recovery starts reading the changelogs and
    again when recovery completes, after the stream partitions were resumed and sought. Each
    `resume()` empties every stream queue, so records fetched between the two calls, which belong
    to the new consumer generation, were dropped from the queues without being processed or acked:
    the agent saw an offset gap, the commit stuck below it, and the record was read again only after
    the next rebalance, behind newer events of the same user (a profile off) or after the position
    check had passed it (an event lost). Issue 5, docs/operations.md "Rebalances and Faust".
    While the flow is suspended nothing new enters the queues (the conductor waits on the flow), so
    emptying them on the transition only drops records of the previous generation, which streams
    skip anyway and which are read again from the committed offset.
    """

    def resume(self) -> None:
        was_suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if was_suspended:
            self.clear()


class ProfilestreamApp(faust.App):
    """faust.App plus what the agents need: settings, the model, metrics."""

    ps_settings: Settings
    model: ProfileModel
    metrics: WorkerMetrics
    #: the agents' output producer (stream/output.py); None = Faust's producer (PROFILESTREAM_OUTPUT_CLIENT=faust
    #: or faust-topic)
    output: OutputProducer | None
    #: delivery reports of the records sent straight into Faust's producer (PROFILESTREAM_OUTPUT_CLIENT=faust);
    #: None with the other output clients
    deliveries: DeliveryWatch | None
    #: the state table's changelog records not yet on the broker (stream/output.py); a commit waits for them
    changelog: ChangelogWatch
    #: declared by stream/topics_decl.py and stream/tables.py
    raw_topic: Any
    events_topic: Any
    dlq_topic: Any
    profiles_topic: Any
    recs_topic: Any
    state_table: Any

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _FlowControl(loop=self.loop)

    @cached_property
    def inflight(self) -> "Inflight":
        return Inflight()

    async def _on_partitions_revoked(self, revoked: Any) -> None:
        # Faust suspends the flow and revokes the tables here without waiting for the agents
        # (stream_wait_empty is off, see the module docstring). A batch still running would then
        # write state and send outputs for partitions another worker is about to own. So: stop new
        # work first (the agents check the flow before each batch, see agents.is_current), then let
        # the batch in hand finish, then let Faust go on.
        self.flow_control.suspend()  # idempotent; Faust suspends it again below
        if not await self.inflight.wait_idle(REVOKE_WAIT_S):
            self.log.warning("a batch was still running %.0f s into the rebalance; revoking anyway", REVOKE_WAIT_S)
        await super()._on_partitions_revoked(revoked)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def _credentials(s: Settings) -> Any:
    proto = s.security_protocol.upper()
    if proto == "PLAINTEXT":
        return None
    ctx = None
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=s.ssl_cafile or None)
        if s.ssl_certfile:
            ctx.load_cert_chain(s.ssl_certfile, s.ssl_keyfile or None)
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                 ssl_context=ctx, mechanism=s.sasl_mechanism)


def create_app_shell(settings: Settings, model: ProfileModel | None) -> ProfilestreamApp:
    """The configured app, its output producer included, with no topics, tables or agents (the bench's echo
    floor uses it bare)."""
    app = ProfilestreamApp(
        settings.app_id,
        broker=settings.faust_broker_url(),
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.worker_dir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=max(30.0, settings.session_timeout_s * 3),
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        stream_recovery_delay=0.0,
        producer_linger_ms=settings.producer_linger_ms,
        producer_acks=-1,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host="127.0.0.1",
    )
    app.ps_settings = settings
    app.model = model  # type: ignore[assignment]
    app.metrics = WorkerMetrics()
    app.output = output_for(settings)
    app.deliveries = DeliveryWatch() if settings.output_client == "faust" else None
    app.changelog = ChangelogWatch()
    return app


def create_app(settings: Settings, model: ProfileModel) -> ProfilestreamApp:
    app = create_app_shell(settings, model)
    from . import agents, tables, topics_decl, web

    topics_decl.declare(app)
    tables.declare(app)
    agents.declare(app)
    web.declare(app)
    return app
