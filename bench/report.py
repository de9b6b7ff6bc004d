"""Bench report: results.json, results.md (tables) and PNG plots."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from stream.metrics import BATCH_PHASES

__all__ = ["write_report", "RESULTS_SCHEMA_KEYS"]

RESULTS_SCHEMA_KEYS = ("schema_version", "command", "machine", "started_at", "seconds", "micro", "latency",
                       "throughput", "throughput_vs_batch", "sustained", "sustained_events_per_s_per_worker",
                       "max_burst_events_per_s_per_worker", "p99_bound_ms")


def _md_table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    out = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for _, key, fmt in cols:
            v = r.get(key)
            cells.append("—" if v is None or (isinstance(v, float) and v != v) else format(v, fmt) if fmt else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


#: Columns of the burst tables for the CPU time each process spent per event (bench.e2e._CpuMeter).
CPU_COLS = [("worker CPU µs/event", "worker_cpu_us_per_event", ".0f"), ("worker cores busy", "worker_cores", ".2f"),
            ("events/s per worker core", "core_ceiling", ".0f"), ("broker CPU µs/event", "broker_cpu_us_per_event", ".0f"),
            ("bench client CPU µs/event", "client_cpu_us_per_event", ".0f")]
CPU_NOTE = ("CPU µs/event: user + system CPU time of each process during the burst, divided by the events. "
            "'events/s per worker core' = 10⁶ / worker CPU µs per event: the rate one worker would reach with a "
            "core to itself at this cost. 'worker cores busy' = its CPU time / the burst's wall time. Broker, "
            "worker and bench client share this machine's cores; '—' = not measured (no worker, or a broker "
            "this bench did not start and whose process it does not know).")


def _with_ceiling(r: dict[str, Any]) -> dict[str, Any]:
    w = r.get("worker_cpu_us_per_event")
    return {**r, "core_ceiling": 1e6 / w if w else None}


def write_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    latency = [{**r, "drained_mark": "✓" if r.get("drained", True) else "✗"} for r in res["latency"]]
    sustained = [{**r, "sustained_mark": ("" if r["bounded"] else "≥ ") + f"{r['sustained_events_per_s']:.0f}",
                  "steps_text": ", ".join(f"{st['rate']:.0f} → {st['p99_ms']:.0f} {'✓' if st['held'] else '✗'}"
                                          if st["p99_ms"] is not None else f"{st['rate']:.0f} → — ✗"
                                          for st in r["steps"])} for r in res["sustained"]]
    phases = [{**r, "pct": 100 * r["share"]} for r in res["micro"].get("step_phases", [])]
    inside = [{"pipeline": r["pipeline"], "rate": r["rate"], **{k: v for k, v in r["worker_phases"].items() if k != "phase_ms"},
               **{f"ph_{k}": v for k, v in r["worker_phases"]["phase_ms"].items()}}
              for r in res["latency"] if r.get("worker_phases")]
    inside_part = ["", "Inside the worker's profile processor during the same runs (mean ms per micro-batch, from its "
                   "/metrics: `profilestream_batch_phase_seconds`, warm-up included):", "",
                   _md_table(inside, [("pipeline", "pipeline", ""), ("rate ev/s", "rate", ".0f"),
                                      ("batches", "batches", "d"), ("events/batch", "events_per_batch", ".1f"),
                                      *[(ph, f"ph_{ph}", ".3f") for ph in BATCH_PHASES],
                                      ("batch total", "total_ms", ".3f")]),
                   "", "wait: the batch's first event in the buffer until the batch is taken; read: validation, state "
                   "read and unpack; step: LSTM rounds and bookkeeping; write: pack and state write (with its "
                   "changelog record); outputs: scores, top-K, tags, reasons and records; send: the outputs handed "
                   "to the producer. 'batch total' = read to send (wait excluded). Queueing before the buffer, "
                   "Kafka's trips and the consumer's fetch are outside these phases."] if inside else []
    floor = [{**r, "kflop": r["flops_per_event"] / 1e3, "weight_kb": r.get("weight_bytes_per_event", float("nan")) / 1e3}
             for r in res["micro"].get("arith_floor", [])]  # runs before 2026-12-08 have no read floor
    floor_part = ["", "The arithmetic floor of the step on this CPU (1 thread): the step's flops at the machine's "
                  "sgemm rate; the read floor: the weight bytes each event reads (the matrices once per batch, "
                  "the item's input row once per event) at the rate one core reads a buffer of the weights' "
                  "size; the bf16 columns: the same flops at this CPU's rate for a bfloat16 product (float32 "
                  "accumulation; native where the CPU has AMX or AVX512-BF16, emulated and slower elsewhere), "
                  "what the step would cost if its products ran in bf16, which they do not; and the step's three "
                  "biggest pieces timed alone (µs per event):", "",
                  _md_table(floor, [("batch", "batch", "d"), ("kflop/event", "kflop", ".0f"),
                                    ("sgemm GFLOP/s", "sgemm_gflops", ".0f"), ("floor µs", "floor_us", ".2f"),
                                    ("bf16 GFLOP/s", "bf16_gemm_gflops", ".0f"), ("bf16 floor µs", "bf16_floor_us", ".2f"),
                                    ("weights kB/event", "weight_kb", ".1f"),
                                    ("read GB/s", "read_gb_per_s", ".0f"), ("read floor µs", "read_floor_us", ".2f"),
                                    ("gate product µs", "gates_gemm_us", ".2f"),
                                    ("score product µs", "scores_gemm_us", ".2f"), ("top-K µs", "topk_us", ".2f")])
                  ] if floor else []
    phases_part = ["", "Where the full step's time goes (CPU, p50 µs per event of each phase, timed separately):", "",
                   _md_table(phases, [("batch", "batch", "d"), ("phase", "phase", ""), ("p50 µs", "p50_us", ".1f"),
                                      ("share %", "pct", ".0f")])] if phases else []
    core = res["micro"].get("core_step", [])
    core_part = ["", f"The core step (state unpack → LSTM step → top-K → pack, per event; "
                 f"{core[0].get('history', 0)} recent items per user masked from the top-K; without the full step's "
                 "bookkeeping, tags, reasons and records):", "",
                 _md_table(core, [("batch", "batch", "d"), ("device", "device", ""), ("p50 µs", "p50_us", ".2f"),
                                  ("p99 µs", "p99_us", ".2f"), ("events/s", "events_per_s", ".0f")])] if core else []
    parts = [f"# profilestream bench — {res['started_at']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; torch {m['libraries']['torch']}, "
             f"faust-streaming {m['libraries']['faust-streaming']}.  ", f"Command: `{res['command']}`", ""]
    if "worker_settings" in res:
        parts[-1:] = ["", "Worker settings: " + ", ".join(f"{k} {v}" for k, v in res["worker_settings"].items())
                      + " (echo floor and pipelines alike).", ""]
    parts += ["## End-to-end latency (ms, warm-up excluded)", "",
              _md_table(latency, [("pipeline", "pipeline", ""), ("rate ev/s", "rate", ".0f"),
                                         ("samples", "measured", "d"), ("p50", "p50_ms", ".2f"), ("p90", "p90_ms", ".2f"),
                                         ("p99", "p99_ms", ".2f"), ("p99.9", "p99.9_ms", ".2f"), ("max", "max_ms", ".2f"),
                                         ("p50 send→created", "send_to_created_p50_ms", ".2f"),
                                         ("p50 created→received", "created_to_received_p50_ms", ".2f"),
                                         ("worker cores", "worker_cores", ".2f"),
                                         ("worker CPU µs/event", "worker_cpu_us_per_event", ".0f"),
                                         ("drained", "drained_mark", "")]),
              "", "drained: ✓ = every event sent at that rate was processed and measured; ✗ = the pipeline "
              "was still working off its backlog when the wait ended, so the tail is worse than shown.",
              "", "worker cores / worker CPU µs/event: the worker process's CPU time (user + system) from the "
              "first event sent until the last was applied, per second of that time and per event. At a low rate "
              "each micro-batch holds about one event, so an event costs several times what it costs in a burst "
              "(the throughput tables); a worker near 1.00 core has no slack, and its queue sets the tail.",
              "", "send→created / created→received: each output's latency split at the output record's "
              "CreateTime, which the worker's producer sets when it sends the output (whole ms, so each part is "
              "good to about ±1 ms; for the transport floor it is the bench producer's, so send→created ≈ 0): queueing and the worker's processing, then the output's "
              "own trip through producer, broker and the bench consumer. p50 of each; p90 in results.json.",
              "", "Every row's latencies are also kept as an HDR-style histogram in results.json (`latency[].hdr`: "
              "log-linear buckets in µs, each at most 1/128 of its value wide); latency_percentiles.png plots "
              "the percentile distribution from it.",
              *_slow_part(res["latency"]),
              *inside_part,
              "", "## Max burst throughput (as fast as the producer sends)", "",
              _md_table([_with_ceiling(r) for r in res["throughput"]], [("pipeline", "pipeline", ""), ("events", "events", "d"),
                                            ("events/s", "events_per_s", ".0f"), *CPU_COLS]),
              "", CPU_NOTE,
              "", "## Sustained throughput (rate raised until p99 passes the bound)", "",
              _md_table(sustained, [("pipeline", "pipeline", ""), ("p99 bound ms", "p99_bound_ms", ".0f"),
                                    ("sustained events/s", "sustained_mark", ""), ("steps: rate → p99 ms", "steps_text", "")]),
              "", "A step holds (✓) when its p99 stays under the bound and the pipeline works off every event it "
              "was sent; the rate doubles until a step fails (✗), then bisects. '≥' = no step failed within the ramp.",
              "", f"Sustained events/s per worker (full pipeline in its default two-hop mode, best micro-batch): "
                  f"**{res['sustained_events_per_s_per_worker']:.0f}** at p99 ≤ {res['p99_bound_ms']:.0f} ms; "
                  f"max burst (above): {res['max_burst_events_per_s_per_worker']:.0f}"
                  + (f"; single-hop mode (PROFILESTREAM_SINGLE_HOP=1): "
                     f"**{res['sustained_events_per_s_per_worker_single_hop']:.0f}**"
                     if "sustained_events_per_s_per_worker_single_hop" in res else ""), "",
              "## Throughput vs micro-batch size (full pipeline, default two-hop mode, one worker, burst)", "",
              _md_table([_with_ceiling(r) for r in res["throughput_vs_batch"]],
                        [("batch size", "batch", "d"), ("events/s", "events_per_s", ".0f"), *CPU_COLS]),
              "", "## Model step (per event)", "",
              _md_table(res["micro"]["step"], [("batch", "batch", "d"), ("device", "device", ""), ("p50 µs", "p50_us", ".2f"),
                                               ("p99 µs", "p99_us", ".2f"), ("events/s", "events_per_s", ".0f")]),
              *phases_part,
              *core_part,
              "", "Tensor math only (LSTM step + scores + top-K on resident tensors; 'cpu fused' = the compiled "
              "kernels of model/fused.py, the CPU path the worker takes):", "",
              _md_table(res["micro"]["tensor_step"], [("batch", "batch", "d"), ("device", "device", ""),
                                                      ("p50 µs", "p50_us", ".3f"), ("events/s", "events_per_s", ".0f")]),
              *floor_part,
              "", "## Top-K (brute force, per query)", "",
              _md_table(res["micro"]["topk"], [("items", "items", "d"), ("batch", "batch", "d"), ("device", "device", ""),
                                               ("p50 µs", "p50_us", ".1f")])]
    if res["micro"].get("ann"):
        brute = {(r["items"], r["batch"]): r["p50_us"] for r in res["micro"]["topk"] if r["device"] == "cpu"}
        ann = [{**r, "speedup": brute[(r["items"], r["batch"])] / r["p50_us"]
                if (r["items"], r["batch"]) in brute else None} for r in res["micro"]["ann"]]
        parts += ["", "## Top-K through an ANN index (faiss IVF-Flat, inner product, searched on 1 thread)", "",
                  _md_table(ann, [("items", "items", "d"), ("catalogue", "data", ""), ("index", "method", ""),
                                  ("batch", "batch", "d"), ("p50 µs/query", "p50_us", ".1f"),
                                  ("× brute force", "speedup", ".1f"), ("recall@10", "recall_at_10", ".3f"),
                                  ("build s", "build_s", ".1f"), ("cached load s", "load_s", ".2f")]),
                  "", "recall@10: share of the exact top 10 (brute force) that the index returns, over 256 queries "
                  "drawn like the items. × brute force: the brute-force row above with the same items and batch, "
                  "same run. build s: build and write the worker's index cache; cached load s: a later worker "
                  "start loading it (PROFILESTREAM_CACHE_DIR/ann)."]
    elif "ann" in res["micro"]:
        parts += ["", "_faiss-cpu is not installed: no ANN top-K rows._"]
    if res["micro"].get("gpu_note"):
        parts += ["", f"_{res['micro']['gpu_note']}._"]
    return "\n".join(parts) + "\n"


def _slow_part(latency: list[dict[str, Any]]) -> list[str]:
    """The rows with stalled outputs (bench.e2e.slow_outputs), or a line saying there were none."""
    rows = [{"pipeline": r["pipeline"], "rate": r["rate"], **r["slow"], "pct": 100 * r["slow"]["share"],
             "span": f"{r['slow']['first_s']:.1f}–{r['slow']['last_s']:.1f}"}
            for r in latency if (r.get("slow") or {}).get("count")]
    if not any(r.get("slow") for r in latency):  # reports written before 2026-12-08 04:40
        return []
    head = ["", "Slow outputs: latency ≥ 10 × the row's p50 and ≥ 50 ms, a stall rather than the gradual "
            "queueing of a rate near a pipeline's limit; 'sent at' is when their events were sent, in seconds "
            "since the row's first send (warm-up included). latency_over_time.png shows every row's p50 and max "
            "per half second of send time.", ""]
    if not rows:
        return head + ["No row had slow outputs."]
    return head + [_md_table(rows, [("pipeline", "pipeline", ""), ("rate ev/s", "rate", ".0f"),
                                    ("slow outputs", "count", "d"), ("% of row", "pct", ".1f"),
                                    ("bound ms", "bound_ms", ".0f"), ("sent at (s)", "span", "")])]


def _plots(res: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = []
    rates = sorted({r["rate"] for r in res["latency"]})
    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), squeeze=False)
    for ax, rate in zip(axes[0], rates):
        for r in res["latency"]:
            if r["rate"] == rate and r.get("cdf_ms"):
                ax.plot(r["cdf_ms"], [q / 100 for q in range(101)], label=r["pipeline"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylabel("fraction of outputs")
        ax.set_title(f"{rate:.0f} events/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"End-to-end latency CDF — {res['machine']['cores']} cores, {res['machine']['cpu'][:40]}")
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)
    files.append("latency_cdf.png")
    if any(r.get("hdr") for r in res["latency"]):
        _percentile_plot(res, rates, out, plt, matplotlib.ticker)
        files.append("latency_percentiles.png")
    if any(r.get("over_time") for r in res["latency"]):
        _over_time_plot(res, rates, out, plt)
        files.append("latency_over_time.png")
    if res["throughput_vs_batch"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        rows = res["throughput_vs_batch"]
        ax.plot([r["batch"] for r in rows], [r["events_per_s"] for r in rows], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("micro-batch size (events)")
        ax.set_ylabel("events/s, one worker")
        ax.set_ylim(bottom=0)  # from zero: the differences between batch sizes are not magnified
        ax.set_title("Full pipeline (two-hop) throughput vs micro-batch size")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "throughput_vs_batch.png", dpi=110)
        plt.close(fig)
        files.append("throughput_vs_batch.png")
    return files


def _over_time_plot(res: dict[str, Any], rates: list[float], out: Path, plt: Any) -> None:
    """Per rate, each row's max (solid) and p50 (dotted) latency per bin of send time: when a tail
    happened, and whether the rows run one after the other shared it."""
    fig, axes = plt.subplots(1, len(rates), figsize=(max(8.0, 5.5 * len(rates)), 4.5), squeeze=False)
    for ax, rate in zip(axes[0], rates):
        for r in res["latency"]:
            ot = r.get("over_time")
            if r["rate"] != rate or not ot or not ot["t_s"]:
                continue
            (line,) = ax.plot(ot["t_s"], np.maximum(ot["max_ms"], 1e-3), label=r["pipeline"])
            ax.plot(ot["t_s"], np.maximum(ot["p50_ms"], 1e-3), linestyle=":", color=line.get_color())
        warm = [r.get("warmup_s") for r in res["latency"] if r["rate"] == rate and r.get("warmup_s")]
        if warm:
            ax.axvline(warm[0], color="grey", linewidth=0.8)  # left of it: warm-up, not in the percentiles
        ax.set_yscale("log")
        ax.set_xlabel("send time, s since the row's first event (grey: end of warm-up)")
        ax.set_ylabel("latency ms (log): max solid, p50 dotted")
        ax.set_title(f"{rate:.0f} events/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    bin_s = next(r["over_time"]["bin_s"] for r in res["latency"] if r.get("over_time"))
    fig.suptitle(f"Latency over time, per {bin_s:g} s of send time — {res['machine']['cores']} cores, "
                 f"{res['machine']['cpu'][:40]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "latency_over_time.png", dpi=110)
    plt.close(fig)


#: percentiles of the HDR percentile-distribution plot, and their tick labels
PCT_TICKS = [(50.0, "50%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%")]


def _percentile_plot(res: dict[str, Any], rates: list[float], out: Path, plt: Any, ticker: Any) -> None:
    """HdrHistogram's percentile distribution: latency against 1 / (1 − q) on log axes, read from
    each row's histogram, so the tail (99 %, 99.9 %) gets as much room as the median."""
    from .hdr import percentiles_from_buckets

    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), squeeze=False)
    for ax, rate in zip(axes[0], rates):
        n_max = 1
        for r in res["latency"]:
            h = r.get("hdr")
            if r["rate"] != rate or not h or not h["count"]:
                continue
            n_max = max(n_max, h["count"])
            # up to the rank of the last value: 1 − 1/n (beyond it the curve would only repeat the max)
            qs = 100.0 * (1.0 - np.logspace(0, -np.log10(h["count"]), 200))
            vals = np.array(percentiles_from_buckets(h["buckets"], qs.tolist()), dtype=float) / 1e3
            ax.plot(1.0 / (1.0 - qs / 100.0), np.maximum(vals, 1e-3), label=r["pipeline"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [(q, lab) for q, lab in PCT_TICKS if 1.0 / (1.0 - q / 100.0) <= n_max]  # the ranks this panel has
        ax.set_xticks([1.0 / (1.0 - q / 100.0) for q, _ in ticks], [lab for _, lab in ticks])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(f"{rate:.0f} events/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"End-to-end latency by percentile (HDR histogram) — {res['machine']['cores']} cores, "
                 f"{res['machine']['cpu'][:40]}")
    fig.tight_layout()
    fig.savefig(out / "latency_percentiles.png", dpi=110)
    plt.close(fig)


def dumps_results(res: dict[str, Any]) -> str:
    """JSON with an indent, but every list of plain numbers on one line (HDR buckets, CDFs):
    the same data as `json.dumps(res)`, a fraction of the lines."""
    text = json.dumps(res, indent=2)
    return re.sub(r"\[\s+([-+\d.eE]+(?:,\s+[-+\d.eE]+)*)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def write_report(res: dict[str, Any], out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(dumps_results(res))
    (out / "results.md").write_text(write_markdown(res))
    return ["results.json", "results.md", *_plots(res, out)]
