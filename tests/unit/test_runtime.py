from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model import Pending, ProfileModel, validate_event
from model.lstm import TYPE_INDEX, gap_feature, value_feature
from tests.conftest import make_artifact, synthetic_history


def _events(history: list[dict[str, object]]) -> list:
    return [validate_event(e, now=math.inf) for e in history]


def test_streaming_step_equals_training_forward(small_artifact: Path) -> None:
    """The per-event step and nn.LSTM's full-sequence pass are the same math on the same weights."""
    _assert_step_equals_forward(ProfileModel.load(small_artifact))


def test_streaming_step_equals_training_forward_with_input_side_item_vectors(tmp_path: Path) -> None:
    """With `input_id` the LSTM reads item vectors of their own (output vector + an input-side ID
    embedding); the step's precomputed input projection must use them, not the output vectors."""
    m = ProfileModel.load(make_artifact(tmp_path / "model", input_id=True))
    assert m.config.input_id
    _assert_step_equals_forward(m)
    # the input-side part is really read: without it the step's input projection differs
    D = m.config.item_dim
    with torch.no_grad():
        tied = m.item_vecs @ m.net.lstm.weight_ih_l0[:, :D].T
    assert float((m.p_item - tied).abs().max()) > 1e-2


def _assert_step_equals_forward(m: ProfileModel) -> None:
    hist = _events(synthetic_history("u1", 300))
    state = m.initial_state()
    vecs = []
    for ev in hist:  # strictly one event at a time, as the stream with batch size 1
        m.apply([(state, [Pending(ev)])])
        vecs.append(m.outputs([("u1", state)], k=3)[0][0]["vector"])
    items = torch.tensor([[m.item_index[e.item_id] for e in hist]])
    types = np.array([[TYPE_INDEX[e.type] for e in hist]])
    vals = value_feature(types, np.array([[math.nan if e.value is None else e.value for e in hist]]))
    ts = np.array([e.ts for e in hist])
    gaps = gap_feature(np.concatenate([[0.0], np.diff(ts)]))[None, :]
    with torch.no_grad():
        user_vecs, _ = m.net(items, torch.from_numpy(types), torch.from_numpy(vals), torch.from_numpy(gaps),
                             torch.tensor([len(hist)]))
    np.testing.assert_allclose(np.array(vecs), user_vecs[0].numpy(), atol=1e-5, rtol=0)


def test_batched_apply_equals_one_user_at_a_time(small_artifact: Path) -> None:
    m = ProfileModel.load(small_artifact)
    hists = {f"u{j}": _events(synthetic_history(f"u{j}", 20 + 7 * j, seed=j)) for j in range(6)}
    states = {u: m.initial_state() for u in hists}
    # micro-batches of 16 interleaved events across users, as the profile agent sees them
    stream = sorted(((e.ts, u, e) for u, evs in hists.items() for e in evs), key=lambda t: t[0])
    for i in range(0, len(stream), 16):
        chunk: dict[str, list[Pending]] = {}
        for _, u, e in stream[i:i + 16]:
            chunk.setdefault(u, []).append(Pending(e))
        m.apply([(states[u], evs) for u, evs in chunk.items()])
    for u, evs in hists.items():
        offline = m.profile(evs)
        online = m.outputs([(u, states[u])], k=5)[0][0]
        assert offline["events_seen"] == online["events_seen"] == len(evs)
        np.testing.assert_allclose(offline["vector"], online["vector"], atol=1e-5, rtol=0)
        assert offline["tags"] == pytest.approx(online["tags"], abs=1e-4)


def test_duplicates_by_event_id_and_source_position_are_applied_once(small_artifact: Path) -> None:
    m = ProfileModel.load(small_artifact)
    evs = _events(synthetic_history("u1", 10))
    s = m.initial_state()
    m.apply([(s, [Pending(e, 0, 100 + j) for j, e in enumerate(evs)])])
    h = s.h.copy()
    res = m.apply([(s, [Pending(e, 0, 100 + j) for j, e in enumerate(evs)])])  # redelivery after a crash
    assert res[0].applied == 0 and res[0].duplicates == 10
    res = m.apply([(s, [Pending(evs[3], 1, 5)])])  # same event_id, new position (producer retry)
    assert res[0].applied == 0 and res[0].duplicates == 1
    np.testing.assert_array_equal(s.h, h)
    assert s.events_seen == 10


@pytest.mark.parametrize("batches", [1, 7], ids=["one-batch", "batches-of-50"])
def test_a_long_run_of_normalize_copies_is_skipped_by_raw_position(small_artifact: Path, batches: int) -> None:
    # 300 events of one user, then the normalize stage forwards all 300 again (a crash before its
    # raw offsets were committed): same ids and raw positions, new offsets of `events`. The
    # 256-id window alone let every copy through (each applied copy pushed out the id the next
    # copy needed); the raw marks skip them all, and the next new event is applied.
    m = ProfileModel.load(small_artifact)
    evs = _events([{**e, "event_id": f"e{j}"} for j, e in enumerate(synthetic_history("u1", 301))])
    s = m.initial_state()
    originals = [Pending(e, 0, 1000 + j, 2, 500 + j) for j, e in enumerate(evs[:300])]
    copies = [Pending(e, 0, 2000 + j, 2, 500 + j) for j, e in enumerate(evs[:300])]
    size = math.ceil(300 / batches)
    for chunk in (originals, copies):
        for i in range(0, 300, size):
            m.apply([(s, chunk[i:i + size])])
    assert s.events_seen == 300
    res = m.apply([(s, [Pending(evs[300], 0, 2300, 2, 800), Pending(evs[0], 0, 2301, 3, 9)])])
    assert res[0].applied == 2  # a new raw offset, and an unknown raw partition (a different raw event)
    assert s.events_seen == 302
    assert sorted(zip(s.raw_marks["partition"].tolist(), s.raw_marks["offset"].tolist())) == [(2, 800), (3, 9)]


