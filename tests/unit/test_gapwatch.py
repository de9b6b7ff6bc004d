"""GapWatch: offset jumps within one consumer generation are counted, new generations are not."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from stream.agents import GapWatch
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


def test_a_jump_onto_the_offset_the_seek_went_to_is_not_a_gap(caplog: pytest.LogCaptureFixture) -> None:
    # After a rebalance the client may hand over records from the position it reset the partition
    # to, before Faust's seek to the committed offset (here 1026) lands.
    caplog.set_level(logging.INFO, logger="profilestream.agents")
    m = WorkerMetrics()
    targets = {("t", 0): 1026}
    g = GapWatch(m, lambda: targets)
    for off in [865, 866, 867, 1026, 1027]:
        g.see(Msg(off, generation_id=4))
    assert gaps(m) == 0
    assert "the seek to the committed offset landed" in caplog.text
    g.see(Msg(1030, generation_id=4))  # a jump anywhere else still counts
    assert gaps(m) == 2
