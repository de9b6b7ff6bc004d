"""In-order hand-over of stream records (stream/sequencer.py) and the consumer's fetch loop that uses
it (stream/app.py `_Consumer._drain_messages`), on the interleaving traced in the 2026-11-29 chaos
rebalance run that lost `events.raw[0]` offsets 15804-15808 (docs/operations.md "Rebalances and
Faust", item 5).

The loop tests run the real fetch loops, ours and faust-streaming's, on one consumer object whose
Kafka client is replaced by a scripted partition log (no broker: this is the consumer's bookkeeping,
not the stream; the rebalance chaos test covers the stream)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from bench.chaos import read_again_counts
from stream.app import create_app_shell
from stream.metrics import READ_AGAIN_REASONS
from stream.sequencer import HeldCommits, Sequencer, Verdict, commit_may_advance
from stream.settings import Settings

T = TP("events.raw", 0)


# ---------------------------------------------------------------- Sequencer alone

def test_nothing_is_handed_over_before_the_seek_of_the_generation() -> None:
    s = Sequencer()
    assert s.admit(T, 10, 1) is Verdict.WAIT
    s.sought(T, 10)
    assert s.admit(T, 10, 2) is Verdict.DELIVER
    s.delivered(T, 10, 1)
    assert s.next_offset(T) == 11


def test_records_are_handed_over_in_offset_order_only() -> None:
    s = Sequencer()
    s.sought(T, 100)
    # a batch fetched before the seek, from a position ahead of the committed offset
    assert s.admit(T, 105, 1) is Verdict.SEEK
    assert s.admit(T, 106, 1) is Verdict.HOLD  # same round: fetched before the seek back
    assert s.next_offset(T) == 100
    out = []
    for off in range(100, 108):  # the round after the seek back
        v = s.admit(T, off, 2)
        if v is Verdict.DELIVER:
            s.delivered(T, off, 2)
            out.append(off)
    assert out == list(range(100, 108))


def test_a_cut_short_hand_over_does_not_advance() -> None:
    s = Sequencer()
    s.sought(T, 5)
    assert s.admit(T, 5, 1) is Verdict.DELIVER  # ... and the revoke cut the hand-over short
    assert s.admit(T, 6, 1) is Verdict.SEEK
    s.reset([T])  # revoked
    s.delivered(T, 5, 1)  # the cut-short hand-over finishing late is ignored
    assert s.next_offset(T) is None


def test_records_below_the_next_offset_are_dropped_once_handed_over() -> None:
    s = Sequencer()
    s.sought(T, 0)
    for off in range(3):
        assert s.admit(T, off, 1) is Verdict.DELIVER
        s.delivered(T, off, 1)
    s.sought(T, 0)  # a seek back to the committed offset: 0-2 were handed over in this generation
    assert s.next_offset(T) == 3
    assert [s.admit(T, off, 2) for off in range(4)] == [Verdict.DROP] * 3 + [Verdict.DELIVER]


def test_a_seek_ahead_of_the_hand_over_moves_it() -> None:
    s = Sequencer()
    s.sought(T, 0)
    s.sought(T, 50)  # committed by the partition's earlier owner
    assert s.next_offset(T) == 50
    assert s.floor(T) == 50


def test_a_gap_is_accepted_only_from_a_round_fetched_after_the_seek_back() -> None:
    s = Sequencer()
    s.sought(T, 10)
    assert s.admit(T, 13, 4) is Verdict.SEEK  # round 4: seek back to 10
    assert s.admit(T, 14, 4) is Verdict.HOLD
    assert s.admit(T, 13, 5) is Verdict.GAP  # round 5 began at 10 and Kafka returned 13 first
    assert s.skip_gap(T, 13) == (10, 13)
    assert s.admit(T, 13, 5) is Verdict.DELIVER


def test_a_jump_within_one_fetch_round_is_a_gap_at_once() -> None:
    """A transactional producer's commit marker between two records of one fetch: no seek needed."""
    s = Sequencer()
    s.sought(T, 0)
    assert s.admit(T, 0, 1) is Verdict.DELIVER
    s.delivered(T, 0, 1)
    assert s.admit(T, 2, 1) is Verdict.GAP
    assert s.skip_gap(T, 2) == (1, 2)


