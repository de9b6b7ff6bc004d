"""The runtime model: what the stream workers load and what offline code uses to predict
exactly what the stream would emit.

`ProfileModel.apply` is the one code path that turns events into new user states; the
profile agent calls it on micro-batches, `ProfileModel.profile/recommend` call it on one
user's history. The LSTM step is nn.LSTM's gate equations on the same weights:

    gates = W_ih x + b_ih + W_hh h + b_hh = P_item[item] + P_type[type] + w_v v + w_g g + b + W_hh h
    i, f, g, o = split(gates);  c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c')

where P_item = V W_ih[:, :D]^T is precomputed per item (the input projection is linear, so
this is the same sum reordered; it saves a (B, In) x (In, 4H) matmul per step).

On CPU, batches of up to FUSED_MAX_BATCH users run the same equations through compiled loops
(model/fused.py, numba): at batch 1 torch's per-operation dispatch (several µs per op, ~15 ops
per step) costs ten times the math; from FUSED_BLAS_MIN_BATCH users the kernels take the two big
products (recurrent gates, scores) from one BLAS call each. All paths use the same float32
weights; they agree to float32 rounding (tests/unit/test_runtime.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, cast

import numpy as np
import torch

from . import fused
from .ann import DEFAULT_ANN_NPROBE, AnnIndex
from .artifact import Artifact, load_artifact
from .events import Event, validate_event
from .lstm import TYPE_INDEX, ProfileLSTM, gap_feature, value_feature
from .state import MARK_DTYPE, RECENT_DTYPE, UserState, event_id_hash

__all__ = ["ProfileModel", "Pending", "Applied", "TYPE_TAG_WEIGHT"]

#: How much one event of each type moves the user's category affinities (`tags`).
TYPE_TAG_WEIGHT: Mapping[str, float] = {
    "view": 0.5, "click": 1.0, "cart": 2.0, "purchase": 3.0, "rate": 1.0, "skip": -0.5,
}
#: How many of the user's latest items a recommendation's reason is looked for among.
REASON_WINDOW = 20
#: Event ids remembered per user for de-duplication.
EVENT_ID_WINDOW = 256
#: On CPU, steps and scoring of at most this many users at once run through the compiled
#: kernels of model/fused.py instead of torch: on one thread they are faster at every batch size
#: up to 1,024 (bench/README.md, "The core step"); beyond it torch can use several threads.
FUSED_MAX_BATCH = 1024
#: From this many users on, the kernels take the step's two big products (recurrent gates,
#: scores) from one BLAS call each (torch, on its threads), which reads each weight matrix once
#: for the whole batch; below it the per-row loops, whose cost has no per-call overhead, are
#: faster (bench/README.md, "Vectorised activations, a block-skipping top-K and BLAS products").
#: 0 = never.
FUSED_BLAS_MIN_BATCH = 32


@dataclass(frozen=True, slots=True)
class Pending:
    """An event waiting to be applied, with its source position when it came from Kafka, and in
    two-hop mode its position in the raw topic (`raw_partition` -1: unknown)."""

    event: Event
    partition: int = -1
    offset: int = -1
    raw_partition: int = -1
    raw_offset: int = -1


@dataclass
class Applied:
    """What `apply` did for one user."""

    state: UserState
    applied: int = 0
    duplicates: int = 0
    rejected: list[tuple[Pending, str]] = field(default_factory=list)
    last_event_ts: float | None = None


@dataclass(frozen=True)
class _FusedWeights:
    """The runtime weights as float32 numpy arrays laid out for the compiled CPU kernels
    (model/fused.py).

    The gate weights are pre-scaled so that one tanh gives all four activations: σ(x) =
    (tanh(x/2) + 1)/2, so the i, f, o entries are halved (exact in floating point) and
    act = tanh(gates) * act_mul + act_add."""

    p_item: np.ndarray  # (N, 4H)
    p_type: np.ndarray  # (n_types, 4H)
    w_val: np.ndarray  # (4H,)
    w_gap: np.ndarray  # (4H,)
    b: np.ndarray  # (4H,)
    W_hh_T: np.ndarray  # (H, 4H): the recurrent weights transposed, row k is h[k]'s weight in every gate
    act_mul: np.ndarray  # (4H,) 0.5 for i, f, o; 1 for g
    act_add: np.ndarray  # (4H,) 0.5 for i, f, o; 0 for g
    W_out: np.ndarray  # (D, H)
    b_out: np.ndarray  # (D,)
    item_vecs: np.ndarray  # (N, D)
    item_bias: np.ndarray  # (N,)
    W_hh_T_t: torch.Tensor = field(init=False, repr=False)
    W_out_t: torch.Tensor = field(init=False, repr=False)
    b_out_t: torch.Tensor = field(init=False, repr=False)
    item_vecs_t: torch.Tensor = field(init=False, repr=False)
    item_bias_t: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # torch views of the same memory, for the BLAS products of bigger batches
        for name in ("W_hh_T", "W_out", "b_out", "item_vecs", "item_bias"):
            object.__setattr__(self, f"{name}_t", torch.from_numpy(getattr(self, name)))

    @classmethod
    def of(cls, m: "ProfileModel") -> "_FusedWeights":
        def a(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), np.float32)

        H = m.hidden
        half = np.full(4 * H, 0.5, np.float32)
        half[2 * H:3 * H] = 1.0  # the cell candidate g is a plain tanh
        add = np.where(half == 0.5, 0.5, 0.0).astype(np.float32)
        return cls(a(m.p_item * torch.from_numpy(half)), a(m.p_type * torch.from_numpy(half)),
                   a(m.w_val) * half, a(m.w_gap) * half, a(m.b) * half, a(m.W_hh_T) * half,
                   half, add, a(m.W_out_T.T), a(m.b_out), a(m.item_vecs), a(m.item_bias))


def _rate_weight(value: float) -> float:
    # A 1-star rating pushes a genre down, a 5-star one up; unrated 'rate' counts as neutral-positive.
    return 1.0 if math.isnan(value) else (value - 2.5) / 2.5


def stack_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-length vectors as one (len(rows), H) float32 array. A single float32 contiguous row
    comes back as a (1, H) view of itself, with no copy (the batch-1 path, once per event:
    bench/README.md, "The batch-1 core step, piece by piece"); more rows are copied by np.array, a third of
    np.stack's cost (≈ 0.2 against 0.6 µs a row)."""
    if len(rows) == 1:
        r = rows[0]
        if r.dtype == np.float32 and r.flags.c_contiguous:
            return r.reshape(1, -1)
    return np.array(rows, np.float32)


