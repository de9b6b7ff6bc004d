"""The compiled CPU kernels (model/fused.py) against plain numpy / torch on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import fused


def test_fast_tanh_is_float32_accurate_everywhere() -> None:
    x = np.concatenate([np.linspace(-20, 20, 400_001), [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, np.inf, -np.inf]])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    fused._tanh_array(x, out)
    err = np.abs(out.astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() <= 5e-7, f"worst at x={x[err.argmax()]}: {out[err.argmax()]} vs {np.tanh(x[err.argmax()])}"
    assert out[x == np.float32(np.inf)][0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.abs(out) <= 1.0)


def _lstm_reference(h, c, items, types, vals, gaps, p_item, p_type, w_val, w_gap, b, W_hh):  # type: ignore[no-untyped-def]
    """nn.LSTMCell's equations in torch on unscaled weights (gate order i, f, g, o)."""
    t = torch.from_numpy
    gates = t(p_item)[t(items)] + t(p_type)[t(types)] + t(vals)[:, None] * t(w_val) + t(gaps)[:, None] * t(w_gap)
    gates = gates + t(b) + t(h) @ t(W_hh).T
    i, f, g, o = gates.chunk(4, dim=1)
    c2 = torch.sigmoid(f) * t(c) + torch.sigmoid(i) * torch.tanh(g)
    return (torch.sigmoid(o) * torch.tanh(c2)).numpy(), c2.numpy()


def _random_step(rng: np.random.Generator, B: int, H: int, n_items: int, n_types: int) -> dict:
    """Random inputs of one LSTM step for B users, with the gate weights unscaled."""
    f32 = np.float32
    d = dict(p_item=rng.normal(0, 1, (n_items, 4 * H)).astype(f32),
             p_type=rng.normal(0, 1, (n_types, 4 * H)).astype(f32))
    d["w_val"], d["w_gap"], d["b"] = (rng.normal(0, 1, 4 * H).astype(f32) for _ in range(3))
    d.update(W_hh=rng.normal(0, 1 / np.sqrt(H), (4 * H, H)).astype(f32),
             h=rng.normal(0, 1, (B, H)).astype(f32),
             c=rng.normal(0, 2, (B, H)).astype(f32),
             items=rng.integers(0, n_items, B),
             types=rng.integers(0, n_types, B),
             vals=rng.normal(0, 1, B).astype(f32),
             gaps=rng.uniform(0, 2, B).astype(f32))
    return d


