"""The agents. Two-hop mode (the default): normalize (events.raw → events | events.dlq) and
profile (events → state table → profiles + recommendations). Single-hop mode
(PROFILESTREAM_SINGLE_HOP=1, for producers that key events.raw by user_id): one profile agent
validates and applies straight from events.raw, saving the re-keying hop (docs/operations.md,
"Single-hop mode")."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

from aiokafka.partitioner import murmur2
from faust import streams as faust_streams
from faust.exceptions import ProducerSendError
from faust.types import TP, EventT

from model import Event, InvalidEvent, Pending, StateFormatError, UserState, pack_state, parse_event, unpack_state

from .metrics import BATCH_PHASES
from .output import OutputError, exit_output_failed
from .records import dlq_record, encode, pseudonymise
from .stall import (EXIT_STALLED, EndOffsets, GroupView, StallWatch, assigned_source_partitions, backlog,
                    generation_progress)
from .take import take_available
from .topics import topic_names

if TYPE_CHECKING:
    from .app import ProfilestreamApp

__all__ = ["declare", "ProfileProcessor", "Normalizer", "GapWatch", "GAP_LOG_PREFIX", "RAW_SOURCE_BASE",
           "RAW_POSITION_HEADER", "raw_position"]

log = logging.getLogger("profilestream.agents")


async def _to_completion(coro: Any) -> None:
    """Run `coro` to its end even if the agent is cancelled meanwhile (worker stop), then pass
    the cancellation on. `take_events()` and stream/take.py ack their whole batch when the agent
    is cancelled, and the consumer then commits those offsets; a batch cut off half-way would leave events committed but
    never applied, or applied with their outputs unsent. A stuck batch (broker gone) is ended by
    the worker's shutdown watchdog."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()  # re-raise what the batch raised, if anything
    if cancelled:
        raise asyncio.CancelledError()


def _holds_no_records(app: Any) -> Callable[[tuple[str, int], int, int], bool]:
    # app.consumer is created lazily, on first use
    return lambda tp, start, end: app.consumer.holds_no_records(TP(*tp), start, end)


def _as_current(event: EventT[bytes]) -> None:
    # Faust's RocksDB table store and changelog pick the partition from the *current* event.
    # The take loops leave the batch's last (or the next) event current, so before touching a
    # user's row we make that user's own event current: its state then lives in (and is logged to) the
    # partition of its events, as co-partitioning requires.
    faust_streams._current_event.set(weakref.ref(event))


#: A user's state keeps the source position (partition, offset) of its last applied event, and
#: skips an event at or before it. In single-hop mode that position is one of events.raw, in
#: two-hop mode one of events; offsets of two topics must never be compared, so a raw position is
#: stored with this added to its partition. A deployment switched between the modes then compares
#: no position across topics (the event-id window still recognises re-sent events).
RAW_SOURCE_BASE = 1 << 16

#: The start of the warning `GapWatch` logs; the chaos harness counts these lines in worker logs.
GAP_LOG_PREFIX = "offset gap"

#: Header the normalize agent puts on each record of `events`: the raw event's position in
#: `events.raw`, b"<partition>:<offset>". The profile agent keeps, per user and raw partition,
#: the last raw offset applied (`UserState.raw_marks`), so the copies the normalize stage forwards
#: again after a crash or rebalance are skipped however many there are; the event-id window alone
#: (256 per user) let a run of more than 256 copies of one user's events through, every one of
#: them (docs/operations.md "Redeliveries of the normalize stage").
RAW_POSITION_HEADER = "profilestream-raw-position"


def raw_position(msg: Any) -> tuple[int, int]:
    """(raw partition, raw offset) from a record of `events`, or (-1, -1) when it has no valid
    RAW_POSITION_HEADER (written by a version before 2026-11-29, or by another producer)."""
    for name, value in (msg.headers.items() if isinstance(msg.headers, Mapping) else msg.headers or ()):
        if name == RAW_POSITION_HEADER:
            try:
                part, _, off = bytes(value).partition(b":")
                return int(part), int(off)
            except (TypeError, ValueError):
                return -1, -1
    return -1, -1


