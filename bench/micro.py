"""Model-step microbenchmarks: per-event cost of the streaming step by batch size, on CPU and
(when present) CUDA: the core step (state unpack → LSTM step → top-K → pack) and the full step
the profile agent runs (plus bookkeeping, tags, reasons, output records); the tensor math alone,
in torch and (the CPU path the worker takes) the compiled kernels of model/fused.py; and
brute-force top-K by catalogue size.
Warm-up first, then `perf_counter_ns`, `cuda.synchronize()` before reading the clock;
percentiles over repeats."""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from numba import njit

from model import Pending, ProfileModel, pack_state, unpack_state, validate_event
from model.lstm import gap_feature, value_feature
from model.runtime import stack_rows

__all__ = ["bench_step", "bench_step_phases", "bench_core_step", "bench_topk", "bench_ann", "bench_raw_step",
           "bench_fused_step"]


def _pcts(ns: list[float]) -> dict[str, float]:
    a = np.array(ns, np.float64) / 1e3
    return {"p50_us": float(np.percentile(a, 50)), "p90_us": float(np.percentile(a, 90)),
            "p99_us": float(np.percentile(a, 99)), "min_us": float(a.min())}


def _time_per_item(run: Callable[[], Any], *, per: int, seconds: float, warmup: int, min_repeats: int = 5,
                   cuda: bool = False) -> list[float]:
    """ns per item of `run()` (which handles `per` items), repeated for `seconds` after `warmup` calls;
    on CUDA the clock is read after a synchronize."""
    for _ in range(warmup):
        run()
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < min_repeats:
        t0 = time.perf_counter_ns()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter_ns() - t0) / per)
    return times


def _events(model: ProfileModel, batch: int, seed: int) -> list[Pending]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(batch):
        ev = validate_event({"user_id": f"u{b}", "item_id": model.item_ids[int(rng.integers(model.n_items))],
                             "type": "rate", "value": float(rng.integers(1, 6)), "ts": 890_000_000.0 + b}, now=math.inf)
        out.append(Pending(ev))
    return out


#: The phases of the full step, in the order the profile agent runs them.
STEP_PHASES = ("unpack", "LSTM step + bookkeeping (apply)", "scores, top-K, tags, reasons, records (outputs)", "pack")


def _full_step(model: ProfileModel, states: list[bytes], evs: list[Pending], k: int) -> list[int]:
    """One full step as the profile agent runs it, without Kafka, over packed `states` (replaced
    in place by the new ones). Returns the clock (ns) before and after each of `STEP_PHASES`."""
    t = [time.perf_counter_ns()]
    st = [unpack_state(b) for b in states]
    t.append(time.perf_counter_ns())
    model.apply([(s, [e]) for s, e in zip(st, evs)])
    t.append(time.perf_counter_ns())
    model.outputs([(f"u{j}", s) for j, s in enumerate(st)], k=k)
    t.append(time.perf_counter_ns())
    for j, s in enumerate(st):
        states[j] = pack_state(s)
    t.append(time.perf_counter_ns())
    return t


def bench_step(model: ProfileModel, batches: list[int], *, k: int = 10, seconds: float = 1.0) -> list[dict[str, Any]]:
    """The full per-batch streaming step as the profile agent runs it, without Kafka."""
    rows = []
    for batch in batches:
        states = [pack_state(model.initial_state()) for _ in range(batch)]
        evs = _events(model, batch, batch)
        times = _time_per_item(lambda: _full_step(model, states, evs, k), per=batch, seconds=seconds, warmup=3, cuda=model.device.type == "cuda")
        rows.append({"batch": batch, "device": model.device.type, "what": "full step (unpack→LSTM→top-K→outputs→pack)",
                     "repeats": len(times), **_pcts(times), "events_per_s": 1e9 / float(np.median(times))})
        print(f"  step   batch {batch:>5} {model.device.type}: {rows[-1]['p50_us']:9.2f} µs/event (p50)",
              file=sys.stderr)
    return rows


