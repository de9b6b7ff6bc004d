"""The streaming step's math as two Triton kernels, for CUDA devices.

`lstm_step` is `ProfileModel.step` in one launch: the gate product for ROWS users at a time, the
precomputed input-side gate rows gathered by item and event type, the value and time-gap terms,
the activations and the new (h, c). `scores_topk` is `user_vectors` → scores over the catalogue →
top-K in one launch that never writes the (batch × catalogue) score matrix: it walks the item
vectors in tiles of BN, masks each row's excluded items, and keeps a running top-K per row.
Ranking: by score, equal scores by item index (as the CPU kernels of model/fused.py). A row with
fewer than K allowed items ends its list with index -1 and score -inf.

Products are exact float32 (`input_precision="ieee"`, not TF32): TF32 changed 2 % of the top-10
lists in `profilestream bench gpu`. Triton is installed with torch's CUDA builds on Linux; where it
is not, `available()` is False and the model stays on its torch path. The same kernels run on a
CPU under Triton's interpreter (TRITON_INTERPRET=1, set before this module is imported), which is
how the tests check them on machines without a GPU."""

from __future__ import annotations

from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels on Linux bring triton
    triton = None  # type: ignore[assignment]

__all__ = ["available", "lstm_step", "scores_topk", "ROWS"]

#: Users per program (the M of the products; tl.dot needs at least 16).
ROWS = 16
#: Catalogue items per tile of `scores_topk`.
BN = 128


