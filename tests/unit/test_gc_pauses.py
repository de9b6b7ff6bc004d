"""stream/worker.py `watch_gc_pauses`: collections of generations 1 and 2 are timed into
`profilestream_gc_pause_seconds`, generation 0 is not."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from stream.metrics import WorkerMetrics
from stream.worker import watch_gc_pauses


def _counts(m: WorkerMetrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(m.registry).decode().splitlines():
        if line.startswith("profilestream_gc_pause_seconds_count"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_full_and_generation_1_collections_are_timed_and_generation_0_is_not() -> None:
    m = WorkerMetrics()
    before = list(gc.callbacks)
    watch_gc_pauses(m)
    try:
        gc.disable()  # only the collections below run while we count
        gc.collect(0)
        assert _counts(m) == {'profilestream_gc_pause_seconds_count{generation="1"}': 0.0,
                              'profilestream_gc_pause_seconds_count{generation="2"}': 0.0}
        gc.collect(1)
        gc.collect(2)
        gc.collect(2)
        assert _counts(m) == {'profilestream_gc_pause_seconds_count{generation="1"}': 1.0,
                              'profilestream_gc_pause_seconds_count{generation="2"}': 2.0}
    finally:
        gc.enable()
        gc.callbacks[:] = before