def bench_step_phases(model: ProfileModel, batches: list[int], *, k: int = 10,
                      repeats: int = 4000) -> list[dict[str, Any]]:
    """Where the full step's time goes: p50 µs per event of each phase of `_full_step` (state
    unpack, `apply`, `outputs`, pack), timed separately over the same iterations."""
    rows = []
    for batch in batches:
        states = [pack_state(model.initial_state()) for _ in range(batch)]
        evs = _events(model, batch, batch)
        spent: list[list[float]] = [[] for _ in STEP_PHASES]
        n = max(20, repeats // batch)
        for it in range(n + 5):  # the first 5 are warm-up
            t = _full_step(model, states, evs, k)
            if it >= 5:
                for p in range(len(STEP_PHASES)):
                    spent[p].append((t[p + 1] - t[p]) / batch / 1e3)
        p50 = [float(np.median(v)) for v in spent]
        total = sum(p50)
        for name, us in zip(STEP_PHASES, p50):
            rows.append({"batch": batch, "device": model.device.type, "phase": name, "p50_us": us,
                         "share": us / total})
        print(f"  phases batch {batch:>5}: " + ", ".join(f"{name.split('(')[-1].rstrip(')')} {us:.0f} µs" for name, us in
                                                          zip(STEP_PHASES, p50)), file=sys.stderr)
    return rows


class _Eager:
    """What `_capture` gives off CUDA: `replay()` runs `fn` again and copies its outputs into the
    first call's, as a graph replay overwrites them; so the graph code path runs (and is tested)
    on a CPU too."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.out = fn()

    def replay(self) -> None:
        for dst, src in zip(self.out, self.fn()):
            dst.copy_(src)


def _capture(fn: Callable[[], Any], dev: torch.device | None = None) -> tuple[Any, Any]:
    """A CUDA graph of `fn` (warmed up on a side stream first, as torch asks) and its outputs,
    which each replay overwrites in place; off CUDA, `_Eager(fn)`."""
    if dev is not None and dev.type != "cuda":
        e = _Eager(fn)
        return e, e.out
    s = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    return g, out


def bench_raw_step(model: ProfileModel, batches: list[int], *, seconds: float = 1.0,
                   cuda_graphs: bool = False) -> list[dict[str, Any]]:
    """Only the tensor math of one LSTM step + scores + top-K on resident tensors (the floor of the step)."""
    rows = []
    dev = model.device
    for batch in batches:
        h = torch.zeros(batch, model.hidden, device=dev)
        c = torch.zeros_like(h)
        items = torch.randint(0, model.n_items, (batch,), device=dev)
        types = torch.full((batch,), 4, device=dev)
        vals = torch.zeros(batch, device=dev)
        gaps = torch.zeros(batch, device=dev)

        def fn() -> Any:
            h2, c2 = model.step(h, c, items, types, vals, gaps)
            return torch.topk(model.scores(h2), 10, dim=1)

        run = fn
        if cuda_graphs:
            with torch.inference_mode():
                run = _capture(fn, dev)[0].replay
        with torch.inference_mode():
            times = _time_per_item(run, per=batch, seconds=seconds, warmup=10, cuda=dev.type == "cuda")
        label = f"{dev.type}{' + CUDA graph' if cuda_graphs else ''}"
        rows.append({"batch": batch, "device": label, "what": "tensor step + scores + top-K",
                     "repeats": len(times), **_pcts(times), "events_per_s": 1e9 / float(np.median(times))})
        print(f"  tensor batch {batch:>5} {label}: {rows[-1]['p50_us']:9.3f} µs/event (p50)", file=sys.stderr)
    return rows


def step_flops(model: ProfileModel) -> int:
    """Floating-point operations of one event's step as `ProfileModel.step` + `scores` compute it:
    the recurrent gate product (hidden × 4·hidden multiply-adds; the input side of the gates is a
    per-item lookup precomputed at load time), the user vector (hidden × item_dim) and the scores
    (item_dim × n_items), two operations per multiply-add. Elementwise work and top-K are not counted."""
    cfg = model.config
    return 2 * (cfg.hidden * 4 * cfg.hidden + cfg.hidden * cfg.item_dim + cfg.item_dim * cfg.n_items)


def step_weight_bytes(model: ProfileModel) -> tuple[int, int]:
    """Bytes of weights one step reads, float32: (read once per batch, read once per event). Once
    per batch: the recurrent gate matrix (hidden × 4·hidden), the user-vector matrix (hidden ×
    item_dim), the item matrix and the item biases (n_items × (item_dim + 1)). Once per event: the
    event's item row of the precomputed input side of the gates (4·hidden). Vectors of a few
    hundred entries (biases, activation constants) are left out."""
    cfg = model.config
    H, D, N = cfg.hidden, cfg.item_dim, cfg.n_items
    return 4 * (H * 4 * H + H * D + N * (D + 1)), 4 * 4 * H


@njit(fastmath={"contract", "reassoc"}, cache=True)
def _read_pass(a: np.ndarray, passes: int) -> np.float32:
    """Sum `a` `passes` times: a vectorised stream of reads, the rate at which a kernel can read
    weights of that size from whichever cache holds them."""
    s = np.float32(0.0)
    for _ in range(passes):
        for i in range(a.shape[0]):
            s += a[i]
    return s


def read_rate(nbytes: int, *, seconds: float) -> float:
    """Bytes per ns at which one core reads a float32 buffer of `nbytes` over and over (it stays
    in whichever cache level it fits; 1 thread)."""
    a = np.ones(max(nbytes // 4, 16), np.float32)
    passes = max(1, 2_000_000 // max(nbytes, 1))  # ≈ 2 MB read per call, so the call's own cost is noise
    _read_pass(a, 1)
    ns = float(np.median(_time_per_item(lambda: _read_pass(a, passes), per=passes, seconds=seconds, warmup=3)))
    return a.nbytes / ns


def bench_arith_floor(model: ProfileModel, batches: list[int], *, seconds: float = 1.0) -> list[dict[str, Any]]:
    """What the arithmetic and the weight reads alone cost per event on this CPU (1 thread, as every
    CPU row): the machine's sgemm rate on a large square product, the step's flops divided by it
    (a floor no implementation on this machine goes under); the rate at which one core reads a
    buffer the size of the step's weights, and the step's weight bytes per event divided by it
    (the read floor: at batch 1 every event streams all the weights from cache); and, per batch
    size, the step's three biggest pieces timed alone (gate product, score product, top-K). One
    row per batch size."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    flops = step_flops(model)
    shared_bytes, event_bytes = step_weight_bytes(model)
    rows = []
    with torch.inference_mode():
        peak_ns = float(np.median(_time_per_item(lambda: a @ b, per=1, seconds=seconds / 2, warmup=3, min_repeats=5)))
        gflops = 2 * 1024**3 / peak_ns
        # The same product in bfloat16 (float32 accumulation): what the step's arithmetic would cost
        # if its products ran in bf16, as CPUs with AMX or AVX512-BF16 do natively (oneDNN); where
        # the CPU has neither, torch emulates it and the rate is below float32's.
        a16, b16 = a.bfloat16(), b.bfloat16()
        bf16_ns = float(np.median(_time_per_item(lambda: a16 @ b16, per=1, seconds=seconds / 4, warmup=3,
                                                 min_repeats=5)))
        bf16_gflops = 2 * 1024**3 / bf16_ns
        bytes_per_ns = read_rate(shared_bytes, seconds=seconds / 4)
        w = torch.randn(cfg.hidden, 4 * cfg.hidden, generator=g)  # the recurrent gate weights' shape
        v = torch.randn(cfg.item_dim, cfg.n_items, generator=g)  # the item matrix's shape
        part = seconds / (2 * 3 * len(batches))
        for batch in batches:
            x = torch.randn(batch, cfg.hidden, generator=g)
            u = torch.randn(batch, cfg.item_dim, generator=g)
            scores = u @ v
            gates = float(np.median(_time_per_item(lambda: x @ w, per=batch, seconds=part, warmup=3)))
            score = float(np.median(_time_per_item(lambda: u @ v, per=batch, seconds=part, warmup=3)))
            topk = float(np.median(_time_per_item(lambda: torch.topk(scores, 10, dim=1), per=batch, seconds=part,
                                                  warmup=3)))
            weight_bytes = shared_bytes / batch + event_bytes
            rows.append({"batch": batch, "device": "cpu", "flops_per_event": flops, "sgemm_gflops": gflops,
                         "floor_us": flops / gflops / 1e3, "bf16_gemm_gflops": bf16_gflops,
                         "bf16_floor_us": flops / bf16_gflops / 1e3, "weight_bytes_per_event": weight_bytes,
                         "read_gb_per_s": bytes_per_ns, "read_floor_us": weight_bytes / bytes_per_ns / 1e3,
                         "gates_gemm_us": gates / 1e3, "scores_gemm_us": score / 1e3, "topk_us": topk / 1e3})
            r = rows[-1]
            print(f"  arithmetic floor: {flops / 1e3:.0f} kflop/event at {gflops:.0f} GFLOP/s = {r['floor_us']:.2f} "
                  f"µs/event (bf16: {bf16_gflops:.0f} GFLOP/s, {r['bf16_floor_us']:.2f} µs/event); read floor: "
                  f"{weight_bytes / 1e3:.0f} kB/event at {bytes_per_ns:.0f} GB/s = "
                  f"{r['read_floor_us']:.2f} µs/event; batch {batch}: gates {r['gates_gemm_us']:.2f}, scores "
                  f"{r['scores_gemm_us']:.2f}, top-K {r['topk_us']:.2f} µs/event", file=sys.stderr)
    return rows


def bench_fused_step(model: ProfileModel, batches: list[int], *, seconds: float = 1.0) -> list[dict[str, Any]]:
    """The tensor math through the compiled kernels (model/fused.py, the CPU path the worker takes
    for batches up to model.runtime.FUSED_MAX_BATCH) on resident arrays."""
    from model.runtime import FUSED_MAX_BATCH

    rows = []
    for batch in [b for b in batches if b <= FUSED_MAX_BATCH]:
        rng = np.random.default_rng(batch)
        h = np.zeros((batch, model.hidden), np.float32)
        c = np.zeros_like(h)
        items = rng.integers(0, model.n_items, batch)
        types = np.full(batch, 4)
        vals = np.zeros(batch, np.float32)
        gaps = np.zeros(batch, np.float32)
        no_mask = [np.zeros(0, np.int32)] * batch

        def run() -> Any:
            h2, _ = model.step_fused(h, c, items, types, vals, gaps)
            return model.scores_topk_fused(h2, no_mask, 10)

        times = _time_per_item(run, per=batch, seconds=seconds, warmup=10)
        rows.append({"batch": batch, "device": "cpu fused", "what": "tensor step + scores + top-K",
                     "repeats": len(times), **_pcts(times), "events_per_s": 1e9 / float(np.median(times))})
        print(f"  fused  batch {batch:>5} cpu: {rows[-1]['p50_us']:9.3f} µs/event (p50)", file=sys.stderr)
    return rows


#: Items in each user's recent history in the core-step bench: they are masked out of the top-K.
CORE_STEP_HISTORY = 100


def _core_state(model: ProfileModel, rng: np.random.Generator) -> bytes:
    from model.state import RECENT_DTYPE

    s = model.initial_state()
    s.h = (rng.standard_normal(model.hidden) * 0.3).astype(np.float32)
    s.c = rng.standard_normal(model.hidden).astype(np.float32)
    s.recent = np.zeros(CORE_STEP_HISTORY, RECENT_DTYPE)
    s.recent["item"] = rng.choice(model.n_items, CORE_STEP_HISTORY, replace=False)
    s.recent["ts"] = 890_000_000.0 + np.arange(CORE_STEP_HISTORY)
    s.events_seen = CORE_STEP_HISTORY
    return pack_state(s)


def bench_core_step(model: ProfileModel, batches: list[int], *, k: int = 10,
                    seconds: float = 1.0) -> list[dict[str, Any]]:
    """The step as issue #4 defines it: state unpack → LSTM step → top-K → pack, per event, on
    packed states whose CORE_STEP_HISTORY recent items are masked from the top-K. The real
    `unpack_state` / `pack_state` and the model's step and top-K (the compiled kernels on CPU
    up to FUSED_MAX_BATCH, torch beyond or on CUDA); without the product's bookkeeping, tags,
    reasons and output records, which the full step (`bench_step`) includes."""
    rows = []
    dev = model.device
    for batch in batches:
        rng = np.random.default_rng(batch)
        states = [_core_state(model, rng) for _ in range(batch)]
        items = rng.integers(0, model.n_items, batch)
        types = np.full(batch, 4)
        vals = value_feature(types, np.full(batch, 4.0))
        gaps = gap_feature(np.full(batch, 60.0))
        fused = model._use_fused(batch)
        t_args = [torch.from_numpy(a).to(dev) for a in (items, types, vals, gaps)]

        def run() -> None:
            st = [unpack_state(b) for b in states]
            H = stack_rows([s.h for s in st])  # as ProfileModel._lstm_rounds stacks them
            C = stack_rows([s.c for s in st])
            mask = [s.recent["item"] for s in st]
            if fused:
                h2, c2 = model.step_fused(H, C, items, types, vals, gaps)
                model.scores_topk_fused(h2, mask, k)
            else:
                with torch.inference_mode():
                    th, tc = model.step(torch.from_numpy(H).to(dev), torch.from_numpy(C).to(dev), *t_args)
                    model.topk(model.scores(th), mask, k)
                    h2, c2 = th.cpu().numpy(), tc.cpu().numpy()
            for j, s in enumerate(st):
                s.h, s.c = h2[j], c2[j]
            # the states stay as they were (same work every repeat); pack into fresh values
            [pack_state(s) for s in st]

        times = _time_per_item(run, per=batch, seconds=seconds, warmup=5, cuda=dev.type == "cuda")
        label = f"{dev.type} fused" if fused else dev.type
        rows.append({"batch": batch, "device": label, "what": "core step (unpack → LSTM → top-K → pack)",
                     "history": CORE_STEP_HISTORY, "repeats": len(times), **_pcts(times),
                     "events_per_s": 1e9 / float(np.median(times))})
        print(f"  core   batch {batch:>5} {label}: {rows[-1]['p50_us']:9.2f} µs/event (p50)", file=sys.stderr)
    return rows


def bench_topk(sizes: list[int], *, dim: int, batches: list[int], device: str = "cpu",
               seconds: float = 0.5) -> list[dict[str, Any]]:
    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for n in sizes:
        V = torch.randn(n, dim, generator=g).to(device)
        for batch in batches:
            u = torch.randn(batch, dim, generator=g).to(device)
            with torch.inference_mode():
                times = _time_per_item(lambda: torch.topk(u @ V.T, 10, dim=1), per=batch, seconds=seconds,
                                       warmup=3, min_repeats=3, cuda=device == "cuda")
            rows.append({"items": n, "batch": batch, "device": device, "method": "brute force (matmul + topk)",
                         **_pcts(times)})
            print(f"  top-K  {n:>8} items batch {batch:>4} {device}: {rows[-1]['p50_us']:10.1f} µs/query (p50)",
                  file=sys.stderr)
    return rows


def _catalogue(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray | None) -> np.ndarray:
    """n random item vectors: standard normal, or (centers given) a random center plus normal
    noise at a quarter of the centers' scale: a big catalogue grown from real item vectors, with
    their cluster structure."""
    if centers is None:
        return rng.standard_normal((n, dim), dtype=np.float32)
    scale = 0.25 * float(centers.std())
    grown: np.ndarray = (centers[rng.integers(len(centers), size=n)]
                         + scale * rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)
    return grown


def _exact_topk(q: np.ndarray, V: np.ndarray, k: int) -> np.ndarray:
    out = []
    for i in range(0, len(q), 32):  # 32 queries × 1M items of scores at a time
        s = q[i:i + 32] @ V.T
        out.append(np.argpartition(-s, k, axis=1)[:, :k])
    return np.concatenate(out)


def bench_ann(sizes: list[int], *, dim: int, batches: list[int], k: int = 10, nprobes: tuple[int, ...] = (4, 16, 64),
              seconds: float = 0.5, centers: np.ndarray | None = None, n_queries: int = 256) -> list[dict[str, Any]]:
    """Top-K through the stream's ANN index (`model.ann.AnnIndex`: faiss IVF-Flat, nlist = √n,
    built with all threads; zero item bias), searched on 1 thread as `AnnIndex.topk` (what the
    worker calls, masking included, with nothing to mask): µs per query next to brute force, and
    recall@10 against the exact top 10 over `n_queries` queries. Queries are drawn like the items.
    `build_s` is the build that also writes the worker's index cache, `load_s` the next start's
    load from it (in a temporary directory). Returns no rows when faiss-cpu is not installed."""
    try:
        import faiss
    except ImportError:
        print("  (faiss-cpu not installed: ANN top-K rows skipped)", file=sys.stderr)
        return []
    from model.ann import AnnIndex
    rows = []
    data = "gaussian" if centers is None else "clustered (real item vectors + noise)"
    rng = np.random.default_rng(1)
    for n in sizes:
        V = _catalogue(n, dim, rng, centers)
        Q = _catalogue(n_queries, dim, rng, centers)
        exact = _exact_topk(Q, V, k)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        with tempfile.TemporaryDirectory() as cache:
            index = AnnIndex.build(V, np.zeros(n, np.float32), cache_dir=Path(cache))
            load_s = AnnIndex.build(V, np.zeros(n, np.float32), cache_dir=Path(cache)).build_seconds
        faiss.omp_set_num_threads(1)
        no_mask = [np.zeros(0, np.int64)] * n_queries
        for nprobe in nprobes:
            index.set_nprobe(nprobe)
            found, _ = index.topk(Q, no_mask, k)
            recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(found, exact)]))
            for batch in batches:
                q, mask = Q[:batch], no_mask[:batch]
                times = _time_per_item(lambda: index.topk(q, mask, k), per=batch, seconds=seconds, warmup=3,
                                       min_repeats=3)
                rows.append({"items": n, "batch": batch, "device": "cpu", "data": data,
                             "method": f"faiss IVF{index.nlist},Flat nprobe {index.nprobe}", "recall_at_10": recall,
                             "build_s": index.build_seconds, "load_s": load_s, **_pcts(times)})
                print(f"  ANN    {n:>8} items batch {batch:>4} {data[:9]} nprobe {nprobe:>3}: "
                      f"{rows[-1]['p50_us']:10.1f} µs/query (p50), recall@10 {recall:.3f}", file=sys.stderr)
    return rows