def available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _sigmoid(x):  # type: ignore[no-untyped-def]
        return 1.0 / (1.0 + tl.exp(-x))

    @triton.jit
    def _tanh(x):  # type: ignore[no-untyped-def]
        # tanh(x) = 2·sigmoid(2x) − 1; |error| ≤ 1.2e-7 near 0, well inside the step's 1e-5 tolerance
        return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0

    @triton.jit
    def _gate(h, W_HH_T, P_ITEM, P_TYPE, W_VAL, W_GAP, BIAS, item, typ, val, gap, rm, g: tl.constexpr,
              HID: tl.constexpr, HP: tl.constexpr):  # type: ignore[no-untyped-def]
        j = tl.arange(0, HP)  # HP = HID rounded up to a power of two; j ≥ HID is masked
        jm = j < HID
        m2 = rm[:, None] & jm[None, :]
        w = tl.load(W_HH_T + j[:, None] * (4 * HID) + g * HID + j[None, :], mask=jm[:, None] & jm[None, :],
                    other=0.0)  # (HID, HID) block of (H, 4H)
        acc = tl.dot(h, w, input_precision="ieee")
        acc += tl.load(P_ITEM + item[:, None] * (4 * HID) + g * HID + j[None, :], mask=m2, other=0.0)
        acc += tl.load(P_TYPE + typ[:, None] * (4 * HID) + g * HID + j[None, :], mask=m2, other=0.0)
        acc += val[:, None] * tl.load(W_VAL + g * HID + j, mask=jm, other=0.0)[None, :]
        acc += gap[:, None] * tl.load(W_GAP + g * HID + j, mask=jm, other=0.0)[None, :]
        acc += tl.load(BIAS + g * HID + j, mask=jm, other=0.0)[None, :]
        return acc

    @triton.jit
    def _lstm_kernel(H_IN, C_IN, ITEMS, TYPES, VALS, GAPS, P_ITEM, P_TYPE, W_VAL, W_GAP, BIAS, W_HH_T, H_OUT, C_OUT,
                     B, HID: tl.constexpr, HP: tl.constexpr, ROWS_: tl.constexpr):  # type: ignore[no-untyped-def]
        rows = tl.program_id(0) * ROWS_ + tl.arange(0, ROWS_)
        rm = rows < B
        j = tl.arange(0, HP)
        m2 = rm[:, None] & (j < HID)[None, :]
        off = rows[:, None] * HID + j[None, :]
        h = tl.load(H_IN + off, mask=m2, other=0.0)
        c = tl.load(C_IN + off, mask=m2, other=0.0)
        item = tl.load(ITEMS + rows, mask=rm, other=0)
        typ = tl.load(TYPES + rows, mask=rm, other=0)
        val = tl.load(VALS + rows, mask=rm, other=0.0)
        gap = tl.load(GAPS + rows, mask=rm, other=0.0)
        # torch's LSTM gate order: input, forget, cell, output
        gi = _gate(h, W_HH_T, P_ITEM, P_TYPE, W_VAL, W_GAP, BIAS, item, typ, val, gap, rm, 0, HID, HP)
        gf = _gate(h, W_HH_T, P_ITEM, P_TYPE, W_VAL, W_GAP, BIAS, item, typ, val, gap, rm, 1, HID, HP)
        gg = _gate(h, W_HH_T, P_ITEM, P_TYPE, W_VAL, W_GAP, BIAS, item, typ, val, gap, rm, 2, HID, HP)
        go = _gate(h, W_HH_T, P_ITEM, P_TYPE, W_VAL, W_GAP, BIAS, item, typ, val, gap, rm, 3, HID, HP)
        c2 = _sigmoid(gf) * c + _sigmoid(gi) * _tanh(gg)
        h2 = _sigmoid(go) * _tanh(c2)
        tl.store(C_OUT + off, c2, mask=m2)
        tl.store(H_OUT + off, h2, mask=m2)

    @triton.jit
    def _scores_topk_kernel(H, W_OUT_T, B_OUT, V, IBIAS, EXCL, UVEC, IDX, VAL, B, N, L,
                            HID: tl.constexpr, HP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
                            K: tl.constexpr, KP: tl.constexpr, ROWS_: tl.constexpr,
                            BN_: tl.constexpr):  # type: ignore[no-untyped-def]
        rows = tl.program_id(0) * ROWS_ + tl.arange(0, ROWS_)
        rm = rows < B
        j = tl.arange(0, HP)
        jm = j < HID
        d = tl.arange(0, DP)
        dm = d < D
        h = tl.load(H + rows[:, None] * HID + j[None, :], mask=rm[:, None] & jm[None, :], other=0.0)
        w = tl.load(W_OUT_T + j[:, None] * D + d[None, :], mask=jm[:, None] & dm[None, :], other=0.0)  # (HID, D)
        u = tl.dot(h, w, input_precision="ieee") + tl.load(B_OUT + d, mask=dm, other=0.0)[None, :]  # user vectors
        tl.store(UVEC + rows[:, None] * D + d[None, :], u, mask=rm[:, None] & dm[None, :])
        slots = tl.arange(0, KP)
        # slots ≥ K hold +inf so the running minimum (the slot a better item replaces) is among the first K
        best_v = tl.where(slots[None, :] < K, float("-inf"), float("inf")) + tl.zeros((ROWS_, KP), tl.float32)
        best_i = tl.full((ROWS_, KP), -1, tl.int64)
        t = tl.arange(0, BN_)
        for start in range(0, N, BN_):
            cols = start + t
            cm = cols < N
            vt = tl.load(V + cols[None, :] * D + d[:, None], mask=cm[None, :] & dm[:, None], other=0.0)  # (D, BN)
            s = tl.dot(u, vt, input_precision="ieee") + tl.load(IBIAS + cols, mask=cm, other=0.0)[None, :]
            s = tl.where(cm[None, :], s, float("-inf"))
            for e_i in range(L):
                e = tl.load(EXCL + rows * L + e_i, mask=rm, other=-1)
                s = tl.where(cols[None, :] == e[:, None], float("-inf"), s)
            # the tile's best K, best first (equal scores: lowest index), each replacing the running
            # minimum when strictly better (so of equal scores the earlier, lower index stays)
            for _ in tl.static_range(K):
                m = tl.max(s, axis=1)
                a = tl.argmax(s, axis=1, tie_break_left=True)
                mn = tl.min(best_v, axis=1)
                pos = tl.argmin(best_v, axis=1, tie_break_left=True)
                upd = (slots[None, :] == pos[:, None]) & (m > mn)[:, None]
                best_v = tl.where(upd, m[:, None], best_v)
                best_i = tl.where(upd, (start + a).to(tl.int64)[:, None], best_i)
                s = tl.where(t[None, :] == a[:, None], float("-inf"), s)
        # out in order: highest score first, equal scores by lower item index
        alive = (slots[None, :] < K) & rm[:, None]
        big = 1 << 62
        for r in tl.static_range(K):
            vv = tl.where(alive, best_v, float("-inf"))
            m = tl.max(vv, axis=1)
            cand = tl.where(alive & (vv == m[:, None]), best_i, big)
            i = tl.min(cand, axis=1)
            pos = tl.argmin(cand, axis=1, tie_break_left=True)
            alive = alive & (slots[None, :] != pos[:, None])
            tl.store(VAL + rows * K + r, m, mask=rm)
            tl.store(IDX + rows * K + r, i, mask=rm)