def _halves(H: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' pre-halving of the sigmoid gates (i, f, o) and the +0.5 that undoes it."""
    half = np.full(4 * H, 0.5, np.float32)
    half[2 * H:3 * H] = 1.0
    return half, np.where(half == 0.5, 0.5, 0.0).astype(np.float32)


def _reference(d: dict) -> tuple[np.ndarray, np.ndarray]:
    return _lstm_reference(d["h"], d["c"], d["items"], d["types"], d["vals"], d["gaps"], d["p_item"],
                           d["p_type"], d["w_val"], d["w_gap"], d["b"], d["W_hh"])


@pytest.mark.parametrize("B,H", [(1, 8), (5, 13), (3, 128)])
def test_lstm_rows_equals_torch_lstm_equations(B: int, H: int) -> None:
    d = _random_step(np.random.default_rng(B * 100 + H), B, H, n_items=7, n_types=3)
    half, add = _halves(H)
    h2, c2 = np.empty_like(d["h"]), np.empty_like(d["c"])
    fused.lstm_rows(d["h"], d["c"], d["items"], d["types"], d["vals"], d["gaps"], d["p_item"] * half,
                    d["p_type"] * half, d["w_val"] * half, d["w_gap"] * half, d["b"] * half,
                    np.ascontiguousarray((d["W_hh"] * half[:, None]).T), half, add, h2, c2)
    rh, rc = _reference(d)
    np.testing.assert_allclose(h2, rh, atol=2e-6, rtol=0)
    np.testing.assert_allclose(c2, rc, atol=4e-6, rtol=0)


@pytest.mark.parametrize("B,H", [(1, 8), (40, 128)])
def test_lstm_finish_rows_equals_torch_lstm_equations(B: int, H: int) -> None:
    """The bigger-batch kernel, given the recurrent product from BLAS, gives the same step."""
    d = _random_step(np.random.default_rng(B * 7 + H), B, H, n_items=9, n_types=4)
    half, add = _halves(H)
    g_hh = d["h"] @ (d["W_hh"] * half[:, None]).T
    h2, c2 = np.empty_like(d["h"]), np.empty_like(d["c"])
    fused.lstm_finish_rows(g_hh, d["c"], d["items"], d["types"], d["vals"], d["gaps"], d["p_item"] * half,
                           d["p_type"] * half, d["w_val"] * half, d["w_gap"] * half, d["b"] * half, half, add,
                           h2, c2)
    rh, rc = _reference(d)
    np.testing.assert_allclose(h2, rh, atol=2e-6, rtol=0)
    np.testing.assert_allclose(c2, rc, atol=4e-6, rtol=0)


def test_topk_rows_masks_in_place_and_breaks_ties_by_index() -> None:
    rng = np.random.default_rng(3)
    B, N, k = 3, 30, 6
    sc = rng.normal(0, 1, (B, N)).astype(np.float32)
    sc[:, [4, 11, 25]] = 9.0  # an exact three-way tie ahead of everything
    excl_lists = [np.array([11], np.int32), np.zeros(0, np.int32), np.arange(N - 1, dtype=np.int32)]
    start = np.zeros(B + 1, np.int64)
    np.cumsum([len(e) for e in excl_lists], out=start[1:])
    want = sc.copy()
    for r, e in enumerate(excl_lists):
        want[r, e] = -np.inf
    ref_i, ref_v = _topk_reference(want, k)
    idx = np.empty((B, k), np.int64)
    vals = np.empty((B, k), np.float32)
    fused.topk_rows(sc, np.concatenate(excl_lists), start, k, idx, vals)
    np.testing.assert_array_equal(sc, want)  # masked in place
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(vals, ref_v)
    assert idx[0, :2].tolist() == [4, 25] and idx[1, :3].tolist() == [4, 11, 25]
    assert idx[2, 0] == N - 1 and idx[2, 1:].tolist() == list(range(k - 1))  # then masked items by index


def _topk_reference(sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank by score, equal scores by lower item index: a stable sort of -score."""
    order = np.argsort(-sc, kind="stable", axis=1)[:, :k]
    return order, np.take_along_axis(sc, order, axis=1)


def test_scores_topk_rows_ranks_masks_and_breaks_ties_by_index() -> None:
    rng = np.random.default_rng(7)
    f32 = np.float32
    B, H, D, N, k = 4, 6, 5, 50, 8
    h = rng.normal(0, 1, (B, H)).astype(f32)
    W_out = rng.normal(0, 1, (D, H)).astype(f32)
    b_out = rng.normal(0, 1, D).astype(f32)
    V = rng.normal(0, 1, (N, D)).astype(f32)
    V[10] = V[3]  # two items with identical vectors and bias: a tie, broken by index
    V[40] = V[3]
    bias = rng.normal(0, 0.1, N).astype(f32)
    bias[[3, 10, 40]] = 50.0  # far ahead of every other item
    excl_lists = [np.array([3], np.int32), np.zeros(0, np.int32), np.arange(N - 2, dtype=np.int32),
                  np.array([5, 5, 7], np.int32)]
    start = np.zeros(B + 1, np.int64)
    np.cumsum([len(e) for e in excl_lists], out=start[1:])
    uvec = np.empty((B, D), f32)
    idx = np.empty((B, k), np.int64)
    vals = np.empty((B, k), f32)
    fused.scores_topk_rows(h, W_out, b_out, V, bias, np.concatenate(excl_lists), start, k, uvec, idx, vals)

    ref_u = h.astype(np.float64) @ W_out.T.astype(np.float64) + b_out
    np.testing.assert_allclose(uvec, ref_u, atol=1e-5, rtol=0)
    sc = (uvec.astype(np.float64) @ V.T.astype(np.float64) + bias).astype(f32)
    sc[0, 3] = 0.0  # make the tie exact in the reference, then mask per row
    for r, e in enumerate(excl_lists):
        sc[r, e] = -np.inf
    # the kernel's own scores (float32, its summation order) decide exact ties, so compare on them
    for r in range(B):
        ref_i, ref_v = _topk_reference(sc[r:r + 1], k)
        np.testing.assert_allclose(vals[r], ref_v[0], atol=1e-4, rtol=0)
        assert not set(idx[r].tolist()) & set(excl_lists[r].tolist()) or r == 2
    # row 2 keeps only items 48, 49 unmasked: they come first, then masked items by index at -inf
    assert idx[2, :2].tolist() == sorted(idx[2, :2].tolist(), key=lambda i: (-sc[2, i], i))
    assert np.isneginf(vals[2, 2:]).all() and idx[2, 2:].tolist() == list(range(k - 2))
    # items 3, 10, 40 score the same and beat all others: lower index first; row 0 masks item 3
    assert idx[1, :3].tolist() == [3, 10, 40] and vals[1, 0] == vals[1, 1] == vals[1, 2]
    assert idx[0, :2].tolist() == [10, 40] and idx[3, :3].tolist() == [3, 10, 40]
    assert vals[1].tolist() == sorted(vals[1].tolist(), reverse=True)


def test_scores_topk_one_reads_a_states_mask_where_it_lies() -> None:
    """One user's scores and top-K with the mask given as a state's recent["item"] (a field of a
    record array: stride 17 bytes, not 4-byte aligned) equal `scores_topk_rows` given the same
    items as a plain int32 array."""
    from model.state import RECENT_DTYPE

    rng = np.random.default_rng(11)
    f32 = np.float32
    H, D, N, k = 16, 8, 300, 10
    h = rng.normal(0, 1, (1, H)).astype(f32)
    W_out, b_out = rng.normal(0, 1, (D, H)).astype(f32), rng.normal(0, 1, D).astype(f32)
    V, bias = rng.normal(0, 1, (N, D)).astype(f32), rng.normal(0, 0.1, N).astype(f32)
    plain = np.empty((1, D), f32), np.empty((1, k), np.int64), np.empty((1, k), f32)
    fused.scores_topk_rows(h, W_out, b_out, V, bias, np.zeros(0, np.int32), np.zeros(2, np.int64), k, *plain)
    recent = np.zeros(k + 3, RECENT_DTYPE)
    recent["item"][:k] = plain[1][0]  # mask the unmasked top-K, so the answer must change
    recent["item"][k:] = [0, 1, 2]
    mask = recent["item"]
    assert not mask.flags.aligned and mask.strides == (RECENT_DTYPE.itemsize,)
    ref = np.empty((1, D), f32), np.empty((1, k), np.int64), np.empty((1, k), f32)
    fused.scores_topk_rows(h, W_out, b_out, V, bias, mask.astype(np.int32), np.array([0, len(mask)]), k, *ref)
    one = np.empty((1, D), f32), np.empty((1, k), np.int64), np.empty((1, k), f32)
    fused.scores_topk_one(h, W_out, b_out, V, bias, mask, k, *one)
    for a, b in zip(one, ref):
        np.testing.assert_array_equal(a, b)
    assert not set(one[1][0].tolist()) & set(mask.tolist())
    np.testing.assert_array_equal(one[0], plain[0])  # the user vector does not depend on the mask