def run_micro(artifact: Path, *, smoke: bool) -> dict[str, Any]:
    batches = [1, 8, 64] if smoke else [1, 8, 64, 512, 4096]
    secs = 0.2 if smoke else 1.0
    out: dict[str, Any] = {"step": [], "core_step": [], "tensor_step": [], "topk": [], "gpu": None}
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")  # numpy's BLAS too (tags, reasons)
    cpu = ProfileModel.load(artifact, device="cpu")
    print("model-step microbenchmarks (CPU, 1 torch thread):", file=sys.stderr)
    out["step"] += bench_step(cpu, batches, seconds=secs)
    out["core_step"] += bench_core_step(cpu, batches, seconds=secs)
    out["step_phases"] = bench_step_phases(cpu, [1, 64] if smoke else [1, 64, 512], repeats=400 if smoke else 4000)
    out["tensor_step"] += bench_raw_step(cpu, batches, seconds=secs)
    out["tensor_step"] += bench_fused_step(cpu, batches, seconds=secs)
    out["arith_floor"] = bench_arith_floor(cpu, [1, 512], seconds=secs)
    sizes = [cpu.n_items, 100_000] if smoke else [cpu.n_items, 100_000, 1_000_000]
    out["topk"] += bench_topk(sizes, dim=cpu.config.item_dim, batches=[1, 64], seconds=secs / 2)
    big = [n for n in sizes if n >= 100_000]
    item_vectors = cpu.item_vecs.detach().cpu().numpy().astype(np.float32)
    out["ann"] = bench_ann(big, dim=cpu.config.item_dim, batches=[1, 64], seconds=secs / 2,
                           nprobes=(16,) if smoke else (4, 16, 64))
    if not smoke:
        out["ann"] += bench_ann(big, dim=cpu.config.item_dim, batches=[1, 64], seconds=secs / 2, centers=item_vectors)
    run_gpu_micro(artifact, out, batches=batches, sizes=sizes, secs=secs, smoke=smoke)
    return out


