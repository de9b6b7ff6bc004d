"""The report of a full run with both pipeline modes: the headline is the default (two-hop)
pipeline's sustained rate, single-hop gets its own line, and each row keeps its mode in its name."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import write_markdown

RUN = Path(__file__).resolve().parents[2] / "docs" / "bench" / "run-2026-11-29-1618" / "results.json"


def test_report_keeps_two_hop_headline_and_single_hop_line_apart() -> None:
    res = json.loads(RUN.read_text())
    two = [r["sustained_events_per_s"] for r in res["sustained"]
           if r["pipeline"].startswith("pipeline") and "single-hop" not in r["pipeline"]]
    one = [r["sustained_events_per_s"] for r in res["sustained"] if "single-hop" in r["pipeline"]]
    assert two and one
    md = write_markdown(res)
    assert f"default two-hop mode, best micro-batch): **{max(two):.0f}**" in md
    assert f"single-hop mode (PROFILESTREAM_SINGLE_HOP=1): **{max(one):.0f}**" in md
    # without the single-hop key (runs before the mode existed) the line simply has no such part
    del res["sustained_events_per_s_per_worker_single_hop"]
    assert "single-hop mode (PROFILESTREAM_SINGLE_HOP=1)" not in write_markdown(res)
