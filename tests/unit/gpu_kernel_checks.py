"""Checks of model/gpu_kernels.py, run by tests/unit/test_gpu_kernels.py in a child process with
TRITON_INTERPRET=1 (Triton reads it when the kernels are defined), so the kernels run on the CPU
under Triton's interpreter. Each check raises AssertionError on a mismatch.
Usage: python -m tests.unit.gpu_kernel_checks CHECK ARTIFACT_DIR"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from model import Pending, ProfileModel, gpu_kernels, validate_event
from tests.conftest import make_artifact, synthetic_history


def _inputs(m: ProfileModel, B: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, m.hidden, generator=g) * 0.5, torch.randn(B, m.hidden, generator=g),
            torch.randint(0, m.n_items, (B,), generator=g), torch.randint(0, 6, (B,), generator=g),
            torch.randn(B, generator=g), torch.rand(B, generator=g) * 3)


def lstm(tmp: Path) -> None:
    """The step kernel equals ProfileModel.step (hidden 24: not a power of two, so masked lanes)."""
    m = ProfileModel.load(make_artifact(tmp / "a", n_items=300), fused_kernels=False)
    args = _inputs(m, 21, 0)  # 21 rows: a full program of 16 and a partial one
    h2, c2 = gpu_kernels.lstm_step(m, *args)
    rh, rc = m.step(*args)
    np.testing.assert_allclose(h2.numpy(), rh.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c2.numpy(), rc.numpy(), atol=1e-5, rtol=0)


def topk(tmp: Path) -> None:
    """The scores → top-K kernel equals user_vectors + scores + ProfileModel.topk, exclusions of
    0 to 40 items per row, over a catalogue of 300 (three tiles, the last one partial)."""
    m = ProfileModel.load(make_artifact(tmp / "a", n_items=300), fused_kernels=False)
    h = _inputs(m, 21, 1)[0]
    rng = np.random.default_rng(0)
    excl = [rng.choice(m.n_items, int(rng.integers(0, 41)), replace=False) for _ in range(21)]
    excl[3] = np.zeros(0, np.int64)
    u, idx, val = gpu_kernels.scores_topk(m, h, gpu_kernels.pad_exclude(excl, torch.device("cpu")), 10)
    ri, rv = m.topk(m.scores(h), excl, 10)
    np.testing.assert_allclose(u.numpy(), m.user_vectors(h).numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(idx.numpy(), ri)
    np.testing.assert_allclose(val.numpy(), rv, atol=1e-5, rtol=0)
    for r, e in enumerate(excl):
        assert not set(idx[r].tolist()) & set(e.tolist()), f"row {r} returned an excluded item"


def ties(tmp: Path) -> None:
    """Equal scores rank by item index; a row with fewer allowed items than k ends in -1 / -inf."""
    n, D, H = 20, 16, 16
    rng = np.random.default_rng(3)
    V = rng.integers(-3, 4, (n, D)).astype(np.float32)  # small integers: every score is exact
    V[[7, 15]] = V[3]  # three items with identical vectors: identical scores
    fake = SimpleNamespace(item_vecs=torch.from_numpy(V), item_bias=torch.zeros(n), n_items=n,
                           W_out_T=torch.eye(H, D), b_out=torch.zeros(D))
    h = torch.from_numpy(np.stack([V[3], -V[3]]))  # row 0 ranks items 3, 7, 15 first; row 1 last
    excl = [np.array([0, 1]), np.arange(15)]  # row 1: only 15..19 allowed
    _, idx, val = gpu_kernels.scores_topk(fake, h, gpu_kernels.pad_exclude(excl, torch.device("cpu")), 10)
    s = V @ V[3]
    for r, sign in ((0, 1.0), (1, -1.0)):
        allowed = [i for i in range(n) if i not in set(excl[r].tolist())]
        want = sorted(allowed, key=lambda i: (-sign * s[i], i))[:10]  # score desc, then index asc
        got = [i for i in idx[r].tolist() if i >= 0]
        assert got == want, (r, got, want)
    assert idx[0, :3].tolist() == [3, 7, 15]
    assert idx[1, 5:].tolist() == [-1] * 5 and bool(torch.isinf(val[1, 5:]).all())


def runtime(tmp: Path) -> None:
    """ProfileModel with the kernels switched on (as on CUDA) emits what the torch path emits:
    micro-batches where users have different event counts (partial rounds), and a catalogue
    barely larger than the history, whose short rows fall back to torch."""
    for n_items, n_ev in ((300, (9, 4, 1, 6)), (12, (8, 8, 3, 8))):
        art = make_artifact(tmp / f"a{n_items}", n_items=n_items)
        plain = ProfileModel.load(art, fused_kernels=False)
        kern = ProfileModel.load(art, fused_kernels=False)
        kern._gk = gpu_kernels
        outs = []
        for m in (plain, kern):
            states = [m.initial_state() for _ in n_ev]
            batch = []
            for u, (st, n) in enumerate(zip(states, n_ev)):
                hist = [e for e in synthetic_history(f"u{u}", 40, n_items=n_items, seed=u)][:n]
                batch.append((st, [Pending(validate_event(e, now=math.inf)) for e in hist]))
            m.apply(batch)
            outs.append(m.outputs([(f"u{u}", s) for u, s in enumerate(states)], k=10))
        for (p0, r0), (p1, r1) in zip(*outs):
            np.testing.assert_allclose(p0["vector"], p1["vector"], atol=1e-5, rtol=0)
            assert [i["item_id"] for i in r0["items"]] == [i["item_id"] for i in r1["items"]]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        globals()[sys.argv[1]](Path(d))
    print("ok", sys.argv[1])