def test_a_jump_across_rounds_or_across_a_seek_is_checked_by_a_seek_back() -> None:
    s = Sequencer()
    s.sought(T, 0)
    s.delivered(T, 0, 1)
    assert s.admit(T, 2, 2) is Verdict.SEEK  # round 2 may follow a seek elsewhere: check
    s2 = Sequencer()
    s2.sought(T, 0)
    s2.delivered(T, 0, 1)
    s2.sought(T, 0)  # a seek between the two records (Faust's, to the committed offset)
    assert s2.admit(T, 2, 1) is Verdict.SEEK
    s3 = Sequencer()
    s3.sought(T, 0)
    assert s3.admit(T, 0, 1) is Verdict.DELIVER  # its hand-over cut short: not delivered
    assert s3.admit(T, 2, 1) is Verdict.SEEK
    s4 = Sequencer()
    s4.sought(T, 0)
    s4.delivered(T, 0, 1)
    s4.cut_short(T)  # the hand-over of 1 was cut short by a rebalance
    assert s4.admit(T, 2, 1) is Verdict.SEEK  # 1 exists: not a gap


def test_commit_needs_the_lowest_done_offset_to_be_the_committed_one() -> None:
    assert commit_may_advance([7, 8, 9], [], 7)
    assert not commit_may_advance([8, 9], [], 7)  # 7 handed over, not done: faust 0.15 committed 10
    assert commit_may_advance([9], [7], 7)  # 7-8 hold no records
    assert commit_may_advance([], [], 7)
    assert commit_may_advance([8], [], None)  # no committed offset known: faust's own rule


# ---------------------------------------------------------------- the fetch loops, scripted

@dataclass(eq=False)
class _Msg:
    topic: str
    partition: int
    offset: int
    acked: bool = False
    generation_id: int = 4
    key: bytes = b""
    value: bytes = b""

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class _Log:
    """One partition's log as the Kafka client serves it: a position that fetches advance and seeks
    move. Round 1 is a batch the client fetched from 15733 before Faust's seek to the committed
    offset landed; the seek lands right after the loop handed over (or held back) offset 15809."""

    def __init__(self, end: int, batch: int = 100) -> None:
        self.end = end
        self.batch = batch
        self.position = 15733
        self.rounds = 0
        self.seeks: list[int] = []
        self.consumer: Any = None
        self.fetcher: Any = None

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, _Msg]]:
        self.rounds += 1
        start, stop = self.position, min(self.position + self.batch, self.end)
        self.position = stop
        if start >= self.end or self.rounds > 20:
            self.fetcher._stopped.set()
            return
        for off in range(start, stop):
            yield T, _Msg(T.topic, T.partition, off)
            if self.rounds == 1 and off == 15809:
                await self.consumer.perform_seek()  # Recovery._resume_streams, concurrently

    async def seek_to_committed(self) -> dict[TP, int]:
        self.seeks.append(15733)
        self.position = 15733
        return {T: 15733}

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        for off in partitions.values():
            self.seeks.append(off)
            self.position = off


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def _drain_scripted(log: _Log, prepare: Callable[[Any], None] = lambda c: None,
                    loop_fn: Callable[[Any, Any], Any] = lambda c, f: c._drain_messages(f)) -> tuple[list[int], Any]:
    """A fetch loop (`loop_fn(consumer, fetcher)`, ours by default) over the scripted client `log`,
    its partition reset as after an assignment, `prepare(consumer)` then, until the script stops it:
    the offsets handed over, in order, and the consumer."""

    async def main() -> tuple[list[int], Any]:
        app = create_app_shell(Settings.from_env({}, state_dir=Path(tempfile.mkdtemp())), None)
        c = app.consumer
        log.consumer, log.fetcher = c, _Fetcher()
        handed: list[int] = []

        async def callback(msg: _Msg) -> None:
            handed.append(msg.offset)
            c.ack(msg)  # the agent finishes it at once

        c.callback = callback
        c.getmany = log.getmany
        c._thread.seek_to_committed = log.seek_to_committed
        c._thread.seek_wait = log.seek_wait
        app.topics.acks_enabled_for = lambda topic: topic == T.topic
        c.sequencer.reset([T])
        prepare(c)
        await asyncio.wait_for(loop_fn(c, log.fetcher), 30)
        return handed, c

    return asyncio.run(main())


