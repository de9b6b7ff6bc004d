"""In-order hand-over of stream records from the fetcher to the agents, per partition.

faust-streaming 0.15's fetch loop (`Consumer._drain_messages`) hands a record to the agents when
its offset is at or above the partition's last *handed-over* offset (`_read_offset`), and treats any
jump above that mark as a stretch of offsets without records (`_add_gap`), which then counts as done
for the commit. Both marks go wrong around a rebalance. Traced on 2026-11-29 (chaos rebalance run,
`events.raw[0]`, docs/operations.md "Rebalances and Faust", item 5):

1. a record of the old generation whose hand-over was cut short by the revoke still set the mark
   (15809) after the revoke had cleared it, so the new generation dropped the records it fetched
   again from the committed offset (15733 … 15808);
2. Faust's seek to the committed offset reset the mark to 15733 while the loop was still handing over
   a batch fetched before the seek (15809 …), so the jump 15733 → 15810 became a "gap", the commit
   went to 15810, and 15804 … 15808, never processed, were lost.

`Sequencer` replaces both marks for the stream topics (the ones whose offsets are committed): after
each assignment it waits for the seek to the committed offset, then hands over exactly the next
offset and nothing else.

- A record *below* the next offset was handed over already in this generation: dropped (Faust
  dropped these too).
- A record *above* it means the fetcher ran ahead of the hand-over (a batch fetched before a seek, or
  records the fetch filtered out): it is held back, the partition is sought back to the next offset
  (once), and the records come again in order.
- Offsets between two records of one fetch round, the earlier one handed over, with no seek of the
  partition in between, hold no records (a transactional producer's markers, compaction): the Kafka
  client returns a partition's records of one round in log order. Across rounds the same is proven
  only by a round fetched *after* the seek back that still begins above the next offset. Then, and
  only then, the stretch counts as done for the commit.

Changelog topics keep Faust's own logic: recovery reads them, nothing commits them.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Hashable, Iterable

__all__ = ["HeldCommits", "Sequencer", "Verdict", "commit_may_advance", "covered", "describe"]


class Verdict(Enum):
    DELIVER = "deliver"  # hand the record over; then call `delivered()` if the hand-over completed
    DROP = "drop"  # handed over before in this generation
    WAIT = "wait"  # no seek to the committed offset yet in this generation; the seek fetches it again
    SEEK = "seek"  # the fetch ran ahead: seek the partition back to `next_offset()`, hold the record
    HOLD = "hold"  # the fetch ran ahead, the seek back is under way: hold the record
    GAP = "gap"  # offsets `next_offset()` … offset-1 hold no records: count them done, then deliver


class Sequencer:
    """Which fetched record of a stream partition may reach the agents, and in what order."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}  # next offset to hand over; absent until the seek
        self._floor: dict[Hashable, int] = {}  # where this generation's run began (the seek target)
        self._probe: dict[Hashable, int] = {}  # fetch round in which we sought the partition back
        self._round: dict[Hashable, int] = {}  # fetch round of the last record handed over, since the last seek

    # ---- the consumer tells it what happened
    def reset(self, tps: Iterable[Hashable]) -> None:
        """Partitions revoked or (re)assigned: nothing may be handed over until the next seek."""
        for tp in tps:
            self._next.pop(tp, None)
            self._floor.pop(tp, None)
            self._probe.pop(tp, None)
            self._round.pop(tp, None)

    def sought(self, tp: Hashable, offset: int) -> None:
        """The fetcher of `tp` was sent to `offset` (the committed offset after a rebalance).

        Records from `offset` up to the next offset were handed over already in this generation if
        the next offset is ahead of it; they are not handed over again. Otherwise the run starts at
        `offset`: whatever lies below it was committed, so processed."""
        self._floor[tp] = offset
        self._probe.pop(tp, None)
        self._round.pop(tp, None)
        nxt = self._next.get(tp)
        if nxt is None or nxt < offset:
            self._next[tp] = offset

    def admit(self, tp: Hashable, offset: int, fetch_round: int) -> Verdict:
        """The verdict on a fetched record; `fetch_round` numbers the fetcher's batches in order."""
        nxt = self._next.get(tp)
        if nxt is None:
            return Verdict.WAIT
        if offset == nxt:
            return Verdict.DELIVER
        if offset < nxt:
            return Verdict.DROP
        if self._round.get(tp) == fetch_round:
            # the record before it in this same round was handed over: nothing lies in between
            return Verdict.GAP
        probe = self._probe.get(tp)
        if probe is None:
            self._probe[tp] = fetch_round
            return Verdict.SEEK
        if fetch_round <= probe:
            return Verdict.HOLD
        # a batch fetched after the seek back to `nxt` still starts above it
        return Verdict.GAP

    def delivered(self, tp: Hashable, offset: int, fetch_round: int) -> None:
        """The record at `offset`, of fetch round `fetch_round`, reached the agents' queues (its
        hand-over was not cut short)."""
        if self._next.get(tp) == offset:
            self._next[tp] = offset + 1
            self._probe.pop(tp, None)
            self._round[tp] = fetch_round

    def cut_short(self, tp: Hashable) -> None:
        """A hand-over of `tp` was cut short (a rebalance began): that record is still to come, so a
        later record of the same round no longer proves the offsets before it empty."""
        self._round.pop(tp, None)

    def skip_gap(self, tp: Hashable, offset: int) -> tuple[int, int]:
        """After a GAP verdict: the offsets [start, offset) hold no records; the next one is `offset`."""
        start = self._next[tp]
        self._next[tp] = offset
        self._probe.pop(tp, None)
        return start, offset

    # ---- what it knows
    def next_offset(self, tp: Hashable) -> int | None:
        return self._next.get(tp)

    def floor(self, tp: Hashable) -> int | None:
        return self._floor.get(tp)


