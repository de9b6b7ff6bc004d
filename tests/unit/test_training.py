"""A tiny training run on a subset of ML-100k (real data, real text features): it must beat
popularity on that subset, and its artifact must load into the streaming runtime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from model import ProfileModel, load_ml100k
from model.train import TrainConfig, out_of_time, train
from stream.settings import Settings


def test_tiny_training_beats_pop_and_round_trips(tmp_path: Path) -> None:
    cache = Settings.from_env().cache_dir
    ds = load_ml100k(cache)
    cfg = TrainConfig(epochs=8, max_users=300, hidden=64, item_dim=32, text_dim=32, max_minutes=1.0, patience=8)
    res = train(ds, cfg, cache=cache, out=tmp_path / "model", progress=False)
    test = res.metrics["results"]["test"]
    assert test["LSTM"]["n"] >= 250
    assert test["LSTM"]["NDCG@10"] > test["Pop"]["NDCG@10"], test
    assert test["LSTM"]["HR@10"] > test["Pop"]["HR@10"], test
    m = ProfileModel.load(tmp_path / "model")
    assert m.model_version == res.artifact.model_version  # type: ignore[union-attr]
    assert res.artifact.manifest["metrics"]["best_epoch"] >= 1  # type: ignore[union-attr]
    # the manifest names the smoothing applied, not the unset default
    assert res.artifact.manifest["train_config"]["label_smoothing"] == cfg.smoothing > 0  # type: ignore[union-attr]
    hist = [e for e in ds.event_dicts(ds.time_order()) if e["user_id"] == "1"][:30]
    recs = m.recommend(hist, k=10)
    assert len(recs) == 10 and not {e["item_id"] for e in hist} & set(recs)
    assert np.isfinite(m.profile(hist)["vector"]).all()


def _future_loss_by_hand(logits, items, lengths, window: int, decay: float) -> float:
    """The multi-target loss written out position by position, as docs/model.md states it."""
    import math

    total = weight = 0.0
    row = 0
    for b in range(items.shape[0]):
        for t in range(int(lengths[b]) - 1):
            z = logits[row].tolist()
            log_norm = math.log(sum(math.exp(v) for v in z))
            for j in range(1, window + 1):
                if t + j < int(lengths[b]):
                    total -= decay ** (j - 1) * (z[int(items[b, t + j])] - log_norm)
                    weight += decay ** (j - 1)
            row += 1
    return total / weight


def test_future_loss_matches_its_definition_and_is_cross_entropy_at_window_1() -> None:
    import torch

    from model.train import future_loss

    gen = torch.Generator().manual_seed(3)
    B, L, N = 3, 7, 25
    items = torch.stack([torch.randperm(N, generator=gen)[:L] for _ in range(B)])
    lengths = torch.tensor([7, 4, 2])
    valid_pos = torch.arange(L)[None, :] < (lengths[:, None] - 1)
    targets = items[:, 1:][valid_pos[:, :-1]]
    logits = torch.randn(len(targets), N, generator=gen)
    one = future_loss(logits, items, lengths, valid_pos, 1, 0.5)
    assert torch.allclose(one, torch.nn.functional.cross_entropy(logits, targets), atol=1e-6)
    for window, decay in ((3, 0.5), (5, 1.0)):
        got = float(future_loss(logits, items, lengths, valid_pos, window, decay))
        assert abs(got - _future_loss_by_hand(logits, items, lengths, window, decay)) < 1e-5, (window, decay)
    # a future item masked at the position (a repeat of one seen before it) is left out, not -1e9
    masked = logits.clone()
    masked[0, int(items[0, 3])] = -1e9
    assert float(future_loss(masked, items, lengths, valid_pos, 3, 0.5)) < 100.0


def test_eval_scores_batched_by_length_match_one_user_at_a_time() -> None:
    """lstm_scores batches users by history length (less padding) and must put each user's row
    back in the evaluation set's order: compared with an unpadded pass per user."""
    import torch

    from model.data import chronological_split
    from model.evaluate import build_eval_set
    from model.lstm import ModelConfig, ProfileLSTM
    from model.train import _pad, _subset, _user_arrays, lstm_scores

    ds = _subset(load_ml100k(Settings.from_env().cache_dir), 60)
    es = build_eval_set(ds, chronological_split(ds), "test")
    lengths = [len(h) for h in es.histories]
    assert lengths != sorted(lengths)  # the set's order is not length order: rows must be put back
    torch.manual_seed(0)
    net = ProfileLSTM(ModelConfig(n_items=len(ds.item_ids), n_cats=len(ds.category_names), text_dim=0,
                                  use_text=False, hidden=32, item_dim=16), None)
    got = lstm_scores(net, ds, es, batch=7)
    with torch.inference_mode():
        for u, hist in enumerate(es.histories):
            items, types, vals, gaps, n = _pad([_user_arrays(ds, hist)])
            uvec, ivec = net(items, types, vals, gaps, n)
            np.testing.assert_allclose(got[u], net.score(uvec[0, -1], ivec).numpy(), rtol=1e-5, atol=1e-5)