def _reads_again(c: Any, caplog: Any = None) -> dict[str, float]:
    """`profilestream_read_again_total` by reason, as /metrics shows it; with `caplog`, first checks
    that the worker log says the same as far as `profilestream chaos` reads it (its `read_again`)."""
    reg = c.app.metrics.registry
    counts = {r: reg.get_sample_value("profilestream_read_again_total", {"reason": r})
              for r in READ_AGAIN_REASONS}
    if caplog is not None:
        assert read_again_counts([caplog.text]) == counts, caplog.text
    return counts


def _after_rebalance(c: Any) -> None:
    # the state the rebalance left (generation 3 → 4): Faust's read offset set to 15809 by a
    # hand-over the revoke cut short, after the revoke had cleared it; the sequencer reset.
    c._read_offset[T] = 15809
    c._committed_offset[T] = 15733


def _run(loop_fn: Any) -> tuple[list[int], Any, Any]:
    log = _Log(end=15900)
    handed, c = _drain_scripted(log, _after_rebalance, loop_fn)
    return handed, c, log


def test_our_fetch_loop_hands_over_every_record_once_in_order(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="profilestream.app")
    handed, c, log = _run(lambda c, f: c._drain_messages(f))
    assert handed == list(range(15733, 15900))
    assert c._new_offset(T) == 15900  # the commit covers exactly what the agent finished
    # on /metrics: 15733-15809 waited for the seek, 15810 ran ahead and sent the partition back
    reg = c.app.metrics.registry
    assert not reg.get_sample_value("profilestream_fetch_held_back_total", {"reason": "gap"})
    assert reg.get_sample_value("profilestream_fetch_held_back_total", {"reason": "wait"}) == 15810 - 15733
    assert reg.get_sample_value("profilestream_fetch_held_back_total", {"reason": "seek"}) == 1
    # Faust's seek to the committed offset; ours after it, as records came before the sequencer knew
    # the seek (perform_seek); and the seek back when 15810 of the same round ran ahead
    assert log.seeks == [15733, 15733, 15733]
    assert _reads_again(c, caplog) == {"before_seek": 1, "not_yielded": 0, "watchdog": 0}


def test_records_the_client_returned_after_its_seek_but_before_the_sequencer_knew_it_come_again(
        caplog: pytest.LogCaptureFixture) -> None:
    """faust-streaming 0.15.3's `Recovery.on_recovery_completed` resumes the stream partitions and
    then awaits `perform_seek` with the flow already running (recovery resumed it to read the
    changelogs), so the fetch loop goes on while the seek to the committed offset runs on the Kafka
    client's thread (aiokafka asks the broker for each partition's committed offset in turn). A
    fetch round from the new position can go through the loop before the seek's answer is back.
    Its records were held back (Verdict.WAIT: no seek yet, as far as the sequencer knew), and the
    client's position is past them. With no record after them nothing brought them back (before
    2026-12-07 `handed` stayed empty here: the rebalance chaos loss of 103, docs/operations.md
    "Records fetched but never handed over"); now `perform_seek` reads them again."""

    class LateAnswer(_Log):
        def __init__(self) -> None:
            super().__init__(end=15900, batch=1000)
            self.seek_landed = asyncio.Event()
            self.round_taken = asyncio.Event()
            self.seek_task: Any = None

        async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, _Msg]]:
            self.rounds += 1
            if self.rounds == 1:
                self.seek_task = asyncio.ensure_future(self.consumer.perform_seek())  # Recovery, concurrently
                await self.seek_landed.wait()
            start, stop = self.position, self.end
            self.position = stop
            for off in range(start, stop):
                yield T, _Msg(T.topic, T.partition, off)
            if self.rounds == 1:
                self.round_taken.set()
            elif start >= stop and self.seek_task.done() and self.rounds > 5:
                self.fetcher._stopped.set()
            await asyncio.sleep(0)

        async def seek_to_committed(self) -> dict[TP, int]:
            self.seeks.append(15733)
            self.position = 15733
            self.seek_landed.set()
            await self.round_taken.wait()  # the thread's answer comes after the round
            return {T: 15733}

    caplog.set_level(logging.INFO, logger="profilestream.app")
    log = LateAnswer()
    handed, c = _drain_scripted(log)
    assert handed == list(range(15733, 15900))
    assert log.seeks == [15733, 15733]  # the client's seek, then perform_seek's read of the held-back records
    assert _reads_again(c, caplog) == {"before_seek": 1, "not_yielded": 0, "watchdog": 0}


