"""An HDR-style latency histogram: log-linear buckets whose width is at most 1/2^bits of their
value, so one histogram covers microseconds to minutes with a bounded relative error (with the
default 7 bits, < 0.8 %). The layout is HdrHistogram's: values below 2^(bits+1) get buckets of
width 1; above that each power of two is split into 2^bits equal buckets. Percentiles are read
as the highest value of the bucket that holds the rank (HdrHistogram's "highest equivalent
value"), so they never understate a latency.

`bench run` records every end-to-end latency of a pipeline and rate in microseconds and stores
the non-empty buckets in `results.json` (`latency[].hdr`); `latency_percentiles.png` plots the
percentile distribution from them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["HdrHistogram", "percentiles_from_buckets"]


class HdrHistogram:
    def __init__(self, sub_bucket_bits: int = 7) -> None:
        if not 1 <= sub_bucket_bits <= 20:
            raise ValueError("sub_bucket_bits must be in 1..20")
        self.bits = sub_bucket_bits
        self.counts: dict[int, int] = {}
        self.count = 0
        self.min: int | None = None
        self.max: int | None = None

    # bucket layout -------------------------------------------------------------------
    def index(self, values: np.ndarray) -> np.ndarray:
        """Bucket index of each non-negative integer value."""
        v = np.asarray(values, dtype=np.int64)
        _, exp = np.frexp(v.astype(np.float64))  # exp = bit length for v > 0 (exact below 2^53)
        shift = np.maximum(exp.astype(np.int64) - (self.bits + 1), 0)
        top = v >> shift  # in [2^bits, 2^(bits+1)) once shift > 0
        return np.where(shift == 0, v, (shift + 1) * (1 << self.bits) + top - (1 << self.bits))

    def bounds(self, idx: int) -> tuple[int, int]:
        """[lower, upper) of bucket `idx`."""
        sub = 1 << self.bits
        if idx < 2 * sub:
            return idx, idx + 1
        shift = idx // sub - 1
        top = idx % sub + sub
        return top << shift, (top + 1) << shift

    # recording and reading -----------------------------------------------------------
    def record(self, values: Sequence[float] | np.ndarray) -> None:
        """Add values (rounded to integers; negative values count as 0)."""
        v = np.maximum(np.rint(np.asarray(values, dtype=np.float64)), 0).astype(np.int64)
        if not v.size:
            return
        idx, n = np.unique(self.index(v), return_counts=True)
        for i, c in zip(idx.tolist(), n.tolist()):
            self.counts[i] = self.counts.get(i, 0) + c
        self.count += int(v.size)
        lo, hi = int(v.min()), int(v.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def buckets(self) -> list[list[int]]:
        """Non-empty buckets as [lower, upper, count], in order."""
        return [[*self.bounds(i), self.counts[i]] for i in sorted(self.counts)]

    def percentile(self, q: float) -> int:
        return percentiles_from_buckets(self.buckets(), [q])[0]

    def to_json(self, unit: str = "us") -> dict[str, Any]:
        return {"unit": unit, "sub_bucket_bits": self.bits, "count": self.count, "min": self.min, "max": self.max,
                "buckets": self.buckets()}


def percentiles_from_buckets(buckets: Sequence[Sequence[int]], qs: Sequence[float]) -> list[int]:
    """Percentiles (0–100) of [lower, upper, count] buckets: for each q, the highest value of the
    bucket holding the nearest rank ceil(q/100 · n) (at least 1)."""
    if not buckets:
        raise ValueError("no values recorded")
    counts = np.array([b[2] for b in buckets], dtype=np.int64)
    cum = np.cumsum(counts)
    n = int(cum[-1])
    out = []
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        rank = max(1, int(np.ceil(q / 100.0 * n)))
        i = int(np.searchsorted(cum, rank))
        out.append(int(buckets[i][1]) - 1)
    return out