def test_sampled_softmax_with_every_item_once_is_the_full_softmax() -> None:
    """With each item drawn exactly once and log Q = 0 the sampled loss must equal the masked
    full-softmax cross-entropy training uses by default: the target leads, its copy among the
    negatives is an accidental hit and left out, and seen items are masked in both."""
    import torch

    from model.train import _seen_mask, sampled_softmax_loss

    gen = torch.Generator().manual_seed(5)
    B, L, N, D = 3, 9, 30, 8
    items = torch.randint(0, N, (B, L), generator=gen)  # repeats included: some targets were seen
    lengths = torch.tensor([9, 6, 3])
    valid_pos = torch.arange(L)[None, :] < (lengths[:, None] - 1)
    targets = items[:, 1:][valid_pos[:, :-1]]
    user = torch.randn(len(targets), D, generator=gen)
    ivec, bias = torch.randn(N, D, generator=gen), torch.randn(N, generator=gen)
    full_mask = _seen_mask(items, lengths, valid_pos, targets, N)
    assert full_mask.any()
    full = torch.nn.functional.cross_entropy((user @ ivec.T + bias).masked_fill(full_mask, -1e9), targets)
    every = torch.arange(N)
    cols_mask = _seen_mask(items, lengths, valid_pos, targets, N, every)
    # the column mask is the full mask without the target exception
    assert torch.equal(cols_mask & ~full_mask, torch.nn.functional.one_hot(targets, N).bool() & cols_mask)
    sampled = sampled_softmax_loss(user, ivec, bias, targets, every, torch.zeros(N), cols_mask)
    assert torch.allclose(sampled, full, atol=1e-5), (float(sampled), float(full))
    # a constant log Q cancels; one that varies by item is a correction and changes the loss
    assert torch.allclose(sampled_softmax_loss(user, ivec, bias, targets, every, torch.full((N,), 2.5), cols_mask),
                          full, atol=1e-5)
    assert not torch.allclose(sampled_softmax_loss(user, ivec, bias, targets, every, torch.linspace(0, 3, N), cols_mask),
                              full, atol=1e-3)


def test_tiny_training_with_sampled_softmax_beats_pop(tmp_path: Path) -> None:
    cache = Settings.from_env().cache_dir
    ds = load_ml100k(cache)
    # 16 epochs: a sampled epoch costs about half a full one here, and learns less per epoch
    cfg = TrainConfig(epochs=16, max_users=300, hidden=64, item_dim=32, text_dim=32, max_minutes=1.0, patience=16,
                      negatives=128, refit_epochs=0)
    res = train(ds, cfg, cache=cache, out=None, progress=False)
    test = res.metrics["results"]["test"]
    assert test["LSTM"]["NDCG@10"] > test["Pop"]["NDCG@10"], test
    assert test["LSTM"]["HR@10"] > test["Pop"]["HR@10"], test


