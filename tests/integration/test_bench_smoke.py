"""The bench's smoke mode produces a complete, well-formed report (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.hdr import percentiles_from_buckets
from bench.micro import STEP_PHASES
from bench.report import RESULTS_SCHEMA_KEYS
from bench.run import run_bench
from stream import Settings

pytestmark = pytest.mark.integration


def test_bench_smoke_writes_a_wellformed_report(broker: Settings, ml_artifact: Path, tmp_path: Path) -> None:
    s = broker.with_(state_dir=tmp_path / "state", artifact=ml_artifact)
    out = tmp_path / "report"
    run_bench(s, out, smoke=True, rates=[200.0], seconds=2.0, batches=[64], argv=["bench", "run", "--smoke"])
    res = json.loads((out / "results.json").read_text())
    assert set(RESULTS_SCHEMA_KEYS) <= set(res)
    assert res["machine"]["cores"] >= 1 and res["machine"]["libraries"]["torch"]
    assert {r["batch"] for r in res["micro"]["step"]} == {1, 8, 64}
    assert all(r["p50_us"] > 0 for r in res["micro"]["step"] + res["micro"]["tensor_step"] + res["micro"]["topk"])
    core = res["micro"]["core_step"]  # unpack → LSTM → top-K → pack, through the compiled kernels on CPU
    assert [(r["batch"], r["device"]) for r in core] == [(1, "cpu fused"), (8, "cpu fused"), (64, "cpu fused")]
    assert all(r["p50_us"] > 0 and r["history"] > 0 for r in core)
    assert {r["device"] for r in res["micro"]["tensor_step"]} == {"cpu", "cpu fused"}
    assert res["micro"]["gpu"] or "CUDA not available" in res["micro"]["gpu_note"]
    phases = res["micro"]["step_phases"]  # where the step's time goes: four phases per batch size
    assert {(r["batch"], r["phase"]) for r in phases} == {(b, p) for b in (1, 64) for p in STEP_PHASES}
    for b in (1, 64):
        assert abs(sum(r["share"] for r in phases if r["batch"] == b) - 1.0) < 1e-6
    floor = res["micro"]["arith_floor"]  # the step's arithmetic at this machine's sgemm rate, batch 1 and 512
    assert [r["batch"] for r in floor] == [1, 512]
    for r in floor:
        assert r["flops_per_event"] > 0 and r["sgemm_gflops"] > 0
        assert abs(r["floor_us"] - r["flops_per_event"] / r["sgemm_gflops"] / 1e3) < 1e-9 * r["floor_us"]
        assert abs(r["bf16_floor_us"] - r["flops_per_event"] / r["bf16_gemm_gflops"] / 1e3) < 1e-9 * r["bf16_floor_us"]
        assert r["weight_bytes_per_event"] > 0 and r["read_gb_per_s"] > 0  # the weights' reads at this core's rate
        assert abs(r["read_floor_us"] - r["weight_bytes_per_event"] / r["read_gb_per_s"] / 1e3) < 1e-9 * r["read_floor_us"]
        assert min(r["gates_gemm_us"], r["scores_gemm_us"], r["topk_us"]) > 0
    assert floor[0]["weight_bytes_per_event"] > floor[1]["weight_bytes_per_event"]  # batch 512 shares the matrices
    ann = res["micro"]["ann"]  # faiss IVF top-K on the 100k catalogue, beside brute force
    assert {r["items"] for r in ann} == {100_000} and {r["batch"] for r in ann} == {1, 64}
    assert all(0.0 <= r["recall_at_10"] <= 1.0 and r["p50_us"] > 0 and 0 < r["load_s"] for r in ann)
    report = (out / "results.md").read_text()
    assert "## Top-K through an ANN index" in report and "Where the full step's time goes" in report
    assert "The arithmetic floor of the step" in report and "The core step (state unpack" in report
    assert "read floor µs" in report and "bf16 floor µs" in report
    pipelines = {r["pipeline"] for r in res["latency"]}
    assert {"transport floor", "pipeline batch=64"} <= pipelines
    for row in res["latency"]:
        assert row["measured"] > 0 and row["drained"] is True, row  # 200 ev/s is far below every pipeline's rate
        assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert len(row["cdf_ms"]) == 101
        ot = row["over_time"]  # every output (warm-up included) by half second of send time
        assert sum(ot["outputs"]) == row["outputs"] and ot["t_s"] == sorted(ot["t_s"])
        assert max(ot["max_ms"]) >= row["max_ms"] and all(p <= m for p, m in zip(ot["p50_ms"], ot["max_ms"]))
        assert 0 <= row["slow"]["count"] <= row["measured"] and row["slow"]["bound_ms"] >= 50.0
        hdr = row["hdr"]  # every measured latency, in µs buckets
        assert hdr["unit"] == "us" and hdr["count"] == row["measured"] == sum(b[2] for b in hdr["buckets"])
        assert hdr["min"] <= percentiles_from_buckets(hdr["buckets"], [50])[0] <= hdr["max"] * 1.01
        assert abs(hdr["max"] / 1e3 - row["max_ms"]) <= 0.001 + row["max_ms"] / 128
        if row["pipeline"] == "transport floor":  # the worker's CPU at the rate: none without a worker
            assert row["worker_cpu_us_per_event"] is None and row["worker_cores"] is None
        else:  # cores = CPU / wall, and the wall spans at least the sending: ≤ CPU per event × rate
            assert 0 < row["worker_cores"] <= row["worker_cpu_us_per_event"] * row["rate"] / 1e6 * 1.02, row
    assert "| worker cores | worker CPU µs/event | drained |" in (out / "results.md").read_text()
    assert all(r["completed"] for r in res["throughput"]), res["throughput"]
    for r in res["throughput"] + res["throughput_vs_batch"]:  # CPU per event of each process in the burst
        assert r["client_cpu_us_per_event"] > 0
        assert r["broker_cpu_us_per_event"] is None or r["broker_cpu_us_per_event"] > 0
        if r["pipeline"] == "transport floor":  # no worker process in the transport floor
            assert r["worker_cpu_us_per_event"] is None and r["worker_cores"] is None
        else:
            assert r["worker_cpu_us_per_event"] > 0 and r["worker_cores"] > 0
    assert "| events/s | worker CPU µs/event | worker cores busy | events/s per worker core |" in \
        (out / "results.md").read_text()
    assert res["max_burst_events_per_s_per_worker"] > 0
    # the rate ramp ran and is well-formed; whether a step held is timing, not asserted
    (ramp,) = res["sustained"]
    assert ramp["pipeline"] == "pipeline batch=64" and ramp["p99_bound_ms"] == res["p99_bound_ms"]
    assert [st["rate"] for st in ramp["steps"]][:1] == [100.0] and 1 <= len(ramp["steps"]) <= 2
    assert all(0 <= st["slow"]["count"] for st in ramp["steps"])  # each step's stalled outputs, counted
    held = [st["rate"] for st in ramp["steps"] if st["held"]]
    assert ramp["sustained_events_per_s"] == (max(held) if held else 0.0)
    assert res["sustained_events_per_s_per_worker"] == ramp["sustained_events_per_s"]
    md = (out / "results.md").read_text()
    assert "| pipeline | rate ev/s |" in md and "profilestream bench run --smoke" in md
    assert "## Sustained throughput" in md
    assert "Slow outputs: latency ≥ 10 × the row's p50" in md
    for png in ("latency_cdf.png", "latency_percentiles.png", "latency_over_time.png", "throughput_vs_batch.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bench_ab_runs_both_variants_with_their_settings(broker: Settings, ml_artifact: Path, tmp_path: Path) -> None:
    from bench.ab import ECHO, METRICS, run_ab

    s = broker.with_(state_dir=tmp_path / "state", artifact=ml_artifact)
    res = run_ab(s, {"A": {}, "B": {"PROFILESTREAM_BATCH_SIZE": "16"}}, rounds=1, events=300, rate=100.0, seconds=1.5,
                 echo=True)
    runs = res["runs"]
    assert [(r["round"], r["variant"]) for r in runs] == [(1, "A"), (1, "B"), (1, ECHO)]
    # B's assignment reached B's worker (its pipeline is named after its batch size), A kept the default
    assert runs[0]["pipeline"] == f"pipeline batch={s.batch_size}" and runs[1]["pipeline"] == "pipeline batch=16"
    assert runs[2]["pipeline"] == "Faust echo floor"  # the floor's own worker, not a pipeline
    for r in runs:
        assert r["completed"] and r["worker_cpu_us_per_event"] > 0 and r["measured"] > 0
        assert 0 <= r["slow_outputs"] <= r["measured"]  # stalled outputs of the latency run, counted
        assert r["p50_ms"] <= r["p99_ms"]
    assert runs[2]["p99_vs_echo"] is None
    for r in runs[:2]:
        assert r["p99_vs_echo"] == pytest.approx(r["p99_ms"] / runs[2]["p99_ms"])
    for e in res["summary"]:
        assert e["events_per_s"]["min"] <= e["events_per_s"]["mean"] <= e["events_per_s"]["max"]
        assert set(k for k, _, _ in METRICS) <= set(e)


def test_bench_profile_samples_the_worker_it_started(broker: Settings, ml_artifact: Path, tmp_path: Path) -> None:
    """`bench profile`: py-spy attaches to a fresh worker with the given settings and the report
    places its samples in the processor's categories, with µs per event from the measured CPU."""

    from bench.profile import OTHER, run_profile

    s = broker.with_(state_dir=tmp_path / "state", artifact=ml_artifact)
    out = tmp_path / "profile"
    res = run_profile(s, {"PROFILESTREAM_SINGLE_HOP": "1"}, events=4000, out=out, hz=200)
    assert res["run"]["pipeline"].endswith("single-hop") and res["run"]["completed"]  # the setting reached it
    assert res["busy_samples"] >= 50, res
    by = {c["category"]: c for c in res["categories"]}
    ours = sum(c["samples"] for name, c in by.items() if name.startswith(("model:", "state ", "rest of the profile")))
    assert ours > 0 and ours + by[OTHER]["samples"] < res["busy_samples"], res
    assert sum(c["us_per_event"] for c in res["categories"]) == pytest.approx(res["worker_cpu_us_per_event"])
    assert json.loads((out / "profile.json").read_text())["busy_samples"] == res["busy_samples"]
    assert "| category | share of busy samples | µs per event |" in (out / "profile.md").read_text()
    assert (out / "profile.txt").stat().st_size > 0