class ProfileModel:
    """Loaded model artifact + the batched streaming step. Use `ProfileModel.load(path)`."""

    def __init__(self, artifact: Artifact, *, device: str | torch.device = "cpu", fused_kernels: bool = True) -> None:
        self.artifact = artifact
        self.config = artifact.config
        self.device = torch.device(device)
        cfg = self.config
        w = artifact.weights
        text = w.get("text") if cfg.use_text else None
        net = ProfileLSTM(cfg, text)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in w.items()}, strict=True)
        net.eval()
        self.net = net.to(self.device)
        D, T, H = cfg.item_dim, cfg.type_dim, cfg.hidden
        with torch.inference_mode():
            V = net.item_vectors()  # (N, D)
            lstm = cast(Any, net.lstm)  # nn.LSTM's weights are attributes its stubs do not declare
            W_ih: torch.Tensor = lstm.weight_ih_l0  # (4H, D+T+2)
            self.item_vecs = V.contiguous()
            self.item_bias = net.bias.detach().clone()  # (N,)
            self.p_item = (net.input_vectors(V) @ W_ih[:, :D].T).contiguous()  # (N, 4H)
            self.p_type = (net.type_emb.weight @ W_ih[:, D:D + T].T).contiguous()  # (n_types, 4H)
            self.w_val = W_ih[:, D + T].clone()  # (4H,)
            self.w_gap = W_ih[:, D + T + 1].clone()  # (4H,)
            self.b = (lstm.bias_ih_l0 + lstm.bias_hh_l0).clone()  # (4H,)
            self.W_hh_T = lstm.weight_hh_l0.T.contiguous()  # (H, 4H)
            self.W_out_T = net.out.weight.T.contiguous()  # (H, D)
            self.b_out = net.out.bias.detach().clone()  # (D,)
        self.hidden = H
        # fused_kernels=False (PROFILESTREAM_CPU_KERNEL=torch) keeps every step in torch.
        self._fw = _FusedWeights.of(self) if self.device.type == "cpu" and fused_kernels else None
        if self._fw is not None and FUSED_MAX_BATCH > 0:
            fused.warm_up()  # compile now (or load from numba's disk cache), not on the first event
        self.item_ids: list[str] = artifact.catalogue.item_ids
        self.item_index: dict[str, int] = {iid: i for i, iid in enumerate(self.item_ids)}
        self.titles = artifact.catalogue.titles
        self.category_names = artifact.catalogue.category_names
        self.cat_matrix = artifact.catalogue.category_matrix()  # (N, C)
        vn = self.item_vecs.detach().cpu().numpy()
        self._unit_items = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)  # (N, D)
        self._half_life_s = cfg.tag_half_life_days * 86_400.0
        # Category sets as bitmasks (first 63 categories) so shared categories are one `&`.
        n_bits = min(63, self.cat_matrix.shape[1])
        self._cat_bits = (self.cat_matrix[:, :n_bits].astype(np.int64) << np.arange(n_bits)).sum(axis=1)
        self._bits_cache: dict[int, str] = {}
        self._reason_cache: dict[tuple[int, int], str] = {}
        #: Set by `enable_ann()`: top-K through an IVF index instead of brute force (big catalogues).
        self.ann: AnnIndex | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: Path | str, *, device: str = "cpu", fused_kernels: bool = True) -> "ProfileModel":
        return cls(load_artifact(path), device=device, fused_kernels=fused_kernels)

    def enable_ann(self, nprobe: int = DEFAULT_ANN_NPROBE, *, cache_dir: Path | None = None) -> AnnIndex:
        """Build a faiss IVF index over the item vectors (model/ann.py) and rank recommendations
        through it from now on. Approximate: an item in a list the query does not visit is missed.
        The same artifact and `nprobe` always give the same index, so `recommend()` on a model with
        the index enabled gives what a worker with the same settings emits. With `cache_dir`, an
        index built before from the same item vectors is loaded from there (`AnnIndex.build`)."""
        self.ann = AnnIndex.build(self.item_vecs.detach().cpu().numpy(), self.item_bias.detach().cpu().numpy(),
                                  nprobe=nprobe, cache_dir=cache_dir)
        return self.ann

    @property
    def model_version(self) -> str:
        return self.artifact.model_version

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def initial_state(self) -> UserState:
        H = self.hidden
        return UserState(h=np.zeros(H, np.float32), c=np.zeros(H, np.float32),
                         tags=np.zeros(len(self.category_names), np.float32),
                         model_version=self.model_version)

    # ------------------------------------------------------------------ tensor math
    def step(self, h: torch.Tensor, c: torch.Tensor, items: torch.Tensor, types: torch.Tensor,
             vals: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step for B users at once: h, c (B, H); items, types (B,) int64; vals, gaps (B,)."""
        gates = self.p_item[items] + self.p_type[types] + vals[:, None] * self.w_val + gaps[:, None] * self.w_gap
        gates = gates + self.b + h @ self.W_hh_T  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h2 = torch.sigmoid(o) * torch.tanh(c2)
        return h2, c2

    def _use_fused(self, batch: int) -> bool:
        return self._fw is not None and batch <= FUSED_MAX_BATCH

    def step_fused(self, h: np.ndarray, c: np.ndarray, items: np.ndarray, types: np.ndarray, vals: np.ndarray,
                   gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`step` through the compiled CPU kernel (model/fused.py). h, c: (B, H) float32; items,
        types: (B,) int64; vals, gaps: (B,) float32, as `_lstm_rounds` builds them (other dtypes
        work too, through a kernel compiled for them on first use)."""
        w = self._fw
        assert w is not None, "step_fused needs a CPU model"
        h2, c2 = np.empty(h.shape, np.float32), np.empty(c.shape, np.float32)
        if 0 < FUSED_BLAS_MIN_BATCH <= h.shape[0]:
            g_hh = (torch.from_numpy(np.ascontiguousarray(h, np.float32)) @ w.W_hh_T_t).numpy()
            fused.lstm_finish_rows(g_hh, c, items, types, vals, gaps, w.p_item, w.p_type, w.w_val, w.w_gap, w.b,
                                   w.act_mul, w.act_add, h2, c2)
        else:
            fused.lstm_rows(h, c, items, types, vals, gaps,
                            w.p_item, w.p_type, w.w_val, w.w_gap, w.b, w.W_hh_T, w.act_mul, w.act_add, h2, c2)
        return h2, c2

    def scores_topk_fused(self, h: np.ndarray, exclude: Sequence[np.ndarray],
                          k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User vectors, top-k indices and scores for (B, H) states through the compiled CPU
        kernel, never returning an index listed in `exclude[row]`. Ranked by score, equal scores
        by item index."""
        w = self._fw
        assert w is not None, "scores_topk_fused needs a CPU model"
        B = h.shape[0]
        k = min(k, self.n_items)
        idx = np.empty((B, k), np.int64)
        vals = np.empty((B, k), np.float32)
        blas = 0 < FUSED_BLAS_MIN_BATCH <= B
        if B == 1 and not blas:  # the common case at low rates: the mask read where it lies, no offsets
            uvec = np.empty((1, w.W_out.shape[0]), np.float32)
            excl = exclude[0]
            if excl.dtype != np.int32:  # item indices are < 2^31; one dtype, one compiled kernel
                excl = excl.astype(np.int32)
            fused.scores_topk_one(h, w.W_out, w.b_out, w.item_vecs, w.item_bias, excl, k, uvec, idx, vals)
            return uvec, idx, vals
        # One int32 array of all rows' excluded items; one dtype and layout, so the kernel
        # compiled by `fused.warm_up` is the one every call uses.
        start = np.zeros(B + 1, np.int64)
        np.cumsum([len(e) for e in exclude], out=start[1:])
        excl = np.concatenate(exclude).astype(np.int32, copy=False) if start[-1] else np.zeros(0, np.int32)
        if blas:
            u = torch.addmm(w.b_out_t, torch.from_numpy(np.ascontiguousarray(h, np.float32)), w.W_out_t.T)
            scores = torch.addmm(w.item_bias_t, u, w.item_vecs_t.T).numpy()
            fused.topk_rows(scores, excl, start, k, idx, vals)
            return u.numpy(), idx, vals
        uvec = np.empty((B, w.W_out.shape[0]), np.float32)
        fused.scores_topk_rows(h, w.W_out, w.b_out, w.item_vecs, w.item_bias, excl, start, k, uvec, idx, vals)
        return uvec, idx, vals

    def user_vectors(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.W_out_T + self.b_out  # (B, D)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(h) @ self.item_vecs.T + self.item_bias  # (B, N)

    def topk(self, scores: torch.Tensor, exclude: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per row, never returning an index listed in `exclude[row]`."""
        rows = np.concatenate([np.full(len(e), r, np.int64) for r, e in enumerate(exclude)]) if exclude else np.zeros(0, np.int64)
        cols = np.concatenate([np.asarray(e, np.int64) for e in exclude]) if exclude else np.zeros(0, np.int64)
        if rows.size:
            scores = scores.clone()
            scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = -math.inf
        k = min(k, scores.shape[1])
        vals, idx = torch.topk(scores, k, dim=1)
        return idx.cpu().numpy(), vals.cpu().numpy()

    # ------------------------------------------------------------------ event application
    def _rewarm(self, state: UserState) -> None:
        """A state written by another model version: keep counters and tags, rebuild h/c by
        replaying the recent events through this model (the only history the state keeps)."""
        rec = state.recent
        h = torch.zeros(1, self.hidden, device=self.device)
        c = torch.zeros_like(h)
        prev = None
        with torch.inference_mode():
            for r in rec:
                if r["item"] >= self.n_items:
                    continue
                gap = 0.0 if prev is None else max(0.0, float(r["ts"]) - prev)
                prev = float(r["ts"])
                h, c = self.step(h, c, torch.tensor([int(r["item"])], device=self.device),
                                 torch.tensor([int(r["type"])], device=self.device),
                                 torch.from_numpy(value_feature(np.array([r["type"]]), np.array([r["value"]]))).to(self.device),
                                 torch.from_numpy(gap_feature(np.array([gap]))).to(self.device))
        state.h = h[0].cpu().numpy()
        state.c = c[0].cpu().numpy()
        state.recent = rec[rec["item"] < self.n_items]
        state.model_version = self.model_version

    def apply(self, users: Sequence[tuple[UserState, Sequence[Pending]]]) -> list[Applied]:
        """Apply each user's events in order: one batched LSTM step per round, round r taking
        the r-th accepted event of every user that has one. States are updated in place."""
        results: list[Applied] = []
        accepted: list[list[tuple[Pending, int]]] = []
        for state, events in users:
            if state.model_version != self.model_version:
                if state.events_seen:
                    self._rewarm(state)
                state.model_version = self.model_version
            res = Applied(state)
            seen_ids = set(state.event_ids.tolist())
            acc: list[tuple[Pending, int]] = []
            last_part, last_off = state.last_partition, state.last_offset
            marks: dict[int, int] | None = None
            for p in events:
                if p.partition >= 0:
                    if p.partition == last_part and p.offset <= last_off:
                        res.duplicates += 1  # redelivered after a crash or rebalance: already applied
                        continue
                    last_part, last_off = p.partition, p.offset
                if p.raw_partition >= 0:
                    # A raw event the normalize stage forwarded again (after a crash or a
                    # rebalance, at a new offset of `events`): its raw offset is at or before the
                    # last one applied from that raw partition. Unlike the event-id window, this
                    # holds for any number of copies.
                    if marks is None:
                        marks = dict(zip(state.raw_marks["partition"].tolist(), state.raw_marks["offset"].tolist()))
                    if p.raw_offset <= marks.get(p.raw_partition, -1):
                        res.duplicates += 1
                        continue
                    marks[p.raw_partition] = p.raw_offset
                ev = p.event
                if ev.event_id is not None:
                    hid = event_id_hash(ev.event_id)
                    if hid in seen_ids:
                        res.duplicates += 1
                        continue
                    seen_ids.add(hid)
                idx = self.item_index.get(ev.item_id) if ev.item_id is not None else None
                if idx is None:
                    res.rejected.append((p, f"item_id {ev.item_id!r} is not in the catalogue of model {self.model_version}"))
                    continue
                acc.append((p, idx))
            state.last_partition, state.last_offset = last_part, last_off
            if marks is not None:
                state.raw_marks = np.array(sorted(marks.items()), MARK_DTYPE).reshape(-1)
            results.append(res)
            accepted.append(acc)
        self._lstm_rounds(results, accepted)
        for res, acc in zip(results, accepted):
            self._bookkeeping(res, acc)
        return results

    def _lstm_rounds(self, results: list[Applied], accepted: list[list[tuple[Pending, int]]]) -> None:
        n_rounds = max((len(a) for a in accepted), default=0)
        if n_rounds == 0:
            return
        users = [u for u, a in enumerate(accepted) if a]
        # One loop for both paths: numpy arrays (small CPU batches, compiled kernel) or torch tensors.
        if self._use_fused(len(users)):
            step: Any = self.step_fused
            arr: Any = lambda a: a  # noqa: E731
        else:
            step = self.step
            arr = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        Hs = arr(stack_rows([results[u].state.h for u in users]))  # (U, H)
        Cs = arr(stack_rows([results[u].state.c for u in users]))  # (U, H)
        last_ts = [results[u].state.last_ts if results[u].state.events_seen else None for u in users]
        with torch.inference_mode():
            for r in range(n_rounds):
                rows = [j for j, u in enumerate(users) if len(accepted[u]) > r]
                evs = [accepted[users[j]][r] for j in rows]
                items = np.array([idx for _, idx in evs], np.int64)
                types = np.array([TYPE_INDEX[p.event.type] for p, _ in evs], np.int64)
                values = np.array([math.nan if p.event.value is None else p.event.value for p, _ in evs])
                gaps = np.empty(len(rows))
                for n, (j, (p, _)) in enumerate(zip(rows, evs)):
                    prev = last_ts[j]
                    gaps[n] = 0.0 if prev is None else p.event.ts - prev
                    last_ts[j] = p.event.ts
                sel = arr(np.array(rows, np.int64)) if len(rows) != len(users) else None
                h2, c2 = step(Hs if sel is None else Hs[sel], Cs if sel is None else Cs[sel], arr(items), arr(types),
                              arr(value_feature(types, values)), arr(gap_feature(gaps)))
                if sel is None:
                    Hs, Cs = h2, c2
                else:
                    Hs[sel], Cs[sel] = h2, c2
        Hn = Hs if isinstance(Hs, np.ndarray) else Hs.cpu().numpy()
        Cn = Cs if isinstance(Cs, np.ndarray) else Cs.cpu().numpy()
        if len(users) == 1:  # the step's own output, which nothing else holds
            results[users[0]].state.h, results[users[0]].state.c = Hn[0], Cn[0]
            return
        for j, u in enumerate(users):  # copies, so a state does not keep the whole batch's array alive
            results[u].state.h = Hn[j].copy()
            results[u].state.c = Cn[j].copy()

    def _bookkeeping(self, res: Applied, acc: list[tuple[Pending, int]]) -> None:
        """Counters, decayed category affinities, recent events and event ids."""
        if not acc:
            return
        s = res.state
        tags = s.tags.astype(np.float64)
        last = s.last_ts if s.events_seen else None
        new_recent = np.zeros(len(acc), RECENT_DTYPE)
        new_ids = []
        for n, (p, idx) in enumerate(acc):
            ev = p.event
            if last is not None and ev.ts > last:
                tags *= 0.5 ** ((ev.ts - last) / self._half_life_s)
            value = math.nan if ev.value is None else ev.value
            w = _rate_weight(value) if ev.type == "rate" else TYPE_TAG_WEIGHT[ev.type]
            tags += w * self.cat_matrix[idx]
            last = ev.ts
            new_recent[n] = (idx, TYPE_INDEX[ev.type], value, ev.ts)
            if ev.event_id is not None:
                new_ids.append(event_id_hash(ev.event_id))
        s.tags = tags.astype(np.float32)
        s.last_ts = float(last) if last is not None else s.last_ts
        s.events_seen += len(acc)
        keep = min(len(s.recent), max(0, self.config.recent_len - len(acc)))
        recent = np.empty(keep + len(acc), RECENT_DTYPE)  # not np.concatenate: slow on structured arrays
        recent[:keep] = s.recent[len(s.recent) - keep:]
        recent[keep:] = new_recent
        s.recent = recent[-self.config.recent_len:]
        if new_ids:
            s.event_ids = np.concatenate([s.event_ids, np.array(new_ids, np.uint64)])[-EVENT_ID_WINDOW:]
        res.applied = len(acc)
        res.last_event_ts = float(acc[-1][0].event.ts)

    # ------------------------------------------------------------------ outputs
    def _ann_topk(self, Hn: np.ndarray, exclude: Sequence[np.ndarray],
                  k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User vectors and top-k through the ANN index; a row whose visited lists held fewer
        than k allowed items is ranked by brute force instead, so every row has k items."""
        assert self.ann is not None
        with torch.inference_mode():
            uvec = self.user_vectors(torch.from_numpy(Hn).to(self.device))
        uvec_n = uvec.cpu().numpy()
        k = min(k, self.n_items)
        idx, vals = self.ann.topk(uvec_n, exclude, k)
        short = np.flatnonzero((idx < 0).any(axis=1))
        if short.size:
            with torch.inference_mode():
                sc = uvec[torch.from_numpy(short).to(self.device)] @ self.item_vecs.T + self.item_bias
                bi, bv = self.topk(sc, [exclude[int(r)] for r in short], k)
            idx[short], vals[short] = bi, bv
        return uvec_n, idx, vals

    def outputs(self, users: Sequence[tuple[str, UserState]], *, k: int,
                source_event_ts: Sequence[float | None] | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Profile and recommendation records (the output contracts) for each (user_id, state)."""
        if not users:
            return []
        now = time.time()
        Hn = stack_rows([s.h for _, s in users])
        exclude = [s.recent["item"] for _, s in users]
        if self.ann is not None:
            uvec_n, idx, vals = self._ann_topk(Hn, exclude, k)
        elif self._use_fused(len(users)):
            uvec_n, idx, vals = self.scores_topk_fused(Hn, exclude, k)
        else:
            with torch.inference_mode():
                uvec = self.user_vectors(torch.from_numpy(Hn).to(self.device))  # (B, D)
                sc = uvec @ self.item_vecs.T + self.item_bias  # (B, N)
                idx, vals = self.topk(sc, exclude, k)
            uvec_n = uvec.cpu().numpy()
        uvec_l = uvec_n.tolist()
        tags_l = self._tags_batch(np.array([s.tags for _, s in users], np.float32))
        reasons = self._reasons(idx, [s for _, s in users])
        out = []
        for b, (uid, s) in enumerate(users):
            src_ts = source_event_ts[b] if source_event_ts is not None else None
            profile = {
                "user_id": uid,
                "vector": uvec_l[b],
                "tags": tags_l[b],
                "events_seen": int(s.events_seen),
                "last_event_ts": float(s.last_ts) if s.events_seen else None,
                "model_version": self.model_version,
                "seq": int(s.seq),
                "updated_at": now,
            }
            items = [{"item_id": self.item_ids[i], "score": v} for i, v in zip(idx[b].tolist(), vals[b].tolist())]
            why_b = reasons[b] if reasons is not None else None
            if why_b is not None:
                for it, why in zip(items, why_b):
                    it["reason"] = why
            recs = {
                "user_id": uid,
                "items": items,
                "model_version": self.model_version,
                "source_event_ts": float(src_ts if src_ts is not None else s.last_ts),
                "seq": int(s.seq),
            }
            out.append((profile, recs))
        return out

    def _tags_batch(self, tags: np.ndarray) -> list[dict[str, float]]:
        """Per row of (B, C) affinities: {category: weight rounded to 4 places} for |weight| ≥ 1e-4,
        largest |weight| first (ties in category order)."""
        a = np.abs(tags)
        order = np.argsort(-a, axis=1, kind="stable")  # (B, C)
        n_keep = (a >= 1e-4).sum(axis=1).tolist()
        rounded = np.round(tags[np.arange(len(tags))[:, None], order].astype(np.float64), 4).tolist()
        names = self.category_names
        order_l = order.tolist()
        return [dict(zip([names[i] for i in o[:n]], v[:n])) for o, v, n in zip(order_l, rounded, n_keep)]

    def _reasons(self, idx: np.ndarray, states: Sequence[UserState]) -> list[list[str] | None] | None:
        """Per recommended item: the most similar of the user's last REASON_WINDOW items (cosine of
        item vectors) and up to two shared categories. Batched: one (B, K, R) product."""
        B = len(states)
        R = REASON_WINDOW
        recent = np.full((B, R), -1, np.int64)
        for b, s in enumerate(states):
            r = s.recent["item"][-R:]
            recent[b, R - len(r):] = r
        valid = recent >= 0
        has = valid.any(axis=1)
        if not has.any():
            return None
        rv = self._unit_items[np.maximum(recent, 0)]  # (B, R, D)
        sim = self._unit_items[idx] @ rv.transpose(0, 2, 1)  # (B, K, R) cosines
        sim = np.where(valid[:, None, :], sim, -np.inf)
        best = recent[np.arange(B)[:, None], sim.argmax(axis=2)]  # (B, K)
        shared = self._cat_bits[idx] & self._cat_bits[best]  # (B, K) category bitmasks
        return [[self._reason_text(t, m) for t, m in zip(bt, sh)] if ok else None
                for bt, sh, ok in zip(best.tolist(), shared.tolist(), cast(list[bool], has.tolist()))]

    def _reason_text(self, item: int, shared_bits: int) -> str:
        hit = self._reason_cache.get((item, shared_bits))
        if hit is None:
            if len(self._reason_cache) >= 200_000:  # bounded for big catalogues
                self._reason_cache.clear()
            cats = self._bits_names(shared_bits)
            hit = self._reason_cache[(item, shared_bits)] = f"similar to {self.titles[item]}" + (f" ({cats})" if cats else "")
        return hit

    def _bits_names(self, bits: int) -> str:
        hit = self._bits_cache.get(bits)
        if hit is None:
            names = [self.category_names[c] for c in range(len(self.category_names)) if bits >> c & 1]
            hit = self._bits_cache[bits] = ", ".join(names[:2])
        return hit

    # ------------------------------------------------------------------ offline conveniences
    def replay_history(self, history: Iterable[Mapping[str, Any] | Event]) -> tuple[str, UserState]:
        """Apply one user's history (event dicts in the input contract, or `Event`s) from a
        fresh state, in order; return the user id and the resulting state."""
        events = [e if isinstance(e, Event) else validate_event(dict(e), now=math.inf) for e in history]
        users = {e.user_id for e in events}
        if len(users) != 1:
            raise ValueError(f"history must hold the events of exactly one user, got {len(users)}")
        state = self.initial_state()
        self.apply([(state, [Pending(e) for e in events if e.type != "forget"])])
        return events[0].user_id, state

    def profile(self, history: Iterable[Mapping[str, Any] | Event]) -> dict[str, Any]:
        """The profile record the stream would emit after these events (one user's, in order)."""
        return self.outputs([self.replay_history(history)], k=1)[0][0]

    def recommend(self, history: Iterable[Mapping[str, Any] | Event], k: int = 10) -> list[str]:
        """The top-k item ids the stream would emit after these events."""
        recs = self.outputs([self.replay_history(history)], k=k)[0][1]
        return [it["item_id"] for it in recs["items"]]