def test_train_cli_rejects_an_impossible_configuration_with_a_message(capsys) -> None:
    from stream.cli import main

    assert main(["train", "--negatives", "64", "--future-window", "3", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--negatives" in err and "Traceback" not in err
    assert main(["train", "--negatives", "-1", "--out", "unused"]) == 2
    assert main(["train", "--ema", "1", "--out", "unused"]) == 2
    assert main(["train", "--weight-decay", "-0.1", "--out", "unused"]) == 2


def test_smoothed_loss_spreads_eps_over_unmasked_items_only() -> None:
    """eps = 0 is the plain cross-entropy; without a mask it is torch's label smoothing; with one,
    masked items (logit -1e9) get no share, where torch's would make the loss astronomical."""
    import torch

    from model.train import smoothed_loss

    gen = torch.Generator().manual_seed(7)
    P, N = 6, 12
    logits = torch.randn(P, N, generator=gen)
    targets = torch.randint(0, N, (P,), generator=gen)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(smoothed_loss(logits, targets, None, 0.0), ce(logits, targets), atol=1e-6)
    assert torch.allclose(smoothed_loss(logits, targets, None, 0.1), ce(logits, targets, label_smoothing=0.1), atol=1e-6)
    allowed = torch.ones(P, N, dtype=torch.bool)
    allowed[:, :4] = False
    allowed[torch.arange(P), targets] = True
    masked = logits.masked_fill(~allowed, -1e9)
    got = smoothed_loss(masked, targets, allowed, 0.2)
    # by hand: row by row over the allowed items only
    want = []
    for r in range(P):
        ok = allowed[r].nonzero()[:, 0]
        lp = torch.log_softmax(logits[r, ok], dim=0)
        t = int((ok == targets[r]).nonzero()[0, 0])
        want.append(-(0.8 * lp[t] + 0.2 * lp.mean()))
    assert torch.allclose(got, torch.stack(want).mean(), atol=1e-5), (float(got), float(torch.stack(want).mean()))
    assert float(ce(masked, targets, label_smoothing=0.2)) > 1e6  # why torch's own cannot be used


def test_label_smoothing_rejects_the_losses_it_does_not_cover() -> None:
    import pytest

    from model.train import DEFAULT_LABEL_SMOOTHING, TrainConfigError

    # unset, it is the default for the plain full softmax and off for the losses it does not cover
    assert TrainConfig().smoothing == DEFAULT_LABEL_SMOOTHING > 0
    assert TrainConfig(negatives=64).smoothing == 0.0
    assert TrainConfig(future_window=3).smoothing == 0.0
    assert TrainConfig(label_smoothing=0.0).smoothing == 0.0
    with pytest.raises(TrainConfigError, match="label-smoothing"):
        TrainConfig(label_smoothing=0.1, negatives=64)
    with pytest.raises(TrainConfigError, match="label-smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_the_budget_stops_training_early_enough_for_the_refit_and_the_evaluation() -> None:
    # 10 s epochs, a 2-epoch refit, and the evaluation counted as one more: 40 s must be left
    assert not out_of_time(elapsed_s=250.0, epochs_done=25, budget_s=300.0, refit_epochs=2)  # 290 s
    assert out_of_time(elapsed_s=270.0, epochs_done=27, budget_s=300.0, refit_epochs=2)  # 310 s
    # without the refit two epochs' time is enough
    assert not out_of_time(elapsed_s=270.0, epochs_done=27, budget_s=300.0, refit_epochs=0)
    # an epoch that took the whole budget: nothing more fits
    assert out_of_time(elapsed_s=299.0, epochs_done=1, budget_s=300.0, refit_epochs=0)


def test_ema_update_is_the_moving_average_by_hand() -> None:
    import torch

    from model.train import ema_update

    avg, w = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 2.0])
    ema_update([(avg, w)], 0.75)
    assert torch.allclose(avg, torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * -2 + 0.25 * 2]))
    assert torch.equal(w, torch.tensor([3.0, 2.0]))  # the weights themselves are left alone


def test_training_with_averaged_weights_keeps_the_average_it_judged(tmp_path: Path) -> None:
    cache = Settings.from_env().cache_dir
    ds = load_ml100k(cache)
    cfg = TrainConfig(epochs=8, max_users=300, hidden=64, item_dim=32, text_dim=32, max_minutes=1.0, patience=8,
                      ema=0.9, refit_epochs=0)
    res = train(ds, cfg, cache=cache, out=tmp_path / "model", progress=False)
    valid, test = res.metrics["results"]["valid"], res.metrics["results"]["test"]
    assert test["LSTM"]["NDCG@10"] > test["Pop"]["NDCG@10"], test
    # with no refit the saved weights are the averaged copy of the best epoch: evaluated again they
    # give exactly the validation NDCG@10 early stopping saw for that epoch (the raw weights would not)
    best = res.history[res.metrics["best_epoch"] - 1]
    assert abs(valid["LSTM"]["NDCG@10"] - best["valid_NDCG@10"]) < 1e-9, (valid["LSTM"], best)
    assert res.artifact.manifest["train_config"]["ema"] == 0.9  # type: ignore[union-attr]
    raw = train(ds, replace(cfg, ema=0.0), cache=cache, out=None, progress=False)
    assert raw.history[0]["valid_NDCG@10"] != res.history[0]["valid_NDCG@10"]  # the option changes what is judged


