"""Where the worker's profile processor spends a latency run (bench/e2e.py `worker_phases`,
from two scrapes of its /metrics) and the report's table of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.e2e import worker_phases
from bench.report import write_markdown

RUN = Path(__file__).resolve().parents[2] / "docs" / "bench" / "run-2026-11-29-1618" / "results.json"


def _scrape(batches: float, events: float, total_s: float, **phases: tuple[float, float]) -> dict[str, float]:
    """A /metrics scrape as WorkerProcess.metrics() returns it; phases: name=(count, sum seconds)."""
    m = {"profilestream_step_seconds_count": batches, "profilestream_step_seconds_sum": total_s,
         "profilestream_batch_events_count": batches, "profilestream_batch_events_sum": events}
    for name, (count, seconds) in phases.items():
        m[f'profilestream_batch_phase_seconds_count{{phase="{name}"}}'] = count
        m[f'profilestream_batch_phase_seconds_sum{{phase="{name}"}}'] = seconds
    return m


def test_phases_are_the_means_per_batch_of_what_the_run_added() -> None:
    # before: 10 batches from warming up; the run adds 40 batches of 100 events and these seconds
    before = _scrape(10, 10, 0.5, wait=(10, 0.1), read=(10, 0.2), step=(10, 0.3), send=(10, 0.0))
    after = _scrape(50, 110, 2.5, wait=(50, 0.5), read=(50, 0.6), step=(50, 1.1), send=(50, 0.8))
    out = worker_phases(before, after)
    assert out["batches"] == 40
    assert out["events_per_batch"] == pytest.approx(2.5)
    assert out["total_ms"] == pytest.approx(2.0 / 40 * 1e3)
    assert out["phase_ms"] == pytest.approx({"wait": 10.0, "read": 10.0, "step": 20.0, "send": 20.0})
    # no batch in the run: nothing to say (not a division by zero)
    assert worker_phases(after, after) == {}


def test_a_phase_no_batch_went_through_is_left_out() -> None:
    """Faust's take_events and per-event mode have no `wait` phase: no column value, not 0."""
    before = _scrape(0, 0, 0.0)
    after = _scrape(4, 4, 0.004, read=(4, 0.001), step=(4, 0.002))
    assert set(worker_phases(before, after)["phase_ms"]) == {"read", "step"}


def test_report_shows_the_phases_of_the_rows_that_have_them() -> None:
    res = json.loads(RUN.read_text())  # a run from before the phases: no table
    assert "Inside the worker" not in write_markdown(res)
    row = next(r for r in res["latency"] if r["pipeline"].startswith("pipeline batch"))
    row["worker_phases"] = {"batches": 500, "events_per_batch": 1.02, "total_ms": 1.234,
                            "phase_ms": {"read": 0.111, "step": 0.222, "write": 0.105, "outputs": 0.333,
                                         "send": 0.456}}
    md = write_markdown(res)
    assert "| wait | read | step | write | outputs | send | batch total |" in md
    assert f"| {row['pipeline']} | {row['rate']:.0f} | 500 | 1.0 | — | 0.111 | 0.222 | 0.105 | 0.333 | 0.456 | 1.234 |" in md