@pytest.mark.parametrize("sought_before", [True, False])
def test_records_faust_getmany_took_but_never_yielded_come_again(sought_before: bool,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """faust-streaming 0.15.3's `Consumer.getmany` ends a round of records taken from the Kafka client
    when the flow stops or the generation changes, and drops the rest of the round; the client's
    position is past them (seen in rebalance chaos runs, 2026-12-07: "59 of the 59 record(s) of a
    fetch round … were not yielded"). Here a round of 100 records from the committed offset 10
    yields 40, with nothing after it.
    Sought before (the partition's run had begun): the fetch goes back to the next offset at once.
    Not yet: they count as held back, and the generation's seek reads them again. Before the change
    offsets 50–109 never came (the loop ended with 40 handed over)."""

    class CutRound(_Log):
        def __init__(self) -> None:
            super().__init__(end=110)
            self.position = 10

        async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, _Msg]]:
            self.rounds += 1
            start, stop = self.position, self.end
            self.position = stop
            c = self.consumer
            c._round_fetched = {T: (start, stop - 1, stop - start)} if stop > start else {}
            for off in range(start, stop):
                if self.rounds == 1 and off == 50:
                    if not sought_before:
                        await c.perform_seek()  # the generation's seek, after the round
                    return  # Faust's getmany: the flow stopped / the generation changed
                yield T, _Msg(T.topic, T.partition, off)
            if start >= stop and self.rounds > 5:
                self.fetcher._stopped.set()
            await asyncio.sleep(0)

        async def seek_to_committed(self) -> dict[TP, int]:
            return {T: 10}

    caplog.set_level(logging.INFO, logger="profilestream.app")
    handed, c = _drain_scripted(CutRound(), lambda c: c.sequencer.sought(T, 10) if sought_before else None)
    assert handed == list(range(10, 110))
    # on /metrics, by the path that read them again. Not sought before: offsets 10–49 were held back
    # until the seek (before_seek), and when the round ended the seek was known, so 50–109 sent the
    # fetch back too (not_yielded)
    assert _reads_again(c, caplog) == {"before_seek": int(not sought_before), "not_yielded": 1, "watchdog": 0}


def test_faust_fetch_loop_loses_the_records_on_this_interleaving() -> None:
    """The same script through faust-streaming 0.15.3's own loop: what the fix is for. If a later
    faust-streaming fixes this, this test fails, and stream/app.py's loop may be retired."""
    handed, c, log = _run(lambda c, f: faust_aiokafka.Consumer._drain_messages(c, f))
    missing = sorted(set(range(15733, 15900)) - set(handed))
    assert missing == list(range(15733, 15809))
    # faust's commit then passes them (the trace: 15810), ours refuses: 15733 is not done
    assert c._new_offset(T) is None
    faust_commit = faust_aiokafka.Consumer._new_offset(c, T)
    assert faust_commit is not None and faust_commit > 15809