def test_unknown_item_is_rejected_and_others_applied(small_artifact: Path) -> None:
    m = ProfileModel.load(small_artifact)
    good = _events(synthetic_history("u1", 3))
    bad = validate_event({"user_id": "u1", "item_id": "nope", "type": "view", "ts": 900000000}, now=math.inf)
    s = m.initial_state()
    res = m.apply([(s, [Pending(good[0]), Pending(bad), Pending(good[1])])])
    assert res[0].applied == 2
    assert len(res[0].rejected) == 1 and "not in the catalogue" in res[0].rejected[0][1]


def test_recommendations_exclude_recent_items(small_artifact: Path) -> None:
    m = ProfileModel.load(small_artifact)
    hist = synthetic_history("u1", 6)
    recs = m.recommend(hist, k=m.n_items)
    seen = {e["item_id"] for e in hist}
    assert len(recs) == m.n_items and not seen & set(recs[: m.n_items - len(seen)])
    assert seen.isdisjoint(recs[:10])


def test_state_from_another_model_version_is_rewarmed(tmp_path: Path, small_artifact: Path) -> None:
    a = ProfileModel.load(small_artifact)
    b = ProfileModel.load(make_artifact(tmp_path / "other", seed=7))
    assert a.model_version != b.model_version
    evs = _events(synthetic_history("u1", 5))  # fewer than recent_len: re-warming sees the whole history
    s = a.initial_state()
    a.apply([(s, [Pending(e) for e in evs])])
    b.apply([(s, [])])
    assert s.model_version == b.model_version
    np.testing.assert_allclose(s.h, b.replay_history(evs)[1].h, atol=1e-6)


@pytest.mark.parametrize("n_users", [5, 1])
@pytest.mark.parametrize("blas_min", [0, 1])
def test_fused_small_batch_path_equals_torch_path(small_artifact: Path, monkeypatch: pytest.MonkeyPatch,
                                                  blas_min: int, n_users: int) -> None:
    """Small CPU batches run the step and scoring through the compiled kernels of model/fused.py
    (model.runtime.FUSED_MAX_BATCH); they must give what the torch path gives: same vectors and
    tags, same recommendations up to float32 ties. Both ways the kernels run: per-row loops
    (blas_min 0) and with the products from BLAS (blas_min 1: every batch, as from
    FUSED_BLAS_MIN_BATCH users on). One user alone takes the batch-1 path: its state's arrays
    passed without a copy, its mask read from the state's record array (`fused.scores_topk_one`)."""
    import model.runtime as runtime

    monkeypatch.setattr(runtime, "FUSED_BLAS_MIN_BATCH", blas_min)

    def run(fused_max: int) -> tuple[list[dict], list[dict], int]:
        monkeypatch.setattr(runtime, "FUSED_MAX_BATCH", fused_max)
        m = ProfileModel.load(small_artifact)
        calls = 0
        fused_step = m.step_fused

        def counted(*a: object) -> object:
            nonlocal calls
            calls += 1
            return fused_step(*a)

        m.step_fused = counted  # type: ignore[method-assign]
        hists = {f"u{j}": _events(synthetic_history(f"u{j}", 15 + 5 * j, seed=10 + j)) for j in range(n_users)}
        states = {u: m.initial_state() for u in hists}
        for r in range(0, 40, 3):  # rounds of up to 3 events per user, users dropping out as they run dry
            m.apply([(states[u], [Pending(e) for e in evs[r:r + 3]]) for u, evs in hists.items() if evs[r:r + 3]])
        outs = m.outputs(list(states.items()), k=12)
        return [p for p, _ in outs], [r for _, r in outs], calls

    p_f, r_f, calls_f = run(64)
    p_t, r_t, calls_t = run(0)
    assert calls_f > 0 and calls_t == 0 and len(p_f) == len(p_t) == n_users
    for a, b in zip(p_f, p_t):
        np.testing.assert_allclose(a["vector"], b["vector"], atol=1e-5, rtol=0)
        assert a["tags"] == pytest.approx(b["tags"], abs=1e-4) and a["events_seen"] == b["events_seen"]
    for a, b in zip(r_f, r_t):
        sa = [it["score"] for it in a["items"]]
        sb = [it["score"] for it in b["items"]]
        np.testing.assert_allclose(sa, sb, atol=1e-5, rtol=0)
        assert sa == sorted(sa, reverse=True)
        # the same items, except where two neighbours' scores are within rounding of each other
        for j, (x, y) in enumerate(zip(a["items"], b["items"])):
            near_tie = any(abs(sa[j] - sa[i]) < 1e-5 for i in (j - 1, j + 1) if 0 <= i < len(sa))
            assert x["item_id"] == y["item_id"] or near_tie
            assert x.get("reason") == y.get("reason") or near_tie


def test_stack_rows_makes_one_float32_row_a_view_and_copies_the_rest() -> None:
    from model.runtime import stack_rows

    a = np.arange(6, dtype=np.float32)
    one = stack_rows([a])
    assert one.shape == (1, 6) and np.shares_memory(one, a)  # no copy on the batch-1 path
    for rows in ([a, a + 1], [a.astype(np.float64)], [a[::2]]):  # many rows, another dtype, strided
        out = stack_rows(rows)
        assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (len(rows), len(rows[0]))
        assert not any(np.shares_memory(out, r) for r in rows)
        np.testing.assert_array_equal(out, np.array(rows, np.float64))
