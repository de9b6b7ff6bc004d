"""bench/profile.py: py-spy's folded stacks sorted into the report's categories."""

from __future__ import annotations

import pytest

from bench.profile import IDLE, OTHER, categorize, format_profile

PROC = "process (stream/agents.py:305);ProfileProcessor._process (stream/agents.py:340)"
FOLDED = [
    # the state write is inside the processor, and counts as the state write, not the processor
    f"run (asyncio/events.py:80);{PROC};ManagedUserDict.__setitem__ (mode/utils/collections.py:600);"
    "Store._set (faust/stores/rocksdb.py:480) 7",
    f"run (asyncio/events.py:80);{PROC};ProfileModel.apply (model/runtime.py:300) 5",
    f"run (asyncio/events.py:80);{PROC};ProfileModel.outputs (model/runtime.py:470);"
    "ProfileModel.scores_topk_fused (model/runtime.py:250) 3",
    f"run (asyncio/events.py:80);{PROC};ProfileModel.outputs (model/runtime.py:494) 2",
    f"run (asyncio/events.py:80);{PROC} 4",
    "run (asyncio/events.py:80);Sender._send_produce_req (aiokafka/producer/sender.py:200) 6",
    "_run_once (asyncio/base_events.py:1900);EpollSelector.select (selectors.py:468) 10",
    "_run_once (asyncio/base_events.py:1900);Handle._run (asyncio/events.py:84) 3",
    "",
    "not a folded line",
]


def _samples(res: dict, name: str) -> float:
    return next(c["samples"] for c in res["categories"] if c["category"] == name)


def test_categorize_counts_each_stack_once_in_its_first_category() -> None:
    res = categorize(FOLDED)
    assert res["samples"] == 40 and res["idle_samples"] == 10 and res["busy_samples"] == 30
    assert _samples(res, "state write: RocksDB put + changelog record") == 7
    assert _samples(res, "model: LSTM step and bookkeeping (ProfileModel.apply)") == 5
    assert _samples(res, "model: scores and top-K") == 3
    assert _samples(res, "model: tags, reasons, output records (rest of ProfileModel.outputs)") == 2
    assert _samples(res, "rest of the profile processor") == 4
    assert _samples(res, "produce: aiokafka producer and sender, socket writes") == 6
    assert _samples(res, OTHER) == 3
    assert all(c["category"] != IDLE for c in res["categories"])  # idle is reported apart, not as a share
    assert sum(c["share_of_busy"] for c in res["categories"]) == pytest.approx(1.0)


def test_format_profile_gives_microseconds_per_event_from_the_measured_cpu() -> None:
    res = categorize(FOLDED)
    for c in res["categories"]:
        c["us_per_event"] = c["share_of_busy"] * 300.0
    res.update({"settings": {"PROFILESTREAM_SINGLE_HOP": "1"}, "events": 1000, "rate": None, "hz": 100,
                "run": {"events_per_s": 2000.0}, "worker_cpu_us_per_event": 300.0, "command": "profilestream bench profile"})
    md = format_profile(res)
    # the state write: 7 of 30 busy samples of 300 µs
    assert "| state write: RocksDB put + changelog record | 23.3 % | 70 |" in md
    assert md.index("state write") < md.index("produce:") < md.index("LSTM step")  # largest first


def test_format_profile_of_a_rate_run_names_the_rate_and_the_workers_load() -> None:
    res = categorize(FOLDED)
    for c in res["categories"]:
        c["us_per_event"] = c["share_of_busy"] * 2400.0
    res.update({"settings": {}, "events": 2000, "rate": 100.0, "hz": 100,
                "run": {"p50_ms": 2.7, "p99_ms": 6.4, "worker_cores": 0.24}, "worker_cpu_us_per_event": 2400.0,
                "command": "profilestream bench profile --rate 100"})
    md = format_profile(res)
    assert md.startswith("# Where the worker's time goes (2000 events at 100 ev/s; p50 2.7 ms, p99 6.4 ms, "
                         "worker CPU 2400 µs/event (0.24 of a core))")
    assert "| state write: RocksDB put + changelog record | 23.3 % | 560 |" in md  # 7 of 30 busy samples