def test_the_consumer_keeps_the_proven_empty_stretches_for_the_gap_watch() -> None:
    app = create_app_shell(Settings.from_env({}, state_dir=Path(tempfile.mkdtemp())), None)
    c = app.consumer
    c._committed_offset[T] = 100
    c._mark_no_records(T, 140, 141)  # a commit marker at 140
    c._mark_no_records(T, 181, 183)
    assert c.holds_no_records(T, 140, 141)
    assert c.holds_no_records(T, 181, 183) and c.holds_no_records(T, 182, 183)
    assert not c.holds_no_records(T, 140, 142)  # 141 is a record
    assert not c.holds_no_records(TP(T.topic, T.partition + 1), 140, 141)  # another partition
    assert c._new_offset(T) is None  # the stretches alone do not move the commit off 100
    # once the commit has passed a stretch, it is no longer kept
    c._committed_offset[T] = 182
    c._mark_no_records(T, 221, 222)
    assert not c.holds_no_records(T, 140, 141)
    assert c.holds_no_records(T, 181, 183) and c.holds_no_records(T, 221, 222)


def test_settled_reads_the_real_aiokafka_fetch_position() -> None:
    """`_Consumer.settled` (the stall watchdog's view of a partition that ends with a commit marker)
    and `read_again_if_skipped` read aiokafka's private subscription state; an aiokafka whose
    attributes moved fails here instead of leaving the watchdog to count markers as waiting records."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def main() -> None:
        app = create_app_shell(Settings.from_env({}, state_dir=Path(tempfile.mkdtemp())), None)
        c = app.consumer
        kafka = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: no broker needed
        c._thread._consumer = kafka
        try:
            kafka.assign([TopicPartition(T.topic, T.partition)])
            assert not c.settled(T, 40, 42)  # no fetch position yet
            kafka._subscription.subscription.assignment.state_value(T).seek(42)  # fetched past the marker at 41
            c.sequencer.sought(T, 0)
            for off in range(41):
                c.sequencer.delivered(T, off, 1)
            assert c.sequencer.next_offset(T) == 41
            # the fetch is past offset 41, which never reached the agents: settled (a marker there
            # waits for nobody; a re-read is not a stall), and asking has no side effect
            assert c.settled(T, 40, 42)
            assert c._reread == []
            # not while the fetch loop still hands over a round that holds records of the partition
            c._round_fetched = {T: (41, 41, 1)}
            assert not c.read_again_if_skipped(T, 42)
            c._round_fetched = {}
            # the watchdog's second call, at its next check with the same next offset, sends the
            # fetch back to 41 once (a record dropped after the client counted it consumed comes again)
            assert not c.read_again_if_skipped(T, 42)  # first sighting: a round may be on its way
            assert c._reread == []
            assert c.read_again_if_skipped(T, 42)
            assert len(c._reread) == 1  # the seek back (the client here never runs it)
            c._reread[0].cancel()
            assert not c.read_again_if_skipped(T, 42)  # once per partition, generation and next offset
            assert len(c._reread) == 1
            assert not c.read_again_if_skipped(T, 41)  # nothing between the next offset and the end
            assert c.settled(T, 40, 42)  # the agents saw 40, the last record: nothing waits
            assert not c.settled(T, 39, 42)  # 40 was handed over but not seen yet
            assert not c.settled(T, 40, 43)  # the fetch has not read offset 42 yet
            assert not c.settled(TP(T.topic, T.partition + 1), 40, 42)  # not assigned
        finally:
            await kafka.stop()

    asyncio.run(main())


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])


# ---------------------------------------------------------------- commits that did not go out


def test_held_commits_keep_the_highest_offset_until_one_as_high_is_sent() -> None:
    held = HeldCommits()
    u = TP(T.topic, 1)
    held.hold({T: 10, u: 5})
    held.hold({T: 8})  # an older skipped commit does not lower it
    assert held.add_to({T: 9}) == {T: 10, u: 5}  # a lower new offset is raised to the held one
    assert held.add_to({T: 12}) == {T: 12, u: 5}
    held.sent({T: 9})
    assert held.offsets == {T: 10, u: 5}  # 9 does not cover 10
    held.sent({T: 12})
    held.forget([u])  # revoked: its next owner reads from the broker's committed offset
    assert held.offsets == {} and held.add_to({}) == {}


def _consumer_with_acks(n: int) -> Any:
    """The app shell's consumer, in the running loop, owning T, whose agents finished offsets 0 … n-1
    above a committed offset of 0; Faust's producer flush is a no-op (nothing was sent)."""
    app = create_app_shell(Settings.from_env({}, state_dir=Path(tempfile.mkdtemp())), None)
    c = app.consumer
    app.topics.acks_enabled_for = lambda topic: topic == T.topic
    c.assignment = lambda: {T}

    async def flushed() -> None:
        return None

    app.producer.flush = flushed
    c._committed_offset[T] = 0
    c._acked[T].extend(range(n))
    return c