def test_weight_decay_shrinks_matrices_and_embeddings_not_biases() -> None:
    """With zero gradients Adam's update is zero, so one AdamW step is the decay alone: every
    parameter of two or more dimensions is multiplied by 1 - lr * wd, the biases stay; with
    wd = 0 the optimiser is the plain Adam of before."""
    import torch

    from model.lstm import ModelConfig, ProfileLSTM
    from model.train import make_optimizer

    torch.manual_seed(0)
    net = ProfileLSTM(ModelConfig(n_items=7, n_cats=3, text_dim=0, item_dim=4, hidden=6, use_text=False), None)
    with torch.no_grad():
        net.bias.normal_()
        net.out.bias.normal_()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    assert type(make_optimizer(net, 1e-2, 0.0)) is torch.optim.Adam
    opt = make_optimizer(net, 0.5, 0.2)
    assert isinstance(opt, torch.optim.AdamW)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in net.named_parameters():
        want = before[name] * (1 - 0.5 * 0.2) if p.dim() >= 2 else before[name]
        assert torch.allclose(p.detach(), want, atol=1e-7), name
    decayed = {n for n, p in net.named_parameters() if p.dim() >= 2}
    assert {"id_emb.weight", "type_emb.weight", "out.weight", "lstm.weight_hh_l0"} <= decayed
    assert "bias" not in decayed and "out.bias" not in decayed


def test_input_dropout_is_the_input_rate_alone_and_unset_means_one_rate() -> None:
    import pytest
    import torch

    from model.lstm import ModelConfig, ModelConfigError, ProfileLSTM

    base = dict(n_items=5, n_cats=2, text_dim=0, use_text=False, dropout=0.5)
    both = ProfileLSTM(ModelConfig(**base), None)
    split = ProfileLSTM(ModelConfig(**base, input_dropout=0.2), None)
    assert (both.drop_in.p, both.drop.p) == (0.5, 0.5)
    assert (split.drop_in.p, split.drop.p) == (0.2, 0.5)
    # no weights of its own: the state dict, and so the artifact, is the same either way
    assert set(both.state_dict()) == set(split.state_dict())
    # unset and set to the same rate draw the same dropout masks: training is unchanged
    torch.manual_seed(0)
    a = ProfileLSTM(ModelConfig(**base), None)
    torch.manual_seed(0)
    b = ProfileLSTM(ModelConfig(**base, input_dropout=0.5), None)
    args = (torch.tensor([[1, 2, 3]]), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3), torch.ones(1, 3),
            torch.tensor([3]))
    torch.manual_seed(1)
    ua, _ = a(*args)
    torch.manual_seed(1)
    ub, _ = b(*args)
    assert torch.equal(ua, ub)
    assert ModelConfig.from_dict(ModelConfig(**base, input_dropout=0.2).to_dict()).input_dropout == 0.2
    with pytest.raises(ModelConfigError, match="input_dropout"):
        ModelConfig(**base, input_dropout=1.0)


def test_no_item_bias_keeps_the_bias_at_zero_through_training() -> None:
    import argparse

    import torch

    from model.cli import _train_config
    from model.lstm import ModelConfig, ProfileLSTM

    # the flag reaches the training config …
    flags = dict(no_text=False, no_id=False, no_text_whiten=False)
    assert _train_config(argparse.Namespace(no_item_bias=True, **flags)).item_bias is False
    assert _train_config(argparse.Namespace(no_item_bias=False, **flags)).item_bias is True
    # … and a model without the bias scores user · item alone, however it is trained
    torch.manual_seed(0)
    net = ProfileLSTM(ModelConfig(n_items=6, n_cats=2, text_dim=0, use_text=False, item_bias=False), None)
    with_bias = ProfileLSTM(ModelConfig(n_items=6, n_cats=2, text_dim=0, use_text=False), None)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    opt_b = torch.optim.Adam(with_bias.parameters(), lr=0.1)
    args = (torch.tensor([[1, 2, 3]]), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3), torch.ones(1, 3),
            torch.tensor([3]))
    for model, o in ((net, opt), (with_bias, opt_b)):
        for _ in range(3):
            u, v = model(*args)
            loss = torch.nn.functional.cross_entropy(model.score(u, v)[0], torch.tensor([2, 3, 4]))
            o.zero_grad()
            loss.backward()
            o.step()
    assert torch.count_nonzero(net.bias) == 0
    assert torch.count_nonzero(with_bias.bias) > 0  # the same training moves a bias that is on
    u, v = net(*args)
    assert torch.allclose(net.score(u, v), u @ v.T)


