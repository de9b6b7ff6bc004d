"""A latency row's time bins and its stalled outputs (bench.e2e), on hand-built samples."""

from __future__ import annotations

import numpy as np

from bench.e2e import SLOW_MIN_MS, latency_over_time, slow_outputs


def test_outputs_are_binned_by_send_time() -> None:
    sent = np.array([0.1, 0.4, 0.6, 2.2, 2.3, 2.4])
    lat = np.array([1.0, 3.0, 2.0, 500.0, 4.0, 6.0])
    ot = latency_over_time(sent, lat, bin_s=0.5)
    assert ot["bin_s"] == 0.5
    assert ot["t_s"] == [0.0, 0.5, 2.0]  # empty bins are left out
    assert ot["outputs"] == [2, 1, 3]
    assert ot["p50_ms"] == [2.0, 2.0, 6.0]
    assert ot["max_ms"] == [3.0, 2.0, 500.0]


def test_warm_up_outputs_before_the_first_send_still_get_a_bin() -> None:
    ot = latency_over_time(np.array([-0.2, 0.1]), np.array([7.0, 8.0]), bin_s=0.5)
    assert ot["t_s"] == [-0.5, 0.0] and ot["outputs"] == [1, 1]


def test_no_outputs_give_empty_columns() -> None:
    ot = latency_over_time(np.zeros(0), np.zeros(0))
    assert ot["t_s"] == ot["outputs"] == ot["p50_ms"] == ot["max_ms"] == []


def test_slow_outputs_are_ten_times_the_median_and_at_least_the_minimum() -> None:
    sent = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    lat = np.array([2.0, 19.0, 20.0, 60.0, 400.0])
    # p50 2 ms: 10 × p50 is 20 ms, under the 50-ms minimum, so the bound is the minimum
    res = slow_outputs(sent, lat, 2.0)
    assert res["bound_ms"] == SLOW_MIN_MS == 50.0
    assert (res["count"], res["first_s"], res["last_s"]) == (2, 4.0, 5.0)
    assert res["share"] == 2 / 5
    # p50 10 ms: the bound is 100 ms, and only the 400-ms output passes it
    res = slow_outputs(sent, lat, 10.0)
    assert (res["bound_ms"], res["count"], res["first_s"], res["last_s"]) == (100.0, 1, 5.0, 5.0)


def test_a_row_without_slow_outputs_says_so() -> None:
    res = slow_outputs(np.array([0.5, 1.0]), np.array([3.0, 4.0]), 3.5)
    assert res["count"] == 0 and res["share"] == 0.0 and res["first_s"] is None and res["last_s"] is None


def test_the_report_lists_the_rows_with_slow_outputs() -> None:
    from bench.report import _slow_part

    quiet = {"pipeline": "transport floor", "rate": 100.0,
             "slow": {"bound_ms": 50.0, "count": 0, "share": 0.0, "first_s": None, "last_s": None}}
    stalled = {"pipeline": "Faust echo floor", "rate": 100.0,
               "slow": {"bound_ms": 50.0, "count": 125, "share": 0.25, "first_s": 3.04, "last_s": 4.51}}
    text = "\n".join(_slow_part([quiet, stalled]))
    assert "| Faust echo floor | 100 | 125 | 25.0 | 50 | 3.0–4.5 |" in text
    assert "transport floor" not in text
    assert _slow_part([quiet])[-1] == "No row had slow outputs."
    assert _slow_part([{"pipeline": "p", "rate": 1.0}]) == []  # a report from before the column