def test_a_skipped_commit_is_sent_by_the_next_commit_although_no_new_event_came(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real commit path (Faust's `force_commit` → `_commit_offsets` → our `_commit`), with the
    Kafka client's commit replaced by a list: a commit skipped because a changelog record was not
    on the broker in time goes out with the next commit once the record is, while Faust alone
    counts the skipped offsets as committed and never sends them."""
    import stream.app as stream_app

    sent: list[dict[TP, int]] = []

    async def kafka_commit(self: Any, offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", kafka_commit)
    monkeypatch.setattr(stream_app, "CHANGELOG_COMMIT_WAIT_S", 0.01)

    async def main() -> tuple[Any, dict[TP, int]]:
        c = _consumer_with_acks(10)
        record = asyncio.get_running_loop().create_future()
        c.app.changelog.track(record)  # a state change still in Faust's buffer
        assert not await c.force_commit()  # skipped: the changelog record is not on the broker
        assert sent == [] and c.held_commits.offsets == {T: 10}
        faust_alone = faust_aiokafka.Consumer._filter_committable_offsets(c, [T])
        record.set_result("delivered")
        await asyncio.sleep(0)
        assert await c.force_commit()  # no event came since, and the offsets go out
        return c, faust_alone

    c, faust_alone = asyncio.run(main())
    assert faust_alone == {}  # Faust took 10 as committed when it was not
    assert sent == [{T: 10}]
    assert c.held_commits.offsets == {}
    reg = c.app.metrics.registry
    assert reg.get_sample_value("profilestream_commits_held_total", {"reason": "changelog"}) == 1
    assert not reg.get_sample_value("profilestream_commits_held_total", {"reason": "refused"})


def test_a_commit_the_broker_refused_is_held_for_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [False, True]  # Faust's `_commit` returns False when the broker refuses (e.g. rebalanced)
    sent: list[dict[TP, int]] = []

    async def kafka_commit(self: Any, offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return answers.pop(0)

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", kafka_commit)

    async def main() -> Any:
        c = _consumer_with_acks(5)
        assert not await c.force_commit()
        assert await c.force_commit()
        return c

    c = asyncio.run(main())
    assert sent == [{T: 5}, {T: 5}]
    assert c.held_commits.offsets == {}
    assert c.app.metrics.registry.get_sample_value("profilestream_commits_held_total", {"reason": "refused"}) == 1


def test_a_refused_commit_of_a_partition_revoked_meanwhile_is_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> Any:
        c = _consumer_with_acks(5)

        async def kafka_commit(self: Any, offsets: dict[TP, int]) -> bool:
            c.assignment = lambda: set()  # the rebalance revoked T while the commit was on its way
            return False

        monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", kafka_commit)
        assert not await c.force_commit()
        return c

    c = asyncio.run(main())
    assert c.held_commits.offsets == {}  # its next owner reads from the broker's committed offset
