"""The latency split at the output record's CreateTime (bench/e2e.py `latency_split`) and its
columns in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.e2e import latency_split
from bench.report import write_markdown

RUN = Path(__file__).resolve().parents[2] / "docs" / "bench" / "run-2026-11-29-1618" / "results.json"


def test_split_is_measured_from_send_to_create_and_from_create_to_receive() -> None:
    # (send, created, received) in seconds: in-worker parts 2, 4, 6 ms; output trips 1, 1, 3 ms
    samples = [(10.000, 10.002, 10.003), (20.000, 20.004, 20.005), (30.000, 30.006, 30.009)]
    out = latency_split(samples)
    assert out["send_to_created_p50_ms"] == pytest.approx(4.0)
    assert out["created_to_received_p50_ms"] == pytest.approx(1.0)
    assert out["send_to_created_p90_ms"] == pytest.approx(5.6)  # numpy's linear interpolation: 4 + 0.8 × 2
    assert latency_split([]) == {}


def test_report_shows_the_split_and_leaves_older_runs_without_it() -> None:
    res = json.loads(RUN.read_text())  # a run from before the split: its rows have no such keys
    assert "| — | — |" in write_markdown(res)
    res["latency"][0].update(send_to_created_p50_ms=3.17, created_to_received_p50_ms=2.61)
    md = write_markdown(res)
    assert "p50 send→created | p50 created→received" in md
    assert "| 3.17 | 2.61 |" in md