def test_tail_weights_ramp_from_the_first_predicting_position_to_the_last() -> None:
    """Sequences of 4, 2 and 3 events (3, 1 and 2 predicting positions; padded to 4): with B = 2
    the weights are 1, 2, 3 | 3 | 1, 3, in the order of `valid_pos[:, :-1]`, and B = 0 gives ones."""
    import torch

    from model.train import tail_weights

    lengths = torch.tensor([4, 2, 3])
    valid_pos = torch.arange(4)[None, :] < (lengths[:, None] - 1)
    assert tail_weights(lengths, valid_pos, 2.0).tolist() == [1.0, 2.0, 3.0, 3.0, 1.0, 3.0]
    assert tail_weights(lengths, valid_pos, 0.0).tolist() == [1.0] * 6


def test_smoothed_loss_with_weights_is_the_weighted_mean_of_the_rows() -> None:
    import torch

    from model.train import smoothed_loss

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 9, generator=gen)
    targets = torch.randint(0, 9, (5,), generator=gen)
    rows = torch.stack([smoothed_loss(logits[r:r + 1], targets[r:r + 1], None, 0.1) for r in range(5)])
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])
    got = smoothed_loss(logits, targets, None, 0.1, w)
    assert torch.allclose(got, (w * rows).sum() / w.sum(), atol=1e-6)
    assert torch.allclose(smoothed_loss(logits, targets, None, 0.1, torch.ones(5)), rows.mean(), atol=1e-6)
    assert not torch.allclose(got, rows.mean(), atol=1e-4)  # the weights do change it


def test_tail_weight_is_checked_and_recorded_in_the_manifest(tmp_path: Path) -> None:
    import pytest

    from model.train import TrainConfigError

    with pytest.raises(TrainConfigError, match="tail-weight"):
        TrainConfig(tail_weight=-1.0)
    with pytest.raises(TrainConfigError, match="tail-weight"):
        TrainConfig(tail_weight=1.0, negatives=64)
    cache = Settings.from_env().cache_dir
    ds = load_ml100k(cache)
    cfg = TrainConfig(epochs=2, max_users=120, hidden=32, item_dim=16, text_dim=16, max_minutes=1.0, refit_epochs=0,
                      tail_weight=1.0)
    res = train(ds, cfg, cache=cache, out=tmp_path / "model", progress=False)
    assert res.artifact.manifest["train_config"]["tail_weight"] == 1.0  # type: ignore[union-attr]
    plain = train(ds, replace(cfg, tail_weight=0.0), cache=cache, out=None, progress=False)
    assert plain.history[0]["loss"] != res.history[0]["loss"]  # the option changes what is trained


def test_train_and_seeds_flags_reach_the_training_config() -> None:
    from model.cli import _train_config
    from stream.cli import build_parser

    for cmd in (["train", "--out", "unused"], ["seeds", "--seeds", "0-2"]):
        args = build_parser().parse_args(cmd + ["--batch-users", "16", "--tail-weight", "1.5"])
        cfg = _train_config(args)
        assert (cfg.batch_users, cfg.tail_weight) == (16, 1.5), cmd
        default = _train_config(build_parser().parse_args(cmd))
        assert (default.batch_users, default.tail_weight) == (TrainConfig().batch_users, 0.0) == (32, 0.0)


def test_input_id_is_trained_into_the_artifact_and_the_stream_reads_it(tmp_path: Path) -> None:
    from model import ProfileModel
    from model.cli import _train_config
    from stream.cli import build_parser

    for cmd in (["train", "--out", "unused"], ["seeds", "--seeds", "0-2"]):  # the flag reaches both commands
        assert _train_config(build_parser().parse_args(cmd + ["--input-id"])).input_id is True, cmd
        assert _train_config(build_parser().parse_args(cmd)).input_id is False == TrainConfig().input_id
    cache = Settings.from_env().cache_dir
    ds = load_ml100k(cache)
    cfg = TrainConfig(epochs=2, max_users=120, hidden=32, item_dim=16, text_dim=16, max_minutes=1.0, refit_epochs=0,
                      input_id=True)
    res = train(ds, cfg, cache=cache, out=tmp_path / "model", progress=False)
    assert res.artifact is not None and res.artifact.config.input_id
    w = res.artifact.weights["in_id_emb.weight"]
    assert w.shape == (len(ds.item_ids), 16) and float(abs(w).max()) > 0  # zero at the start, then trained
    m = ProfileModel.load(tmp_path / "model")  # the artifact round trip builds the input side back
    assert m.config.input_id and m.net.in_id_emb.weight.shape == (len(ds.item_ids), 16)
