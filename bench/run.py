"""`profilestream bench run`: microbenchmarks, latency with floors, throughput; one report."""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stream.settings import Settings

from .machine import machine_facts
from .report import write_report

__all__ = ["run_bench"]


def _artifact(s: Settings, tmp: Path) -> tuple[Path, str]:
    if (s.artifact_path / "manifest.json").is_file():
        return s.artifact_path, "configured artifact"
    from model import init_random_artifact, load_ml100k

    init_random_artifact(load_ml100k(s.cache_dir), tmp / "model", item_dim=64, hidden=128)
    return tmp / "model", "random artifact, item_dim 64, hidden 128 (no trained model found)"


def run_bench(settings: Settings, out: Path, *, smoke: bool, rates: list[float], seconds: float,
              batches: list[int], argv: list[str], p99_bound_ms: float = 500.0,
              ramp_seconds: float = 8.0) -> dict[str, Any]:
    from stream.broker import broker_down, broker_up

    from .e2e import latency_run, start_pipeline, sustained_run, throughput_run
    from .micro import run_micro

    t_start = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="profilestream-bench-"))
    artifact, artifact_note = _artifact(settings, tmp)
    s = settings.with_(artifact=artifact)
    res: dict[str, Any] = {"schema_version": 2, "command": "profilestream " + shlex.join(argv),
                           "machine": machine_facts(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "artifact": artifact_note, "smoke": smoke,
                           # the worker settings every pipeline row shares (single-hop and batch size vary by row)
                           "worker_settings": {"output_client": s.output_client,
                                               "producer_linger_ms": s.producer_linger_ms,
                                               "batch_window_ms": s.batch_window_ms, "cpu_kernel": s.cpu_kernel}}
    res["micro"] = run_micro(artifact, smoke=smoke)
    info = broker_up(s, quiet=True)
    from model import load_artifact

    items = load_artifact(artifact).catalogue.item_ids
    res["latency"], res["throughput"], res["throughput_vs_batch"], res["sustained"] = [], [], [], []
    try:
        # The batched pipeline of the latency and ramp runs: the worker's default batch size (what
        # users run) when the sweep includes it, else the sweep's largest.
        batched = s.batch_size if s.batch_size in batches and s.batch_size > 1 else max(batches)
        # (kind, batch, single-hop): the floors, the default two-hop pipeline per event and
        # batched, and the batched pipeline in single-hop mode (one Faust hop fewer).
        kinds: list[tuple[str, int, bool]] = [("transport", 1, False)] \
            + ([] if smoke else [("echo", 1, False), ("pipeline", 1, False)]) + [("pipeline", batched, False)] \
            + ([] if smoke else [("pipeline", batched, True)])
        n_max = 2000 if smoke else 20000
        two_hop_batched: dict[str, Any] = {}  # the default pipeline's burst row, reused by the batch sweep
        for kind, bs, single_hop in kinds:
            print(f"{kind} (batch {bs}{', single-hop' if single_hop else ''}):", file=sys.stderr)
            p = start_pipeline(kind, s.with_(single_hop=single_hop), tmp, batch_size=bs)
            try:
                for rate in rates:
                    res["latency"].append(latency_run(p, rate=rate, seconds=seconds, warmup=min(1.0, seconds / 3),
                                                      items=items))
                n = n_max if bs > 1 or kind != "pipeline" else n_max // 4
                res["throughput"].append(throughput_run(p, n=n, items=items, broker_pid=info.pid))
                if kind == "pipeline" and bs == batched and not single_hop:
                    two_hop_batched = res["throughput"][-1]
                if kind != "transport" and (not smoke or bs > 1):
                    res["sustained"].append(sustained_run(
                        p, items=items, p99_bound_ms=p99_bound_ms, seconds=1.5 if smoke else ramp_seconds,
                        start_rate=400.0 if kind == "echo" else 100.0, max_steps=2 if smoke else 8))
            finally:
                p.stop()
        print("throughput vs micro-batch size:", file=sys.stderr)
        for bs in batches:
            if bs == batched:  # measured above with the same worker settings
                res["throughput_vs_batch"].append({"batch": bs, **two_hop_batched})
                continue
            p = start_pipeline("pipeline", s, tmp, batch_size=bs)
            try:
                r = throughput_run(p, n=(n_max // 4 if bs == 1 else n_max), items=items, broker_pid=info.pid)
                res["throughput_vs_batch"].append({"batch": bs, **r})
            finally:
                p.stop()
    finally:
        if info.started_by_us:
            broker_down(s)
    pipe = [r["events_per_s"] for r in res["throughput_vs_batch"] if r["completed"]]
    res["max_burst_events_per_s_per_worker"] = max(pipe) if pipe else float("nan")
    # The headline is the default (two-hop) pipeline; single-hop has its own rows and key.
    ramps = [r["sustained_events_per_s"] for r in res["sustained"]
             if r["pipeline"].startswith("pipeline") and not r["pipeline"].endswith("single-hop")]
    hop1 = [r["sustained_events_per_s"] for r in res["sustained"] if r["pipeline"].endswith("single-hop")]
    if hop1:
        res["sustained_events_per_s_per_worker_single_hop"] = max(hop1)
    res["sustained_events_per_s_per_worker"] = max(ramps) if ramps else float("nan")
    res["p99_bound_ms"] = p99_bound_ms
    res["seconds"] = time.time() - t_start
    files = write_report(res, out)
    print(f"wrote {', '.join(str(out / f) for f in files)} in {res['seconds']:.0f} s", file=sys.stderr)
    return res
