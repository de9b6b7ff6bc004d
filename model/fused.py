"""The streaming step's math as compiled loops (numba), for small CPU batches.

At batch 1 the step is three matrix-vector products (gates 4H×H, user vector D×H, scores
N×D), 5H activations and a top-K: about 180k multiply-adds, ≈ 5 µs of arithmetic. In numpy
or torch it costs 60–90 µs, because each of the ~20 operations pays 1–10 µs of dispatch and
writes a temporary. Here each product is one loop over the weights, with the activations done
in registers and the top-K as a single pass over the scores that keeps the K best, so the
cost is close to what it takes to stream the weights through the cache (bench/README.md,
"The core step"). For bigger batches (model.runtime.FUSED_BLAS_MIN_BATCH users and more) the two
products come from BLAS, which reads each weight matrix once per batch instead of once per row,
and `lstm_finish_rows` / `topk_rows` do the rest (bench/README.md, "Vectorised activations …").

Same equations and weights as `ProfileModel.step` / `scores` (model/runtime.py):
  - sigmoid via σ(x) = (tanh(x/2) + 1) / 2 on gate weights pre-scaled by ½ (exact), so one
    tanh gives all four activations;
  - tanh is a clamped rational approximation (the one Eigen uses for float32), absolute error
    ≤ 3e-7 over all floats: tests/unit/test_fused.py;
  - sums run in a different order than BLAS, so results agree with torch to float32 rounding
    (≤ 1e-5 over a 300-event sequence: tests/unit/test_runtime.py), not bit for bit.

Every kernel is compiled on first use and cached on disk (numba `cache=True`, next to this
file or in NUMBA_CACHE_DIR), so a worker's first batch does not pay the ≈ 2 s compile after
the first run on a machine; `warm_up()` compiles them ahead of time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .state import RECENT_DTYPE

__all__ = ["fast_tanh", "lstm_rows", "scores_topk_rows", "scores_topk_one", "lstm_finish_rows", "topk_rows",
           "warm_up"]

# 'contract' lets LLVM fuse a*b+c into one FMA and 'reassoc' lets it split a dot product over
# SIMD lanes; no flag that changes results for finite inputs (nnan/ninf) is used.
# error_model="numpy": a float division by zero gives inf/nan as in numpy instead of raising
# ZeroDivisionError. The only division is tanh's p / q, and q ≥ 0.0049, so nothing changes but
# the code: without it numba guards every division with a branch, and the branch keeps LLVM from
# vectorising the activation loops (tanh of 640 values: 3.4 → 0.4 ns each; bench/README.md).
_FM = {"contract", "reassoc"}
_CLAMP = np.float32(7.99881172180175781)  # tanh rounds to ±1 in float32 beyond this
_BLOCK = 32  # scores the top-K tests against its k-th best at once


@njit(fastmath=_FM, error_model="numpy", inline="always", cache=True)
def fast_tanh(x: np.float32) -> np.float32:
    """float32 tanh: Eigen's rational approximation (odd degree-13 / even degree-6), clamped."""
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(fastmath=_FM, error_model="numpy", cache=True)
def _tanh_array(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = fast_tanh(x[i])


@njit(fastmath=_FM, error_model="numpy", inline="always", cache=True)
def _matvec(W: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[j] += W[j] · x, eight rows at a time so each load of x feeds eight multiply-adds
    (a dot product per row would reload x per row, and four rows at a time is ≈ 15 % slower on
    the item matrix's short rows)."""
    n, K = W.shape
    n8 = n - n % 8
    for j in range(0, n8, 8):
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        a4 = np.float32(0.0)
        a5 = np.float32(0.0)
        a6 = np.float32(0.0)
        a7 = np.float32(0.0)
        for k in range(K):
            xk = x[k]
            a0 += W[j, k] * xk
            a1 += W[j + 1, k] * xk
            a2 += W[j + 2, k] * xk
            a3 += W[j + 3, k] * xk
            a4 += W[j + 4, k] * xk
            a5 += W[j + 5, k] * xk
            a6 += W[j + 6, k] * xk
            a7 += W[j + 7, k] * xk
        out[j] += a0
        out[j + 1] += a1
        out[j + 2] += a2
        out[j + 3] += a3
        out[j + 4] += a4
        out[j + 5] += a5
        out[j + 6] += a6
        out[j + 7] += a7
    for j in range(n8, n):
        acc = np.float32(0.0)
        for k in range(K):
            acc += W[j, k] * x[k]
        out[j] += acc


@njit(fastmath=_FM, error_model="numpy", inline="always", cache=True)
def _matvec_t(WT: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[j] += Σ_k WT[k, j] x[k] for a transposed (K, n) matrix: eight of its rows at a time, each
    a vectorised pass over out. There is no horizontal sum per output as in `_matvec`, which
    makes the gates' 128 × 512 product ≈ 1/3 faster (3.2 → 2.2 µs); on the item matrix's
    1,682 × 64 both forms take the same time (it streams from L2), so the scores keep `_matvec`."""
    K, n = WT.shape
    K8 = K - K % 8
    for k in range(0, K8, 8):
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        x4, x5, x6, x7 = x[k + 4], x[k + 5], x[k + 6], x[k + 7]
        for j in range(n):
            out[j] += (WT[k, j] * x0 + WT[k + 1, j] * x1 + WT[k + 2, j] * x2 + WT[k + 3, j] * x3
                       + WT[k + 4, j] * x4 + WT[k + 5, j] * x5 + WT[k + 6, j] * x6 + WT[k + 7, j] * x7)
    for k in range(K8, K):
        xk = x[k]
        for j in range(n):
            out[j] += WT[k, j] * xk


@njit(fastmath=_FM, error_model="numpy", cache=True)
def lstm_rows(h: np.ndarray, c: np.ndarray, items: np.ndarray, types: np.ndarray, vals: np.ndarray,
              gaps: np.ndarray, p_item: np.ndarray, p_type: np.ndarray, w_val: np.ndarray, w_gap: np.ndarray,
              b: np.ndarray, W_hh_T: np.ndarray, act_mul: np.ndarray, act_add: np.ndarray,
              h_out: np.ndarray, c_out: np.ndarray) -> None:
    """One LSTM step for each row r: (h[r], c[r]) → (h_out[r], c_out[r]).

    All weights are pre-scaled (see `_FusedWeights` in model/runtime.py): gate j's activation is
    tanh(gate_j) * act_mul[j] + act_add[j]. W_hh_T is the recurrent matrix transposed, (H, 4H)
    row-major, so row k holds h's k-th weight for every gate (see `_matvec_t`)."""
    B, H = h.shape
    G = 4 * H
    g = np.empty(G, np.float32)
    for r in range(B):
        it, ty, v, gp = items[r], types[r], vals[r], gaps[r]
        for j in range(G):
            g[j] = p_item[it, j] + p_type[ty, j] + v * w_val[j] + gp * w_gap[j] + b[j]
        _matvec_t(W_hh_T, h[r], g)
        for j in range(G):
            g[j] = fast_tanh(g[j]) * act_mul[j] + act_add[j]
        for j in range(H):
            cj = g[H + j] * c[r, j] + g[j] * g[2 * H + j]
            c_out[r, j] = cj
            h_out[r, j] = g[3 * H + j] * fast_tanh(cj)


@njit(fastmath=_FM, error_model="numpy", inline="always", cache=True)
def _select_topk(sc: np.ndarray, k: int, ti: np.ndarray, ts: np.ndarray) -> None:
    """The k best of sc into ti (indices) and ts (scores) in one pass, ranked by score, equal
    scores by index (a later equal score never displaces an earlier one)."""
    N = sc.shape[0]
    cnt = 0
    for b0 in range(0, N, _BLOCK):
        b1 = min(b0 + _BLOCK, N)
        if cnt == k:
            # Once k are kept, most blocks hold nothing better than the k-th: count in one
            # branch-free (vectorised) pass and skip the block without visiting its items.
            thr = ts[k - 1]
            better = 0
            for n in range(b0, b1):
                better += sc[n] > thr
            if better == 0:
                continue
        for n in range(b0, b1):
            s = sc[n]
            if cnt == k:
                if not s > ts[k - 1]:
                    continue
                pos = k - 1
            else:
                pos = cnt
                cnt += 1
            # Shift the worse entries down; an equal score stays behind (lower index first).
            while pos > 0 and s > ts[pos - 1]:
                ts[pos] = ts[pos - 1]
                ti[pos] = ti[pos - 1]
                pos -= 1
            ts[pos] = s
            ti[pos] = n


@njit(fastmath=_FM, error_model="numpy", inline="always", cache=True)
def _user_scores(h: np.ndarray, W_out: np.ndarray, b_out: np.ndarray, V: np.ndarray, bias: np.ndarray,
                 u: np.ndarray, sc: np.ndarray) -> None:
    """u = W_out h + b_out; sc = V u + bias."""
    for d in range(W_out.shape[0]):
        u[d] = b_out[d]
    _matvec(W_out, h, u)
    for n in range(V.shape[0]):
        sc[n] = bias[n]
    _matvec(V, u, sc)


@njit(fastmath=_FM, error_model="numpy", cache=True)
def scores_topk_rows(h: np.ndarray, W_out: np.ndarray, b_out: np.ndarray, V: np.ndarray, bias: np.ndarray,
                     excl: np.ndarray, excl_start: np.ndarray, k: int,
                     uvec: np.ndarray, top_i: np.ndarray, top_s: np.ndarray) -> None:
    """Per row r: user vector uvec[r] = W_out h[r] + b_out; scores V uvec[r] + bias with the items
    excl[excl_start[r]:excl_start[r+1]] set to -inf; the k best into top_i[r], top_s[r], ranked
    by score, equal scores by item index (as `ProfileModel.topk`). W_out is (D, H), V is (N, D)."""
    sc = np.empty(V.shape[0], np.float32)
    for r in range(h.shape[0]):
        _user_scores(h[r], W_out, b_out, V, bias, uvec[r], sc)
        for e in range(excl_start[r], excl_start[r + 1]):
            sc[excl[e]] = -np.inf
        _select_topk(sc, k, top_i[r], top_s[r])


@njit(fastmath=_FM, error_model="numpy", cache=True)
def scores_topk_one(h: np.ndarray, W_out: np.ndarray, b_out: np.ndarray, V: np.ndarray, bias: np.ndarray,
                    excl: np.ndarray, k: int, uvec: np.ndarray, top_i: np.ndarray, top_s: np.ndarray) -> None:
    """`scores_topk_rows` for one user: h, uvec, top_i and top_s have one row each (taken as 2-D,
    since each row view made in Python costs ≈ 0.1 µs). `excl` may be any int32 view, such as a
    state's `recent["item"]` (a field of a packed record array: strided and not 4-byte aligned),
    so a single user's mask is read where it lies instead of copied first."""
    sc = np.empty(V.shape[0], np.float32)
    _user_scores(h[0], W_out, b_out, V, bias, uvec[0], sc)
    for e in range(excl.shape[0]):
        sc[excl[e]] = -np.inf
    _select_topk(sc, k, top_i[0], top_s[0])


@njit(fastmath=_FM, error_model="numpy", cache=True)
def lstm_finish_rows(g_hh: np.ndarray, c: np.ndarray, items: np.ndarray, types: np.ndarray, vals: np.ndarray,
                     gaps: np.ndarray, p_item: np.ndarray, p_type: np.ndarray, w_val: np.ndarray, w_gap: np.ndarray,
                     b: np.ndarray, act_mul: np.ndarray, act_add: np.ndarray,
                     h_out: np.ndarray, c_out: np.ndarray) -> None:
    """`lstm_rows` for bigger batches, given the recurrent product g_hh = h W_hhᵀ (B, 4H) from
    one BLAS call (which reads W_hh once for the whole batch, where `lstm_rows` streams it once
    per row): adds the input side, applies the activations and updates c and h."""
    B, G = g_hh.shape
    H = G // 4
    g = np.empty(G, np.float32)
    for r in range(B):
        it, ty, v, gp = items[r], types[r], vals[r], gaps[r]
        for j in range(G):
            x = g_hh[r, j] + p_item[it, j] + p_type[ty, j] + v * w_val[j] + gp * w_gap[j] + b[j]
            g[j] = fast_tanh(x) * act_mul[j] + act_add[j]
        for j in range(H):
            cj = g[H + j] * c[r, j] + g[j] * g[2 * H + j]
            c_out[r, j] = cj
            h_out[r, j] = g[3 * H + j] * fast_tanh(cj)


@njit(fastmath=_FM, error_model="numpy", cache=True)
def topk_rows(scores: np.ndarray, excl: np.ndarray, excl_start: np.ndarray, k: int,
              top_i: np.ndarray, top_s: np.ndarray) -> None:
    """`scores_topk_rows` for bigger batches, given the (B, N) scores from BLAS: per row r, the
    items excl[excl_start[r]:excl_start[r+1]] are set to -inf (in place) and the k best kept."""
    for r in range(scores.shape[0]):
        sc = scores[r]
        for e in range(excl_start[r], excl_start[r + 1]):
            sc[excl[e]] = -np.inf
        _select_topk(sc, k, top_i[r], top_s[r])


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel for the argument types the runtime uses."""
    f32, i64 = np.float32, np.int64
    h = np.zeros((1, 4), f32)
    c = np.zeros((1, 4), f32)
    one_i, one_f = np.zeros(1, i64), np.zeros(1, f32)
    lstm_rows(h, c, one_i, one_i, one_f, one_f, np.zeros((2, 16), f32), np.zeros((2, 16), f32),
              np.zeros(16, f32), np.zeros(16, f32), np.zeros(16, f32), np.zeros((4, 16), f32),
              np.ones(16, f32), np.zeros(16, f32), np.empty_like(h), np.empty_like(c))
    scores_topk_rows(h, np.zeros((3, 4), f32), np.zeros(3, f32), np.zeros((5, 3), f32), np.zeros(5, f32),
                     np.zeros(0, np.int32), np.zeros(2, i64), 2, np.empty((1, 3), f32), np.empty((1, 2), i64),
                     np.empty((1, 2), f32))
    # the two layouts a single user's mask comes in: a state's recent["item"] field, and a plain array
    recent = np.zeros(2, RECENT_DTYPE)
    for excl in (recent["item"], np.zeros(0, np.int32)):
        scores_topk_one(h, np.zeros((3, 4), f32), np.zeros(3, f32), np.zeros((5, 3), f32), np.zeros(5, f32),
                        excl, 2, np.empty((1, 3), f32), np.empty((1, 2), i64), np.empty((1, 2), f32))
    lstm_finish_rows(np.zeros((1, 16), f32), c, one_i, one_i, one_f, one_f, np.zeros((2, 16), f32),
                     np.zeros((2, 16), f32), np.zeros(16, f32), np.zeros(16, f32), np.zeros(16, f32),
                     np.ones(16, f32), np.zeros(16, f32), np.empty_like(h), np.empty_like(c))
    topk_rows(np.zeros((1, 5), f32), np.zeros(0, np.int32), np.zeros(2, i64), 2, np.empty((1, 2), i64),
              np.empty((1, 2), f32))
    _tanh_array(np.zeros(1, f32), np.zeros(1, f32))
