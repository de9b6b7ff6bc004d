"""The model step on a GPU: `profilestream bench gpu`, or `python -m bench.gpu` where only torch,
numpy and this repository are installed (a GPU machine without Kafka or Faust).

What it measures, per event, on the CUDA device (the same code runs on the CPU with `--device cpu`,
so the report can be checked on a machine without one):

- parity: the trained model's step, scores and top-10 on the device against the CPU, on the same
  states (max abs difference of h and c, share of identical top-10 lists);
- tensor step: one LSTM step + scores + top-K over the catalogue on resident tensors, by batch,
  without and with a CUDA graph (the graph replays the whole step as one launch), with the
  two-stage top-K (`topk_chunked`) at three chunk sizes, and with TF32 matrix products (with the
  share of top-10 lists equal to the float32 ones);
- breakdown: the LSTM step, the scores and the top-K timed alone (where the time goes);
- core step: state unpack → LSTM step → top-K with each user's recent items masked → pack, by
  batch, as `bench.micro.bench_core_step` (torch calls, host ↔ device copies) and with the tensor
  part as one CUDA graph between pinned-memory copies;
- full step: the profile agent's step without Kafka (`bench.micro.bench_step`), by batch;
- top-K alone over catalogues of 1.7k, 100k and 1M random items.

Writes OUT/gpu.json, OUT/gpu.md and OUT/gpu_step_vs_batch.png; gpu.json is rewritten after every
section, so a run stopped part-way keeps what it measured. A section that fails is recorded in
`errors` with its message and the run goes on with the next one (exit status 1 at the end)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from model import ProfileModel, pack_state, unpack_state
from model.lstm import gap_feature, value_feature

from .machine import machine_facts
from .micro import (CORE_STEP_HISTORY, _capture, _core_state, _pcts, _time_per_item, bench_core_step, bench_step,
                    bench_topk)

__all__ = ["main", "run_gpu_bench", "graph_core_step", "tensor_step", "parity", "breakdown", "topk_chunked"]

#: Issue #4's GPU targets: batched events/s and the single-event step with CUDA graphs.
TARGET_BATCHED_EVENTS_PER_S = 50e6
TARGET_SINGLE_STEP_US = 50.0
#: Chunk sizes of the two-stage top-K (`topk_chunked`) measured beside torch.topk.
CHUNKS = (13, 29, 58)


def _row(what: str, batch: int, device: str, times: list[float], **extra: Any) -> dict[str, Any]:
    return {"what": what, "batch": batch, "device": device, "repeats": len(times), **_pcts(times),
            "events_per_s": 1e9 / float(np.median(times)), **extra}


def _say(r: dict[str, Any]) -> None:
    print(f"  {r['what'][:22]:<22} batch {r['batch']:>8} {r['device']:<26} {r['p50_us']:11.3f} µs/event (p50)  "
          f"{r['events_per_s']:14,.0f} events/s", file=sys.stderr)


def _inputs(model: ProfileModel, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    dev = model.device
    h = (torch.randn(batch, model.hidden, generator=g) * 0.3).to(dev)
    c = torch.randn(batch, model.hidden, generator=g).to(dev)
    items = torch.randint(0, model.n_items, (batch,), generator=g).to(dev)
    types = torch.full((batch,), 4, dtype=torch.int64).to(dev)
    vals = torch.from_numpy(value_feature(np.full(batch, 4), np.full(batch, 4.0))).to(dev)
    gaps = torch.from_numpy(gap_feature(np.full(batch, 60.0))).to(dev)
    return h, c, items, types, vals, gaps


def topk_chunked(scores: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(scores, k, dim=1)` (values, indices; best first) in two stages: the row is cut
    into chunks of `chunk` items (the last one padded with -inf), the k chunks with the highest
    maxima are kept, and the top k of their k·chunk items is taken. Exact: an item of the top k
    lies in a chunk whose maximum is at least that item, and fewer than k other chunks can hold
    a larger one (equal scores may come in another order than torch.topk's). Measured beside
    torch.topk: on the H200 it is 10–15 % faster at batches ≥ 65,536, about equal at 4,096 and
    slower below (docs/bench/gpu-2026-12-04-h200-c), so the model's own top-K stays torch.topk."""
    B, N = scores.shape
    k = min(k, N)
    n_chunks = -(-N // chunk)
    if n_chunks <= k:
        return torch.topk(scores, k, dim=1)
    pad = n_chunks * chunk - N
    s = torch.nn.functional.pad(scores, (0, pad), value=-math.inf) if pad else scores
    s3 = s.view(B, n_chunks, chunk)
    best_chunks = torch.topk(s3.amax(dim=2), k, dim=1).indices  # (B, k)
    cand = torch.gather(s3, 1, best_chunks[:, :, None].expand(B, k, chunk)).reshape(B, k * chunk)
    vals, j = torch.topk(cand, k, dim=1)
    return vals, best_chunks.gather(1, torch.div(j, chunk, rounding_mode="floor")) * chunk + j % chunk


def tensor_step(model: ProfileModel, batches: list[int], *, k: int = 10, seconds: float = 0.5,
                graphs: bool = False, tf32: bool = False, chunk: int = 0) -> list[dict[str, Any]]:
    """LSTM step + scores + top-K on resident tensors, µs per event by batch; the top-K by
    torch.topk or (`chunk` > 0) by `topk_chunked` with chunks of that many items.
    With `tf32`, the matrix products use TF32 and each row says which share of its top-K lists
    equal float32's."""
    rows = []
    dev = model.device
    label = dev.type + (f" chunked top-K ({chunk})" if chunk else "") + (" + CUDA graph" if graphs else "") + \
        (" + TF32" if tf32 else "")
    for batch in batches:
        args = _inputs(model, batch, batch)

        def fn() -> Any:
            h2, c2 = model.step(*args)
            if chunk:
                return topk_chunked(model.scores(h2), k, chunk)
            return torch.topk(model.scores(h2), k, dim=1)

        extra: dict[str, Any] = {}
        old = torch.backends.cuda.matmul.allow_tf32
        try:
            with torch.inference_mode():
                if tf32:
                    torch.backends.cuda.matmul.allow_tf32 = False
                    exact = fn()[1].cpu()
                    torch.backends.cuda.matmul.allow_tf32 = True
                    extra["topk_equal_to_fp32"] = float((fn()[1].cpu() == exact).all(dim=1).float().mean())
                run = fn
                if graphs:
                    g, _ = _capture(fn, dev)
                    run = g.replay
                times = _time_per_item(run, per=batch, seconds=seconds, warmup=10, cuda=dev.type == "cuda")
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
        if chunk:  # the same top-K as torch.topk's on these inputs (ties aside)
            with torch.inference_mode():
                h2, _ = model.step(*args)
                ref = torch.topk(model.scores(h2), k, dim=1).indices
                extra["topk_equal_to_torch"] = float((fn()[1] == ref).all(dim=1).float().mean())
        rows.append(_row("tensor step + top-K", batch, label, times, **extra))
        _say(rows[-1])
    return rows


def graph_core_step(model: ProfileModel, batches: list[int], *, k: int = 10, seconds: float = 0.5,
                    chunk: int = 0) -> list[dict[str, Any]]:
    """The core step (unpack → LSTM step → top-K, recent items masked → pack) with the tensor part
    captured once as a CUDA graph: per call the states are unpacked into pinned host buffers,
    copied to static device tensors, the graph is replayed, h, c and the top-K indices are copied
    back, and the states are packed. Each user's recent items (CORE_STEP_HISTORY of them; a
    shorter history would be padded by repeating an entry) are masked with one scatter. Off CUDA
    the same code runs with `_Eager` in place of the graph and unpinned buffers (label "… eager")."""
    dev = model.device
    cuda = dev.type == "cuda"
    label = ("cuda" if cuda else dev.type) + (f" chunked top-K ({chunk})" if chunk else "") + \
        (" + CUDA graph" if cuda else " (graph path, eager)")

    def pin(t: torch.Tensor) -> torch.Tensor:
        return t.pin_memory() if cuda else t
    rows = []
    H, L = model.hidden, CORE_STEP_HISTORY
    for batch in batches:
        rng = np.random.default_rng(batch)
        states = [_core_state(model, rng) for _ in range(batch)]
        items = rng.integers(0, model.n_items, batch)
        types = np.full(batch, 4)
        s_items = torch.from_numpy(items).to(dev)
        s_types = torch.from_numpy(types).to(dev)
        s_vals = torch.from_numpy(value_feature(types, np.full(batch, 4.0))).to(dev)
        s_gaps = torch.from_numpy(gap_feature(np.full(batch, 60.0))).to(dev)
        s_hc = torch.zeros(batch, 2 * H, device=dev)
        s_mask = torch.zeros(batch, L, dtype=torch.int64, device=dev)
        p_hc = pin(torch.empty(batch, 2 * H))
        p_mask = pin(torch.empty(batch, L, dtype=torch.int64))
        p_out_hc = pin(torch.empty(batch, 2 * H))
        p_out_idx = pin(torch.empty(batch, k, dtype=torch.int64))
        n_hc, n_mask, n_out_hc, n_out_idx = p_hc.numpy(), p_mask.numpy(), p_out_hc.numpy(), p_out_idx.numpy()

        def fn() -> tuple[torch.Tensor, torch.Tensor]:
            h2, c2 = model.step(s_hc[:, :H], s_hc[:, H:], s_items, s_types, s_vals, s_gaps)
            sc = model.scores(h2)
            sc.scatter_(1, s_mask, -math.inf)
            top = topk_chunked(sc, k, chunk) if chunk else torch.topk(sc, k, dim=1)
            return torch.cat([h2, c2], dim=1), top[1]

        with torch.inference_mode():
            g, (o_hc, o_idx) = _capture(fn, dev)

            def run() -> None:
                st = [unpack_state(b) for b in states]
                for j, s in enumerate(st):
                    n_hc[j, :H], n_hc[j, H:] = s.h, s.c
                    r = s.recent["item"]
                    n_mask[j] = r[np.arange(L) % len(r)] if len(r) else 0
                s_hc.copy_(p_hc, non_blocking=True)
                s_mask.copy_(p_mask, non_blocking=True)
                g.replay()
                p_out_hc.copy_(o_hc, non_blocking=True)
                p_out_idx.copy_(o_idx, non_blocking=True)
                if cuda:
                    torch.cuda.current_stream().synchronize()
                for j, s in enumerate(st):
                    s.h, s.c = n_out_hc[j, :H].copy(), n_out_hc[j, H:].copy()
                [pack_state(s) for s in st]  # fresh values; the inputs stay as they were

            times = _time_per_item(run, per=batch, seconds=seconds, warmup=5, cuda=cuda)
            # the graph's top-K must be the model's own (same states, same masks)
            st = [unpack_state(b) for b in states]
            ref_h, _ = model.step(torch.from_numpy(np.stack([s.h for s in st])).to(dev),
                                  torch.from_numpy(np.stack([s.c for s in st])).to(dev),
                                  s_items, s_types, s_vals, s_gaps)
            ref_idx, _ = model.topk(model.scores(ref_h), [s.recent["item"] for s in st], k)
            run()
            same = float((np.sort(n_out_idx, axis=1) == np.sort(ref_idx, axis=1)).all(axis=1).mean())
        rows.append(_row("core step (graph)", batch, label, times, history=L,
                         topk_equal_to_model=same))
        _say(rows[-1])
    return rows


def parity(model: ProfileModel, cpu: ProfileModel, *, batch: int = 512, k: int = 10) -> dict[str, Any]:
    """The device's step, scores and top-K against the CPU model's on the same inputs."""
    args = _inputs(model, batch, 7)
    with torch.inference_mode():
        h_d, c_d = model.step(*args)
        top_d = torch.topk(model.scores(h_d), k, dim=1).indices.cpu()
        cargs = [a.cpu() for a in args]
        h_c, c_c = cpu.step(*cargs)
        top_c = torch.topk(cpu.scores(h_c), k, dim=1).indices
    return {"kernel": "torch", "batch": batch, "max_abs_diff_h": float((h_d.cpu() - h_c).abs().max()),
            "max_abs_diff_c": float((c_d.cpu() - c_c).abs().max()),
            "topk_equal": float((top_d == top_c).all(dim=1).float().mean())}


def _bind_chunked(sc: Any, k: int, chunk: int) -> Callable[[], Any]:
    """`topk_chunked(sc, k, chunk)` as a call of no arguments, for `_time_per_item`."""
    return lambda: topk_chunked(sc, k, chunk)


def breakdown(model: ProfileModel, batches: list[int], *, k: int = 10, seconds: float = 0.5,
              chunks: tuple[int, ...] = CHUNKS) -> list[dict[str, Any]]:
    """Where the tensor step's time goes: each piece timed alone on resident tensors (the LSTM
    step, the scores, torch.topk of the scores and the two-stage top-K at each chunk size)."""
    rows = []
    dev = model.device
    for batch in batches:
        args = _inputs(model, batch, batch)
        with torch.inference_mode():
            h2, _ = model.step(*args)
            sc = model.scores(h2)
            pieces: list[tuple[str, Callable[[], Any]]] = [
                ("LSTM step", lambda: model.step(*args)),
                ("scores (user vectors · items + bias)", lambda: model.scores(h2)),
                ("torch.topk of the scores", lambda: torch.topk(sc, k, dim=1)),
            ] + [(f"topk_chunked of the scores ({c})", _bind_chunked(sc, k, c)) for c in chunks]
            for name, fn in pieces:
                times = _time_per_item(fn, per=batch, seconds=seconds / 2, warmup=5, cuda=dev.type == "cuda")
                rows.append(_row(name, batch, dev.type, times))
                _say(rows[-1])
    return rows


def _best(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    cand = [r for r in rows if pred(r)]
    return max(cand, key=lambda r: r["events_per_s"]) if cand else None


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Issue #4's GPU targets beside the best measured numbers (None where not measured)."""
    fp32 = _best(res["tensor_step"], lambda r: "TF32" not in r["device"])
    single = [r for r in res["tensor_step"] if r["batch"] == 1 and "graph" in r["device"]]
    core1 = [r for r in res["graph_core_step"] if r["batch"] == 1]
    s1 = min(single, key=lambda r: r["p50_us"]) if single else None
    c1 = min(core1, key=lambda r: r["p50_us"]) if core1 else None
    return {
        "batched_events_per_s": fp32["events_per_s"] if fp32 else None,
        "batched_at_batch": fp32["batch"] if fp32 else None,
        "batched_how": fp32["device"] if fp32 else None,
        "batched_target": TARGET_BATCHED_EVENTS_PER_S,
        "single_step_graph_us": s1["p50_us"] if s1 else None,
        "single_step_graph_how": s1["device"] if s1 else None,
        "single_core_step_graph_us": c1["p50_us"] if c1 else None,
        "single_core_step_graph_how": c1["device"] if c1 else None,
        "single_target_us": TARGET_SINGLE_STEP_US,
    }


def write_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"# GPU model-step microbenchmarks ({res['device']})", "",
             f"Machine: {m['gpu'] or 'no GPU'}, {m['cpu']}, {m['cores']} cores; torch {m['libraries']['torch']}, "
             f"Python {m['python']}. Command: `{res['command']}`. Catalogue {res['n_items']} items, "
             f"hidden {res['hidden']}, K = 10. µs per event, p50 / p99 over repeats; events/s from the p50.", ""]
    for p in res.get("parity") or []:
        lines += [f"Parity of the {p['kernel']} path with the CPU's torch path (batch {p['batch']}): max |Δh| "
                  f"{p['max_abs_diff_h']:.1e}, max |Δc| {p['max_abs_diff_c']:.1e}, identical top-10 lists "
                  f"{p['topk_equal']:.1%}.", ""]
    lines += ["| what | device | batch | p50 µs/event | p99 µs/event | events/s |", "|---|---|---:|---:|---:|---:|"]
    for key in ("tensor_step", "graph_core_step", "core_step", "step"):
        for r in res[key]:
            note = ""
            if "topk_equal_to_fp32" in r:
                note = f" (top-10 = fp32's: {r['topk_equal_to_fp32']:.1%})"
            if "topk_equal_to_torch" in r:
                note = f" (top-10 = torch.topk's: {r['topk_equal_to_torch']:.1%})"
            lines.append(f"| {r['what']}{note} | {r['device']} | {r['batch']:,} | {r['p50_us']:.3f} | "
                         f"{r['p99_us']:.3f} | {r['events_per_s']:,.0f} |")
    if res["breakdown"]:
        lines += ["", "Where the tensor step's time goes (each piece alone, resident tensors):", "",
                  "| piece | batch | p50 µs/event | events/s |", "|---|---:|---:|---:|"]
        lines += [f"| {r['what']} | {r['batch']:,} | {r['p50_us']:.4f} | {r['events_per_s']:,.0f} |"
                  for r in res["breakdown"]]
    if res["topk"]:
        lines += ["", "| top-K alone: items | batch | device | p50 µs/query |", "|---:|---:|---|---:|"]
        lines += [f"| {r['items']:,} | {r['batch']} | {r['device']} | {r['p50_us']:.2f} |" for r in res["topk"]]
    s = res["summary"]

    def fmt(v: Any, f: str) -> str:
        return "not measured" if v is None else format(v, f)

    lines += ["", "| target (issue #4) | measured |", "|---|---|",
              f"| ≥ 50 M events/s batched step | {fmt(s['batched_events_per_s'], ',.0f')} events/s "
              f"(batch {s['batched_at_batch']}, {s['batched_how']}) |",
              f"| ≤ 50 µs single-event step (CUDA graph) | tensor step {fmt(s['single_step_graph_us'], '.1f')} µs "
              f"({s['single_step_graph_how']}); core step with copies and 100 masked items "
              f"{fmt(s['single_core_step_graph_us'], '.1f')} µs ({s['single_core_step_graph_how']}) |"]
    for e in res["errors"]:
        lines += ["", f"**Section {e['section']} failed:** {e['error']}"]
    if res.get("note"):
        lines += ["", f"_{res['note']}_"]
    return "\n".join(lines) + "\n"


def _plot(res: dict[str, Any], out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(12, 5.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for key in ("tensor_step", "graph_core_step", "core_step", "step"):
        for r in res[key]:
            series.setdefault(f"{r['what']}, {r['device']}", []).append((r["batch"], r["p50_us"]))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.axhline(1e6 / TARGET_BATCHED_EVENTS_PER_S, color="grey", ls="--", lw=1, label="50 M events/s target")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (events per step)")
    ax.set_ylabel("µs per event (p50)")
    ax.set_title(f"Model step per event by batch — {res['machine']['gpu'] or res['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes, off the data
    fig.tight_layout()
    path = out / "gpu_step_vs_batch.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def run_gpu_bench(artifact: Path, out: Path, *, device: str = "cuda", quick: bool = False, seconds: float = 0.5,
                  command: str = "") -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cpu = ProfileModel.load(artifact, device="cpu", fused_kernels=False)
    model = cpu if device == "cpu" else ProfileModel.load(artifact, device=device)
    res: dict[str, Any] = {"device": device, "command": command, "n_items": model.n_items, "hidden": model.hidden,
                           "machine": machine_facts(), "parity": None, "tensor_step": [], "graph_core_step": [],
                           "core_step": [], "step": [], "topk": [], "breakdown": [], "errors": [], "summary": {}}
    if device == "cpu":
        res["note"] = ("run with --device cpu: no CUDA graph was captured (the tensor-step graph and TF32 rows need "
                       "a CUDA device); the core step's graph code path ran eagerly")
    if quick:
        small, big, cores, sizes = [1, 64], [1, 64], [1, 8], [model.n_items]
    else:
        small = [1, 8, 64, 512, 4096]
        big = small + [65536, 262144, 1048576]
        cores, sizes = small, [model.n_items, 100_000, 1_000_000]
    cuda = device == "cuda"
    graph_big = [b for b in big if b != 262144]
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("parity", lambda: [parity(model, cpu)] if cuda else []),
        ("tensor_step", lambda: tensor_step(model, big, seconds=seconds)),
        ("tensor_step", lambda: tensor_step(model, graph_big, seconds=seconds, graphs=True) if cuda else []),
        ("tensor_step", lambda: [r for c in CHUNKS for r in tensor_step(model, graph_big if cuda else big,
                                                                         seconds=seconds, graphs=cuda, chunk=c)]),
        ("tensor_step", lambda: tensor_step(model, [4096, 65536, 1048576], seconds=seconds, graphs=True, tf32=True)
         if cuda and not quick else []),
        ("breakdown", lambda: breakdown(model, [1, 4096] if quick else [1, 4096, 1048576], seconds=seconds)),
        ("graph_core_step", lambda: graph_core_step(model, cores, seconds=seconds)),
        ("graph_core_step", lambda: graph_core_step(model, cores, seconds=seconds, chunk=CHUNKS[1])),
        ("core_step", lambda: bench_core_step(model, cores, seconds=seconds)),
        ("step", lambda: bench_step(model, [b for b in cores if b <= 4096], seconds=seconds)),
        ("topk", lambda: bench_topk(sizes, dim=model.config.item_dim, batches=[1, 64] if quick else [1, 64, 1024],
                                    device=device, seconds=seconds / 2)),
    ]
    for name, fn in sections:
        print(f"{name} ({time.monotonic() - t0:.0f} s):", file=sys.stderr)
        try:
            got = fn()
            if name == "parity":
                res["parity"] = got
                if got:
                    for p in got:
                        print(f"  {p}", file=sys.stderr)
            else:
                for r in got:  # the top-K rows of bench_topk have no "what"
                    r.setdefault("what", "top-K")
                res[name] += got
        except Exception as exc:  # noqa: BLE001 - recorded in the report; the next section still runs
            traceback.print_exc(file=sys.stderr)
            res["errors"].append({"section": name, "error": f"{type(exc).__name__}: "
                                                           f"{(str(exc).strip().splitlines() or [''])[0][:300]}"})
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
        res["summary"] = summarize(res)
        res["seconds"] = round(time.monotonic() - t0, 1)
        (out / "gpu.json").write_text(json.dumps(res, indent=1))
    (out / "gpu.md").write_text(write_markdown(res))
    png = _plot(res, out)
    print(f"wrote {out / 'gpu.json'}, {out / 'gpu.md'}" + (f", {out / png}" if png else "") +
          f" in {res['seconds']} s", file=sys.stderr)
    return res


def default_artifact() -> Path:
    """PROFILESTREAM_ARTIFACT, else PROFILESTREAM_STATE_DIR/model, else .profilestream/model (the
    same defaults as `profilestream settings`, read without importing the stream package)."""
    if os.environ.get("PROFILESTREAM_ARTIFACT"):
        return Path(os.environ["PROFILESTREAM_ARTIFACT"])
    return Path(os.environ.get("PROFILESTREAM_STATE_DIR", ".profilestream")) / "model"


def run_cli(args: argparse.Namespace, artifact: Path, command: str) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available on this machine (torch.cuda.is_available() is False), so there is "
              "nothing to measure on a GPU. Run it where `nvidia-smi` shows a GPU and torch is a CUDA build, or "
              "pass --device cpu to check the report here.", file=sys.stderr)
        return 2
    if not (artifact / "manifest.json").is_file():
        print(f"error: no trained model at {artifact} — run `profilestream train` or pass --artifact DIR",
              file=sys.stderr)
        return 2
    res = run_gpu_bench(artifact, args.out, device=args.device, quick=args.quick, seconds=args.seconds,
                        command=command)
    for e in res["errors"]:
        print(f"error: section {e['section']} failed: {e['error']} (the report keeps the other sections)",
              file=sys.stderr)
    return 1 if res["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    from .cli import GPU_DESCRIPTION, add_gpu_arguments

    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=GPU_DESCRIPTION)
    add_gpu_arguments(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    return run_cli(args, args.artifact or default_artifact(), " ".join(["python -m bench.gpu", *argv]))


if __name__ == "__main__":
    sys.exit(main())
