"""The bench's HDR-style histogram: every value lands in the bucket that contains it, buckets tile
the number line, and percentiles stay within one bucket width of the exact nearest-rank value."""

from __future__ import annotations

import numpy as np
import pytest

from bench.hdr import HdrHistogram, percentiles_from_buckets


@pytest.mark.parametrize("bits", [3, 7])
def test_buckets_tile_the_line_and_hold_their_values(bits: int) -> None:
    h = HdrHistogram(bits)
    top = 1 << 30
    edges = [h.bounds(i) for i in range(int(h.index(np.array([top]))[0]) + 1)]
    for (lo, hi), (lo2, _) in zip(edges, edges[1:]):
        assert lo < hi == lo2  # contiguous, no gaps, no overlaps
    rng = np.random.default_rng(0)
    values = np.concatenate([np.arange(0, 5000), rng.integers(0, top, 20000), [top - 1, top]])
    for v, i in zip(values.tolist(), h.index(values).tolist()):
        lo, hi = h.bounds(i)
        assert lo <= v < hi
        assert hi - lo <= max(1, lo >> bits)  # relative width at most 2^-bits


def test_percentiles_within_one_bucket_of_the_exact_nearest_rank() -> None:
    rng = np.random.default_rng(1)
    lat_us = rng.lognormal(mean=9.0, sigma=1.5, size=50_000)  # ≈ 8 ms median, tail to seconds
    h = HdrHistogram(7)
    h.record(lat_us[:20_000])
    h.record(lat_us[20_000:])  # two calls add up
    ints = np.maximum(np.rint(lat_us), 0).astype(np.int64)
    assert h.count == ints.size and sum(c for *_, c in h.buckets()) == ints.size
    assert (h.min, h.max) == (int(ints.min()), int(ints.max()))
    srt = np.sort(ints)
    for q in (0, 1, 50, 90, 99, 99.9, 99.99, 100):
        exact = int(srt[max(1, int(np.ceil(q / 100 * srt.size))) - 1])
        got = h.percentile(q)
        assert exact <= got <= exact + max(1, exact >> 7), (q, exact, got)


def test_reading_percentiles_back_from_stored_buckets() -> None:
    h = HdrHistogram(7)
    h.record([5, 5, 5, 1000, 1_000_000])
    stored = h.to_json()["buckets"]
    assert percentiles_from_buckets(stored, [50, 80, 100]) == [5, h.percentile(80), h.percentile(100)]
    assert h.percentile(80) >= 1000 and h.percentile(100) >= 1_000_000
    with pytest.raises(ValueError):
        percentiles_from_buckets(stored, [101])
    with pytest.raises(ValueError):
        percentiles_from_buckets([], [50])


def test_results_json_keeps_number_lists_on_one_line_and_loads_back_equal() -> None:
    import json

    from bench.report import dumps_results

    h = HdrHistogram(7)
    h.record(np.random.default_rng(2).lognormal(8, 1, 1000))
    res = {"latency": [{"pipeline": "p", "hdr": h.to_json(), "cdf_ms": [0.5, -1e-3, 2.0e5]}], "note": ["a", 1]}
    text = dumps_results(res)
    assert json.loads(text) == res
    assert text.count("\n") < 1.2 * len(h.buckets())  # about one line per bucket, not five
