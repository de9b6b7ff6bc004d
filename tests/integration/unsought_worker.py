"""Fault injection for the stall watchdog test: a real worker in which the seek of each consumer
generation never reaches the fetch loop (`python -m tests.integration.unsought_worker`).

The fetch loop hands a stream partition's records to the agents only after the generation's seek to
the committed offset (stream/sequencer.py, Verdict.WAIT); here `Sequencer.sought` does nothing, so
every record is held back for a seek that never comes. Nothing is logged and the group stays
joined. A kill test on 2026-12-07 ended with a worker that applied no record of two of its three
partitions for four minutes, without a word from the watchdog, which then left a partition with
neither a record seen nor a seek out of its count; whether that worker's seek was lost this way is
not known (its logs were lost)."""

from __future__ import annotations

from typing import Hashable

from stream.sequencer import Sequencer
from stream.settings import Settings
from stream.worker import run_worker


def _never_sought(self: Sequencer, tp: Hashable, offset: int) -> None:
    return None


if __name__ == "__main__":
    Sequencer.sought = _never_sought  # type: ignore[method-assign]
    run_worker(Settings.from_env())