def run_gpu_micro(artifact: Path, out: dict[str, Any], *, batches: list[int], sizes: list[int], secs: float,
                  smoke: bool) -> None:
    """The CUDA rows, added to `out` in place. A failure on the GPU (driver, out of memory, a
    CUDA-graph capture error) must not throw away the CPU rows measured before it: it is recorded
    as `gpu_error` (the rows measured before it stay), printed with its traceback, and
    `profilestream bench run` exits non-zero after writing the report."""
    if not torch.cuda.is_available():
        out["gpu_note"] = "CUDA not available on this machine: the GPU rows were not measured"
        print("  (no CUDA device: GPU microbenchmarks skipped)", file=sys.stderr)
        return
    try:
        gpu = ProfileModel.load(artifact, device="cuda")
        out["gpu"] = torch.cuda.get_device_name(0)
        print("GPU:", out["gpu"], file=sys.stderr)
        out["step"] += bench_step(gpu, batches, seconds=secs)
        out["core_step"] += bench_core_step(gpu, batches, seconds=secs)
        out["tensor_step"] += bench_raw_step(gpu, batches + ([65536] if not smoke else []), seconds=secs)
        out["tensor_step"] += bench_raw_step(gpu, [1, 512], seconds=secs, cuda_graphs=True)
        out["topk"] += bench_topk(sizes, dim=gpu.config.item_dim, batches=[1, 64], device="cuda", seconds=secs / 2)
    except Exception as exc:  # noqa: BLE001 - reported in the results and by the exit status
        import traceback

        traceback.print_exc(file=sys.stderr)
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        out["gpu_error"] = f"{type(exc).__name__}: {first_line}"
        out["gpu_note"] = f"the GPU microbenchmarks failed ({out['gpu_error']}); GPU rows before the failure are kept"
        print(f"  GPU microbenchmarks FAILED: {out['gpu_error']}", file=sys.stderr)
