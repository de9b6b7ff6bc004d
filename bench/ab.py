"""`profilestream bench ab`: does a worker setting change what an event costs?

Alternating rounds of two variants (the CLI's A and B; `run_ab` takes any number) of the worker's settings, each round a fresh
full-pipeline worker per variant: a warm-up burst, a measured burst (events/s and the CPU time
per event of the worker, the broker and the bench client), then a latency run at a low rate.
Alternating the variants spreads this machine's drift over both; the spread across rounds says
how much of a difference is noise.

With `echo=True` (the CLI's `--echo`) every round also runs the Faust echo floor (bench/echo.py:
a Faust agent that forwards each event unchanged, the floor of issue #4's p99 target) through the
same burst and latency run, and each variant's p99 is divided by the echo floor's p99 of the same
round. A ratio taken round by round, in alternation, does not depend on one lucky or unlucky
floor the way a single full run's does (bench/README.md "Measured": runs whose floor queued).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from stream.errors import ConfigError
from stream.settings import Settings

__all__ = ["parse_assignments", "run_ab", "format_ab", "ratios_to_echo", "ECHO"]

#: the variant name of the Faust echo floor's rounds
ECHO = "echo floor"

#: the numbers each round records, and how the summary prints them
METRICS = [("events_per_s", "events/s", ".0f"), ("worker_cpu_us_per_event", "worker CPU µs/event", ".0f"),
           ("broker_cpu_us_per_event", "broker CPU µs/event", ".0f"), ("p50_ms", "p50 ms", ".1f"),
           ("p99_ms", "p99 ms", ".1f"), ("p99_vs_echo", "p99 ÷ the echo floor's p99 of the same round", ".2f"),
           ("rate_worker_cpu_us_per_event", "worker CPU µs/event at the rate", ".0f"),
           ("slow_outputs", "slow outputs at the rate (≥ 10 × p50 and ≥ 50 ms)", ".0f")]


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """['PROFILESTREAM_X=1', …] → {env name: value}; names must be settings (`profilestream settings`)."""
    known = {f.metadata["env"] for f in fields(Settings)}
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"{item!r} is not NAME=VALUE (for example PROFILESTREAM_PRODUCER_LINGER_MS=5)")
        if name not in known:
            raise ConfigError(f"{name} is not a profilestream setting; `profilestream settings` lists them")
        out[name] = value
    return out


def ratios_to_echo(rows: list[dict[str, Any]]) -> None:
    """Set each row's `p99_vs_echo`: its p99 over the p99 of the echo floor's row of the same
    round; None for the echo floor's own rows, and where a round has no echo p99."""
    echo = {r["round"]: r.get("p99_ms") for r in rows if r["variant"] == ECHO}
    for r in rows:
        floor = echo.get(r["round"])
        ok = r["variant"] != ECHO and floor and r.get("p99_ms") is not None and not math.isnan(r["p99_ms"])
        r["p99_vs_echo"] = r["p99_ms"] / floor if ok else None


def run_ab(base: Settings, variants: dict[str, dict[str, str]], *, rounds: int, events: int, rate: float,
           seconds: float, echo: bool = False) -> dict[str, Any]:
    """Run `rounds` alternating rounds of every variant (name → env assignments over `base`), and
    with `echo` of the Faust echo floor (`base`'s settings) after them in each round."""
    from model import load_artifact
    from stream.broker import broker_down, broker_up

    from .e2e import latency_run, start_pipeline, throughput_run

    settings = {name: Settings.from_env(environ={**os.environ, **env}, bootstrap_servers=base.bootstrap_servers,
                                        state_dir=base.state_dir, artifact=base.artifact_path)
                for name, env in variants.items()}
    kinds = {name: "pipeline" for name in settings}
    if echo:
        settings[ECHO], kinds[ECHO] = base, "echo"
    t0 = time.time()
    info = broker_up(base, quiet=True)
    items = load_artifact(base.artifact_path).catalogue.item_ids
    tmp = Path(tempfile.mkdtemp(prefix="profilestream-ab-"))
    rows: list[dict[str, Any]] = []
    try:
        for rnd in range(rounds):
            for name, s in settings.items():
                print(f"round {rnd + 1}/{rounds}, {name}:", file=sys.stderr)
                p = start_pipeline(kinds[name], s, tmp, batch_size=s.batch_size)
                try:
                    throughput_run(p, n=max(200, events // 10), items=items, broker_pid=info.pid)  # warm-up
                    burst = throughput_run(p, n=events, items=items, broker_pid=info.pid)
                    lat = latency_run(p, rate=rate, seconds=seconds, warmup=min(1.0, seconds / 3), items=items)
                finally:
                    p.stop()
                rows.append({"round": rnd + 1, "variant": name, **burst,
                             **{k: lat.get(k) for k in ("p50_ms", "p99_ms", "measured")},
                             "rate_worker_cpu_us_per_event": lat.get("worker_cpu_us_per_event"),
                             # a stall in the latency run (bench.e2e.slow_outputs): a p99 it set is not queueing
                             "slow_outputs": (lat.get("slow") or {}).get("count")})
    finally:
        if info.started_by_us:
            broker_down(base)
    ratios_to_echo(rows)
    summary = []
    for name in settings:
        mine = [r for r in rows if r["variant"] == name]
        entry: dict[str, Any] = {"variant": name, "settings": variants.get(name, {})}
        for key, _, _ in METRICS:
            vals = [r[key] for r in mine if r.get(key) is not None and not math.isnan(r[key])]
            entry[key] = {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)} if vals else None
        summary.append(entry)
    return {"rounds": rounds, "events": events, "rate": rate, "seconds": time.time() - t0, "runs": rows,
            "summary": summary}


def format_ab(res: dict[str, Any]) -> str:
    head = "| variant | settings | " + " | ".join(f"{label} (mean, min–max)" for _, label, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (2 + len(METRICS))]
    for e in res["summary"]:
        cells = []
        for key, _, fmt in METRICS:
            v = e[key]
            cells.append("—" if v is None else f"{format(v['mean'], fmt)} ({format(v['min'], fmt)}–{format(v['max'], fmt)})")
        settings = " ".join(f"{k}={v}" for k, v in e["settings"].items()) or "(as the environment)"
        if e["variant"] == ECHO:
            settings = "a Faust agent forwarding each event (the environment's settings)"
        lines.append(f"| {e['variant']} | {settings} | " + " | ".join(cells) + " |")
    lines.append(f"\n{res['rounds']} alternating rounds, bursts of {res['events']} events, latency at "
                 f"{res['rate']:.0f} ev/s; {res['seconds']:.0f} s.")
    if any(e["variant"] == ECHO for e in res["summary"]):
        lines.append("p99 ÷ the echo floor's: each round's p99 over the p99 of the echo floor run in the same "
                     "round, then mean and min–max over the rounds (issue #4's target: ≤ 1.5 at 1,000 ev/s).")
    return "\n".join(lines)