def _p2(n: int) -> int:
    """n rounded up to a power of two, at least 16 (tl.dot's smallest side)."""
    return max(16, 1 << (n - 1).bit_length())


def _grid(b: int, rows: int) -> tuple[int]:
    return ((b + rows - 1) // rows,)


def lstm_step(model: Any, h: torch.Tensor, c: torch.Tensor, items: torch.Tensor, types: torch.Tensor,
              vals: torch.Tensor, gaps: torch.Tensor, *, rows: int = ROWS,
              num_warps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """`model.step(h, c, items, types, vals, gaps)` in one launch (h, c: (B, H) float32; items,
    types int64; vals, gaps float32). `rows` users per program, `num_warps` per program."""
    B, H = h.shape
    h2, c2 = torch.empty_like(h), torch.empty_like(c)
    if B:
        _lstm_kernel[_grid(B, rows)](h.contiguous(), c.contiguous(), items, types, vals, gaps, model.p_item,
                                     model.p_type, model.w_val, model.w_gap, model.b, model.W_hh_T, h2, c2, B,
                                     HID=H, HP=_p2(H), ROWS_=rows, num_warps=num_warps)
    return h2, c2


def scores_topk(model: Any, h: torch.Tensor, exclude: torch.Tensor | None, k: int, *, rows: int = ROWS,
                num_warps: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """User vectors (B, D), top-k indices (B, k) int64 and scores (B, k) for hidden states h (B, H),
    never returning an item listed in the row of `exclude` ((B, L) int64, -1 = nothing; None =
    nothing excluded). One launch; the score matrix is never stored."""
    B, H = h.shape
    D = model.item_vecs.shape[1]
    k = min(k, model.n_items)
    dev = h.device
    uvec = torch.empty(B, D, device=dev)
    idx = torch.empty(B, k, dtype=torch.int64, device=dev)
    val = torch.empty(B, k, device=dev)
    if exclude is None:
        exclude = torch.empty(B, 0, dtype=torch.int64, device=dev)
    if B:
        _scores_topk_kernel[_grid(B, rows)](h.contiguous(), model.W_out_T, model.b_out, model.item_vecs,
                                            model.item_bias, exclude.contiguous(), uvec, idx, val, B, model.n_items,
                                            exclude.shape[1], HID=H, HP=_p2(H), D=D, DP=_p2(D), K=k, KP=_p2(k),
                                            ROWS_=rows, BN_=BN, num_warps=num_warps)
    return uvec, idx, val


def pad_exclude(exclude: list[Any], device: torch.device) -> torch.Tensor:
    """Per-row excluded item indices as one (B, L) int64 tensor, short rows padded with -1."""
    import numpy as np

    L = max((len(e) for e in exclude), default=0)
    out = np.full((len(exclude), L), -1, np.int64)
    for r, e in enumerate(exclude):
        out[r, :len(e)] = e
    return torch.from_numpy(out).to(device)