class GapWatch:
    """Notices when an agent's records of one partition skip offsets within one consumer generation.

    Within a generation the fetch loop hands a partition's records over in offset order
    (stream/sequencer.py), so a jump means records were skipped before they reached the agent:
    they are processed later, after another rebalance and out of order, or never. faust-streaming's
    own loop did this around rebalances (issue 5, docs/operations.md "Rebalances and Faust").
    Counted in `profilestream_offset_gaps_total` and logged as a warning.

    A jump over offsets that the fetch itself proved free of records is not a hole: a transactional
    producer leaves a commit marker after each transaction, and compaction removes records. The
    fetch loop proves such a stretch (`Verdict.GAP`) before it hands over the record after it and
    keeps the latest stretches per partition; `holds_no_records(tp, start, end)` looks them up.
    Such a jump is logged at debug level only; `profilestream_fetch_held_back_total{reason="gap"}`
    counts them.
    """

    def __init__(self, metrics: Any,
                 holds_no_records: Callable[[tuple[str, int], int, int], bool] = lambda tp, start, end: False) -> None:
        self.m = metrics
        self.holds_no_records = holds_no_records
        self.last: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, partition) → (offset, generation)

    def see(self, msg: Any) -> None:
        key = (msg.topic, msg.partition)
        prev = self.last.get(key)
        gen = getattr(msg, "generation_id", 0)
        if prev is None or prev[1] != gen:
            log.info("%s[%d]: first record of consumer generation %s at offset %d", msg.topic, msg.partition, gen,
                     msg.offset)
        elif msg.offset > prev[0] + 1:
            if self.holds_no_records(key, prev[0] + 1, msg.offset):
                log.debug("%s[%d]: %d → %d in consumer generation %s: the offsets between hold no records "
                          "(proven by the fetch)", msg.topic, msg.partition, prev[0], msg.offset, gen)
            else:
                self.m.offset_gaps.labels(msg.topic).inc(msg.offset - prev[0] - 1)
                log.warning("%s on %s[%d]: %d → %d in consumer generation %s (%d records not seen)", GAP_LOG_PREFIX,
                            msg.topic, msg.partition, prev[0], msg.offset, gen, msg.offset - prev[0] - 1)
        if prev is None or prev[1] != gen or msg.offset > prev[0]:
            self.last[key] = (msg.offset, gen)


def is_current(app: Any, fe: EventT[bytes]) -> bool:
    """False for an event that must not be processed now: it was fetched in an earlier consumer
    generation, or a rebalance is under way (flow suspended), so its partition may already be
    another worker's. Such an event is also kept from being acked, so its offset is not committed
    and whoever owns the partition next reads it again from the committed offset. Faust's own
    stream makes this check only when an event leaves the queue; a micro-batch holds events longer."""
    msg = fe.message
    if app.flow_control.is_active() and msg.generation_id == app.consumer_generation_id:
        return True
    msg.acked = True  # Message.ack() is then a no-op: the offset does not count as done
    app.consumer.unacked.discard(msg)
    app.metrics.stale_events.inc()
    return False


async def send_output(app: Any, topic: Any, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes]] | None = None) -> None:
    """One record of an agent's output, by PROFILESTREAM_OUTPUT_CLIENT:
    - `faust` (the default): straight into Faust's aiokafka producer, its delivery future watched
      by `app.deliveries` (stream/output.py `DeliveryWatch`);
    - `faust-topic`: through Faust's `Topic.send`, as before 2026-12-06. Each such send awaits
      `App.maybe_start_producer`, a mode `@stampede` wrapper that yields to the event loop three
      times (`asyncio.sleep(0)`), so a micro-batch's sends were interleaved with the rest of the
      worker's tasks and took most of each batch's time (bench/README.md, "Output send path");
    - `librdkafka`: the output producer of stream/output.py.
    In every case the consumer flushes the producer before it commits the offsets of the events
    the record came from."""
    if app.output is not None:
        try:
            app.output.send(topic.get_topic_name(), key, value, headers)
        except OutputError as exc:
            exit_output_failed(exc)
    elif app.deliveries is not None:
        try:
            fut = await app.producer.send(topic.get_topic_name(), key, value, None, None, headers)
        except ProducerSendError as exc:  # refused before it was queued (aiokafka's KafkaError)
            exit_output_failed(OutputError(f"output record to {topic.get_topic_name()} refused: {exc}"))
        fut.add_done_callback(app.deliveries)
    else:
        await topic.send(key=key, value=value, headers=headers)