def commit_may_advance(acked: list[int], gap_starts: Iterable[int], base: int | None) -> bool:
    """Whether the run of acked offsets may move a partition's commit on from `base`, the committed
    offset (the next offset to read). It may only if the lowest acked (or no-record) offset *is*
    `base`. faust-streaming 0.15 allowed `base + 1` as well, an off-by-one since its commit became
    `last + 1`, which commits past a record at `base` that was handed over but not yet processed."""
    if not acked or base is None:
        return True
    lowest = min(acked)
    return min(lowest, min(gap_starts, default=lowest)) <= base


class HeldCommits:
    """Offsets whose commit did not reach the broker, to be sent with the next commit.

    faust-streaming 0.15 (`Consumer._commit_offsets`) records offsets as committed whether or not
    its `_commit` sent them, and it commits a partition again only once an agent acks a record above
    them. A commit that did not go out (`_Consumer._commit` in stream/app.py skips one whose state
    changelog records are not on the broker in time; the broker can refuse one) therefore stayed
    unsent while its partition was quiet, until a restart read those events again. `_Consumer` holds
    such offsets here and adds them to each later commit until one is sent, and forgets them for a
    partition that is revoked (its next owner reads from the broker's committed offset)."""

    def __init__(self) -> None:
        self.offsets: dict[Hashable, int] = {}

    def hold(self, offsets: dict[Any, int]) -> None:
        for tp, offset in offsets.items():
            if offset > self.offsets.get(tp, -1):
                self.offsets[tp] = offset

    def add_to(self, offsets: dict[Any, int]) -> dict[Any, int]:
        """`offsets` with every held offset that is higher than the one it has for the partition."""
        merged = dict(offsets)
        for tp, offset in self.offsets.items():
            if offset > merged.get(tp, -1):
                merged[tp] = offset
        return merged

    def sent(self, offsets: dict[Any, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self.offsets and self.offsets[tp] <= offset:
                del self.offsets[tp]

    def forget(self, tps: Iterable[Hashable]) -> None:
        for tp in tps:
            self.offsets.pop(tp, None)


def covered(stretches: Iterable[tuple[int, int]], start: int, end: int) -> bool:
    """Whether the half-open stretches together cover every offset of [start, end)."""
    at = start
    for lo, hi in sorted(stretches):
        if lo > at:
            break
        at = max(at, hi)
        if at >= end:
            return True
    return at >= end


def describe(tp: Any) -> str:
    return f"{getattr(tp, 'topic', tp)}[{getattr(tp, 'partition', '?')}]"
