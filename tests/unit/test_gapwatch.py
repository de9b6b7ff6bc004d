"""GapWatch: offset jumps within one consumer generation are counted, new generations and stretches
the fetch proved free of records are not."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from stream.agents import GapWatch
from stream.sequencer import covered
from stream.metrics import WorkerMetrics


@dataclass
class Msg:
    offset: int
    generation_id: int = 1
    topic: str = "t"
    partition: int = 0


def gaps(m: WorkerMetrics, topic: str = "t") -> float:
    return m.registry.get_sample_value("profilestream_offset_gaps_total", {"topic": topic}) or 0.0


def test_contiguous_records_and_redeliveries_are_not_gaps() -> None:
    m = WorkerMetrics()
    g = GapWatch(m)
    for off in [5, 6, 7, 6, 7, 8]:  # a redelivery goes back, never forward
        g.see(Msg(off))
    assert gaps(m) == 0


def test_a_jump_in_one_generation_counts_the_records_not_seen(caplog: pytest.LogCaptureFixture) -> None:
    m = WorkerMetrics()
    g = GapWatch(m)
    for off in [10, 11, 15, 16]:
        g.see(Msg(off))
    g.see(Msg(3, partition=1))
    g.see(Msg(5, partition=1))
    assert gaps(m) == 3 + 1
    assert "offset gap on t[0]: 11 → 15" in caplog.text


def test_a_new_generation_may_start_anywhere() -> None:
    m = WorkerMetrics()
    g = GapWatch(m)
    g.see(Msg(10, generation_id=1))
    g.see(Msg(400, generation_id=2))  # another worker processed 11..399 meanwhile
    g.see(Msg(401, generation_id=2))
    g.see(Msg(11, generation_id=3))   # back to an older committed offset
    assert gaps(m) == 0


def test_a_jump_over_offsets_the_fetch_proved_empty_is_not_a_gap(caplog: pytest.LogCaptureFixture) -> None:
    # A transactional producer leaves a commit marker (an offset without a record) after each
    # transaction; the fetch loop proves such stretches empty (stream/sequencer.py, Verdict.GAP).
    caplog.set_level(logging.DEBUG, logger="profilestream.agents")
    m = WorkerMetrics()
    proven = {("t", 0): [(40, 41), (43, 44)]}
    g = GapWatch(m, lambda tp, start, end: covered(proven.get(tp, []), start, end))
    for off in [38, 39, 41, 42, 44, 45]:
        g.see(Msg(off))
    assert gaps(m) == 0
    assert "hold no records (proven by the fetch)" in caplog.text
    g.see(Msg(48))  # 46, 47 were not proven empty: a hole
    assert gaps(m) == 2
    g.see(Msg(5, partition=1))
    g.see(Msg(7, partition=1))  # the stretch proven on partition 0 says nothing about partition 1
    assert gaps(m) == 3


@pytest.mark.parametrize(("stretches", "start", "end", "expected"), [
    ([(40, 41)], 40, 41, True),
    ([(40, 41)], 40, 42, False),         # 41 not proven
    ([(41, 43), (40, 41)], 40, 43, True),  # two adjacent stretches, in any order
    ([(40, 41), (42, 43)], 40, 43, False),  # 41 missing between them
    ([(30, 50)], 40, 45, True),
    ([], 40, 41, False),
])
def test_covered(stretches: list[tuple[int, int]], start: int, end: int, expected: bool) -> None:
    assert covered(stretches, start, end) is expected