async def send_to_dlq(app: Any, msg: Any, reason: str, *, stage: str, level: int) -> None:
    """One message to the dead-letter topic with its reason, counted per stage and logged."""
    log.log(level, "DLQ (%s) %s[%d]@%d key=%r: %s", stage, msg.topic, msg.partition, msg.offset, msg.key, reason)
    app.metrics.dlq.labels(stage).inc()
    record = dlq_record(reason, msg.value, stage=stage, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                        key=msg.key)
    await send_output(app, app.dlq_topic, msg.key, record)


class Normalizer:
    """Validation of one raw event (events.raw), shared by the normalize agent and the
    single-hop profile agent: an `Event`, or None after the message went to the DLQ with its
    reason. With `require_user_key`, an event whose message key is not its user_id also goes to the
    DLQ: in single-hop mode the key decides the partition, and so which worker and which state
    partition see the user's events, in order."""

    def __init__(self, app: "ProfilestreamApp", *, require_user_key: bool = False) -> None:
        self.app = app
        self.s = app.ps_settings
        self.m = app.metrics
        self.require_user_key = require_user_key
        self._warned: set[int] = set()

    def _check_partitioner(self, msg: Any) -> None:
        """Single-hop mode keeps a user's state in the partition of its raw events. Any
        partitioner that is consistent per key works, but only Kafka's default (murmur2, which
        Faust uses for `events`) puts a user where two-hop mode keeps its state; after a switch
        between the modes, users placed otherwise would start from an empty state. Counted and
        logged once per partition, never rejected."""
        want = (murmur2(msg.key) & 0x7FFFFFFF) % self.s.partitions
        if want != msg.partition:
            self.m.raw_partition_mismatch.inc()
            if msg.partition not in self._warned:
                self._warned.add(msg.partition)
                log.warning("%s[%d] holds key %r, which Kafka's default (murmur2) partitioner puts on partition "
                            "%d: fine in single-hop mode, but a switch to two-hop mode would start such users "
                            "from an empty state. Produce with the Java client's default partitioner "
                            "(confluent-kafka/librdkafka: partitioner=murmur2_random). Logged once per partition; "
                            "counted in profilestream_raw_partition_mismatch_total", msg.topic, msg.partition,
                            msg.key[:80], want)

    async def _dlq(self, msg: Any, reason: str) -> None:
        await send_to_dlq(self.app, msg, reason, stage="normalize", level=logging.INFO)

    async def __call__(self, fe: EventT[bytes]) -> Event | None:
        msg = fe.message
        self.m.events_in.inc()
        try:
            ev = parse_event(msg.value, max_bytes=self.s.max_event_bytes)
        except Exception as exc:  # noqa: BLE001 - no input may stop the worker
            if isinstance(exc, InvalidEvent):
                reason = str(exc)
            else:  # a validator bug: still route the message, and say so loudly in the log
                reason = f"could not validate ({type(exc).__name__}: {str(exc)[:200]})"
                log.exception("validator raised on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            await self._dlq(msg, reason)
            return None
        if self.require_user_key:
            if msg.key != ev.user_id.encode():
                shown = "no key" if msg.key is None else f"key {msg.key[:80]!r}"
                await self._dlq(msg, f"message has {shown} but user_id {ev.user_id[:80]!r}: single-hop mode "
                                     "(PROFILESTREAM_SINGLE_HOP=1) needs events.raw keyed by user_id; produce with "
                                     "key=user_id, or run the workers with PROFILESTREAM_SINGLE_HOP=0")
                return None
            self._check_partitioner(msg)
        self.m.events_valid.inc()
        if ev.event_id is None:
            # The raw message's position identifies it: if the event is sent on (two-hop mode)
            # and the agent is stopped before its offset is committed, the re-sent copy gets the
            # same id and the profile stage skips it (its position check only covers its own topic).
            ev = dataclasses.replace(ev, event_id=f"{msg.topic}:{msg.partition}:{msg.offset}")
        if self.s.pseudonym_key:  # no raw id goes past this point: not into state, not into outputs
            ev = dataclasses.replace(ev, user_id=pseudonymise(ev.user_id, self.s.pseudonym_key))
        return ev


class _PhaseClock:
    """Seconds of one micro-batch in each phase after `wait` (profilestream_batch_phase_seconds):
    `lap(phase)` charges the time since the previous lap (or the start) to `phase`."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(BATCH_PHASES[1:], 0.0)
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self._t
        self._t = now


class ProfileProcessor:
    """Applies a micro-batch of normalised events to the state table and emits outputs. In
    single-hop mode (`normalizer` given) the batch holds raw events, validated here first."""

    def __init__(self, app: "ProfilestreamApp", normalizer: Normalizer | None = None) -> None:
        self.app = app
        self.normalizer = normalizer
        #: added to a message's partition to make the source position stored in the state
        self.source_base = RAW_SOURCE_BASE if normalizer is not None else 0
        self.model = app.model
        self.table = app.state_table
        self.k = app.ps_settings.top_k
        self.m = app.metrics
        self.gaps = GapWatch(app.metrics, _holds_no_records(app))
        #: observe() of each phase's histogram child, bound once (a labels() lookup per batch costs more)
        self._observe = {p: app.metrics.phase_seconds.labels(p).observe for p in BATCH_PHASES}

    async def _dlq(self, fe: EventT[bytes], reason: str) -> None:
        await send_to_dlq(self.app, fe.message, reason, stage="profile", level=logging.WARNING)

    def observe_wait(self, seconds: float) -> None:
        """The `wait` phase of a micro-batch (stream/take.py: its first event buffered → taken)."""
        self._observe["wait"](seconds)

    async def process(self, batch: Sequence[EventT[bytes]]) -> None:
        with self.app.inflight:
            live = [fe for fe in batch if is_current(self.app, fe)]
            if len(live) < len(batch):
                log.info("rebalance: %d of %d events of a batch left for the partitions' next owner",
                         len(batch) - len(live), len(batch))
            if live:
                await self._process(live)

    async def _process(self, batch: Sequence[EventT[bytes]]) -> None:
        t0 = time.perf_counter()
        clock = _PhaseClock()
        # (user key) → segments of events; a `forget` closes a segment.
        per_user: dict[bytes, list[list[tuple[EventT[bytes], Event]]]] = {}
        for fe in batch:
            self.gaps.see(fe.message)
            if self.normalizer is not None:
                maybe = await self.normalizer(fe)
                if maybe is None:
                    continue
                ev = maybe
                key = ev.user_id.encode()  # the raw id's pseudonym when pseudonymisation is on
            else:
                key = cast(bytes, fe.message.key)  # the normalize agent keys every record it sends
                try:
                    ev = Event(**json.loads(fe.message.value))  # type: ignore[arg-type]  # None: TypeError, below
                except (TypeError, ValueError) as exc:  # not written by our normalize agent
                    await self._dlq(fe, f"event on the normalised topic is unreadable: {exc}")
                    continue
            segs = per_user.setdefault(key, [[]])
            segs[-1].append((fe, ev))
            if ev.type == "forget":
                segs.append([])
        self.m.batch_size.observe(len(batch))
        states: dict[bytes, UserState] = {}
        for key, segs in list(per_user.items()):
            _as_current(segs[0][0][0])
            raw = self.table.get(key)
            try:
                states[key] = unpack_state(raw) if raw is not None else self.model.initial_state()
            except StateFormatError as exc:
                for seg in segs:
                    for fe, _ in seg:
                        await self._dlq(fe, f"stored state of this user is unreadable ({exc})")
                del per_user[key]
        clock.lap("read")
        applied = 0
        while per_user:
            work = [(key, segs.pop(0)) for key, segs in per_user.items()]
            applied += await self._apply_round(work, states, clock)
            per_user = {k: s for k, s in per_user.items() if s}
        self.m.step_seconds.observe(time.perf_counter() - t0)
        if applied:
            self.m.last_applied.set(time.time())
        for phase, seconds in clock.seconds.items():
            self._observe[phase](seconds)

    async def _apply_round(self, work: list[tuple[bytes, list[tuple[EventT[bytes], Event]]]],
                           states: dict[bytes, UserState], clock: _PhaseClock) -> int:
        """One round: each user's next segment. Charges the time of each phase to `clock`; returns
        the number of events applied."""
        batch_in = []
        two_hop = self.normalizer is None  # records of `events` carry their raw position
        for key, seg in work:
            evs = [Pending(ev, self.source_base + fe.message.partition, fe.message.offset,
                           *(raw_position(fe.message) if two_hop else (-1, -1)))
                   for fe, ev in seg if ev.type != "forget"]
            batch_in.append((states[key], evs))
        results = self.model.apply(batch_in)
        clock.lap("step")
        emit: list[tuple[bytes, str, UserState, float | None]] = []
        n_applied = 0
        for (key, seg), res in zip(work, results):
            by_offset = {fe.message.offset: fe for fe, _ in seg}
            for p, reason in res.rejected:
                await self._dlq(by_offset[p.offset], reason)
            self.m.events_applied.inc(res.applied)
            self.m.events_duplicate.inc(res.duplicates)
            n_applied += res.applied
            if res.applied:
                res.state.seq += 1
                _as_current(seg[-1][0])
                self.table[key] = pack_state(res.state)
                emit.append((key, seg[-1][1].user_id, res.state, res.last_event_ts))
            elif res.duplicates:
                # Only redelivered events: the state already has them, but a worker that stopped
                # or lost the partition between writing the state and sending the outputs never
                # published them. Re-send the current outputs (same seq, same content): a
                # repeat is harmless to consumers, a gap would stay until the user's next event.
                emit.append((key, seg[-1][1].user_id, res.state, None))
        clock.lap("write")
        outs = self.model.outputs([(uid, st) for _, uid, st, _ in emit], k=self.k,
                                  source_event_ts=[ts for *_, ts in emit])
        clock.lap("outputs")
        for (key, *_), (profile, recs) in zip(emit, outs):
            await send_output(self.app, self.app.profiles_topic, key, encode(profile))
            await send_output(self.app, self.app.recs_topic, key, encode(recs))
        self.m.profiles_out.inc(len(outs))
        self.m.recs_out.inc(len(outs))
        clock.lap("send")
        for key, seg in work:
            if seg and seg[-1][1].type == "forget":
                await self._forget(key, seg[-1][0], states)
        clock.lap("write")
        return n_applied

    async def _forget(self, key: bytes, fe: EventT[bytes], states: dict[bytes, UserState]) -> None:
        """Erase a user: table delete (changelog tombstone) and tombstones on both output topics."""
        _as_current(fe)
        if key in self.table:
            del self.table[key]
        await send_output(self.app, self.app.profiles_topic, key, None)
        await send_output(self.app, self.app.recs_topic, key, None)
        states[key] = self.model.initial_state()
        self.m.forgets.inc()
        log.info("erased user key=%r (forget at %s[%d]@%d)", key, fe.message.topic, fe.message.partition,
                 fe.message.offset)


def _profile_agent(app: "ProfilestreamApp", topic: Any, processor: ProfileProcessor, watch: StallWatch) -> None:
    batch_size, window = app.ps_settings.batch_size, app.ps_settings.batch_window_ms / 1000.0

    @app.agent(topic, name="profile")
    async def profile(stream: Any) -> None:
        if batch_size == 1:
            async for fe in stream.events():
                watch.saw_event()
                await _to_completion(processor.process([fe]))
        else:
            # window 0: take what has arrived, without waiting (stream/take.py); else Faust's
            # take_events, which waits up to the window for a full batch.
            batches = take_available(stream, batch_size, on_wait=processor.observe_wait) if window == 0 \
                else stream.take_events(batch_size, within=window)
            async for batch in batches:
                watch.saw_event()
                await _to_completion(processor.process(batch))


def _stall_watchdog(app: "ProfilestreamApp", watch: StallWatch, sources: set[str],
                    gap_watches: list[GapWatch]) -> None:
    """Every 5 s: exit with EXIT_STALLED once `watch` says the agents stalled (stream/stall.py)."""
    end_offsets = EndOffsets(app.ps_settings.confluent_config())
    group_view = GroupView(app.ps_settings.confluent_config(), app.conf.id)

    def settled(tp: tuple[str, int], last: int, end: int) -> bool:
        # A settled partition may also be one whose fetch passed records the agents never got:
        # those are read once more (stream/app.py `read_again_if_skipped`).
        consumer: Any = app.consumer  # stream/app.py's consumer: settled, read_again_if_skipped
        done: bool = consumer.settled(TP(*tp), last, end)
        if done:
            consumer.read_again_if_skipped(TP(*tp), end)
        return done

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def stall_watchdog() -> None:
        tps = assigned_source_partitions(app.consumer.assignment(), sources)
        busy = bool(app.rebalancing) or not app.flow_control.is_active()
        ends = await asyncio.get_running_loop().run_in_executor(None, end_offsets, tps) if tps and not busy else {}
        if app.rebalancing or not app.flow_control.is_active():
            busy, ends = True, {}  # a rebalance began while the end offsets were read: not judged now
        last = {tp: v for g in gap_watches for tp, v in g.last.items()}
        consumer: Any = app.consumer  # stream/app.py's consumer: sequencer, _committed_offset
        seen = generation_progress(tps, last, app.consumer_generation_id,
                                   lambda tp: consumer.sequencer.floor(TP(*tp)),
                                   lambda tp: consumer._committed_offset.get(TP(*tp)))
        per = backlog(ends, seen, settled) if ends is not None else None
        behind = None if per is None else sum(per.values())
        app.metrics.stall_checks.inc()
        app.metrics.records_waiting.set(-1 if behind is None else behind)
        if tps and watch.held(behind=behind, busy=busy):  # a worker without partitions is idle, not held
            why = [w for w, on in (("a rebalance is running", bool(app.rebalancing)),
                                   ("flow control is suspended", not app.flow_control.is_active()),
                                   ("the end offsets could not be read", not busy and behind is None))
                   if on]
            log.warning("stall watchdog held: the agents saw no event for over %.0f s, but %s, so it does not "
                        "count (docs/operations.md 'Stall watchdog')", watch.stall_s, " and ".join(why) or "?")
        # Partitions the stable group gave to nobody: a worker holding none of them would call itself idle.
        orphans = None if busy else await asyncio.get_running_loop().run_in_executor(None, group_view, sources)
        app.metrics.orphaned_partitions.set(-1 if orphans is None else len(orphans))
        if watch.orphans_stuck(orphans):
            log.error("stalled: source partitions %s have been assigned to no member of consumer group %r for over "
                      "%.0f s while the group is stable, so nobody reads what is written there (docs/operations.md "
                      "'Stall watchdog'). Exiting with status %d so the supervisor starts a fresh worker, whose "
                      "joining makes the group assign them again (PROFILESTREAM_STALL_EXIT_S=0 turns this off)",
                      ", ".join(f"{t}[{p}]" for t, p in orphans or []), app.conf.id, watch.stall_s, EXIT_STALLED)
            logging.shutdown()
            os._exit(EXIT_STALLED)
        if watch.check(behind=behind, busy=busy or not tps):
            waiting = [f"{t}[{p}]" for (t, p), n in sorted((per or {}).items()) if n]
            log.error("stalled: the agents saw no event for over %.0f s while %d records wait in %s and the broker "
                      "answers (after a broker outage faust-streaming/aiokafka can stop fetching for good; "
                      "docs/operations.md 'Stall watchdog'). Exiting with status %d so the supervisor starts a "
                      "fresh worker, which resumes from the committed offsets (PROFILESTREAM_STALL_EXIT_S=0 "
                      "turns this off)", watch.stall_s, behind, ", ".join(waiting),
                      EXIT_STALLED)
            logging.shutdown()
            os._exit(EXIT_STALLED)


def declare(app: "ProfilestreamApp") -> None:
    s = app.ps_settings
    m = app.metrics

    watch = StallWatch(s.stall_exit_s)
    names = topic_names(s)
    if s.single_hop:
        single = ProfileProcessor(app, Normalizer(app, require_user_key=True))
        _profile_agent(app, app.raw_topic, single, watch)
        sources, gap_watches = {names.raw}, [single.gaps]
    else:
        normalize_one = Normalizer(app)
        raw_gaps = GapWatch(m, _holds_no_records(app))

        @app.agent(app.raw_topic, name="normalize")
        async def normalize(stream: Any) -> None:
            async for fe in stream.events():
                watch.saw_event()
                if not is_current(app, fe):
                    continue
                with app.inflight:
                    raw_gaps.see(fe.message)
                    ev = await normalize_one(fe)
                    if ev is not None:
                        # Re-key by user: every event of a user lands on one partition of `events`, in order.
                        await send_output(app, app.events_topic, ev.user_id.encode(),
                                          encode(ev.to_json()),
                                          [(RAW_POSITION_HEADER, b"%d:%d" % (fe.message.partition, fe.message.offset))])

        two = ProfileProcessor(app)
        _profile_agent(app, app.events_topic, two, watch)
        sources, gap_watches = {names.raw, names.events}, [raw_gaps, two.gaps]
    if s.stall_exit_s > 0:
        _stall_watchdog(app, watch, sources, gap_watches)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        lag: dict[str, int] = {}
        for tp in list(consumer.assignment()):
            # A rebalance may take `tp` away while we await its position; aiokafka then raises
            # (AssertionError 'Partition is not assigned'). A metric must never stop the worker.
            try:
                pos = await consumer.position(tp)
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001
                continue
            if hw is not None and pos is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, hw - pos)
        for topic, v in lag.items():
            m.lag.labels(topic).set(v)
