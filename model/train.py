"""Offline training of the LSTM profile model (full-softmax next-item prediction), early stopped
on validation NDCG@10, then evaluated on test beside the baselines and saved as an artifact."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .artifact import Artifact, save_artifact
from .data import Dataset, Split, chronological_split
from .errors import ModelError
from .evaluate import (EvalSet, baseline_scorers, build_eval_set, evaluate_scorer, metrics_from_ranks,
                       popularity_buckets, rank_of_targets, user_groups)
from .features import encode_texts, reduce_features
from .init_random import catalogue_of
from .lstm import ModelConfig, ProfileLSTM, gap_feature, value_feature

__all__ = ["TrainConfig", "TrainResult", "train", "seed_study", "parse_seeds", "sampled_softmax_loss", "smoothed_loss",
           "out_of_time", "ema_update", "make_optimizer"]

SPLIT_RULE = ("per user: stable sort by timestamp (file order breaks ties); last event = test, second last = "
              "validation, rest = training; users with < 5 events: training only")


#: the validation row of a model refit on the validation events (`TrainConfig.refit_epochs`)
REFIT_LABEL = "LSTM after refit (not held out)"


#: label smoothing of the default full-softmax loss: candidate I of docs/model.md's experiment log,
#: adopted on validation NDCG@10 (seeds 0-2: 0.1506 against 0.1463 without it)
DEFAULT_LABEL_SMOOTHING = 0.1


class TrainConfigError(ModelError, ValueError):
    """A training configuration that cannot run; the message names the setting."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50
    batch_users: int = 32
    lr: float = 3e-3
    # "cosine": anneal the learning rate to 0 over `epochs` (per optimiser step); with a fixed epoch
    # count that fits the time budget this converges instead of being cut off mid-descent.
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # Decoupled weight decay (AdamW) on the weight matrices and embeddings, not on biases (the item
    # bias carries popularity); 0 = off, plain Adam as before. Each step shrinks those weights by
    # lr * weight_decay, so ID embeddings of items rarely in a batch drift back towards their text
    # vectors (docs/model.md, candidates N and O).
    weight_decay: float = 0.0
    patience: int = 10
    # Chosen like every other setting, on validation: of seeds 0–4 of this configuration, seed 1
    # had the best validation NDCG@10 (README "Seeds"; the test spread across seeds is there too).
    seed: int = 1
    item_dim: int = 64
    hidden: int = 128
    text_dim: int = 64
    dropout: float = 0.5
    # dropout on the LSTM's input only; None = `dropout` on input and output (docs/model.md, candidates P, Q)
    input_dropout: float | None = None
    use_id: bool = True
    use_text: bool = True
    item_bias: bool = True  # a learned per-item score bias (popularity); False = score is user · item alone
    input_id: bool = False  # ModelConfig.input_id: a separate input-side ID embedding (off by default; docs/model.md "Input-side item vectors")
    reducer: Literal["pca", "autoencoder"] = "pca"
    # True: every reduced text column gets unit variance; False: one common scale, so columns
    # keep their relative variance (docs/model.md, "Experiment log")
    text_whiten: bool = True
    max_minutes: float = 5.0
    max_users: int | None = None  # train on the first N users only (tests, quick looks)
    mask_seen: bool = True  # softmax over items the user has not interacted with yet, as evaluation ranks
    threads: int = 2
    # after early stopping: epochs over training + validation events (0 = off), at lr * refit_lr_scale
    refit_epochs: int = 2
    refit_lr_scale: float = 1 / 3
    # position t also learns the items at t+2 … t+future_window, weighted future_decay^(j-1)
    # (1 = plain next-item loss). The order of events inside one rating session says little, so
    # the next few items are all evidence of what comes next (docs/model.md).
    future_window: int = 1
    future_decay: float = 0.5
    # 0 = full softmax over the catalogue (the default). K > 0 = sampled softmax: each batch
    # scores its positions against the target and K negatives drawn (with replacement) from
    # `neg_sampler`, with the logQ correction; for catalogues too big to score in full per step.
    negatives: int = 0
    neg_sampler: Literal["uniform", "popularity"] = "popularity"  # popularity: (training count + 1)^0.75
    # Label smoothing of the full-softmax next-item loss: the target keeps 1 - eps of the label,
    # the items the position may rank (not masked) share eps; 0 = plain cross-entropy. None = the
    # default: DEFAULT_LABEL_SMOOTHING with that loss, 0 with --negatives or --future-window, which
    # it does not cover. Adopted on validation (docs/model.md, candidate I).
    label_smoothing: float | None = None
    # Polyak averaging: 0 = off. D in (0, 1): after every optimiser step the averaged copy moves
    # to D * average + (1 - D) * weights; validation, early stopping and the kept weights use the
    # average, and the refit starts from it (docs/model.md, candidates L and M).
    ema: float = 0.0
    # Weight of the end of each sequence: predicting position t of a user's n weighs
    # 1 + tail_weight * t / (n - 1) in the full-softmax loss (n = 1: 1 + tail_weight), so the last
    # position counts 1 + tail_weight times the first; 0 = every position alike (docs/model.md,
    # "Weight on the end of each sequence", candidates U and V).
    tail_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_users < 1 or self.epochs < 1:
            raise TrainConfigError("--epochs and batch_users must be >= 1")
        if self.future_window < 1 or not 0.0 < self.future_decay <= 1.0:
            raise TrainConfigError("--future-window must be >= 1 and --future-decay in (0, 1]")
        if self.negatives < 0:
            raise TrainConfigError("--negatives must be >= 0 (0 = full softmax)")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise TrainConfigError("--label-smoothing must be in [0, 1)")
        if self.label_smoothing and (self.negatives or self.future_window > 1):
            raise TrainConfigError("--label-smoothing works with the plain full-softmax loss only: drop --negatives "
                                   "and --future-window")
        if not self.weight_decay >= 0.0:
            raise TrainConfigError("--weight-decay must be >= 0 (0 = off)")
        if not 0.0 <= self.ema < 1.0:
            raise TrainConfigError("--ema must be in [0, 1) (0 = off; e.g. 0.99)")
        if not self.tail_weight >= 0.0:
            raise TrainConfigError("--tail-weight must be >= 0 (0 = every position alike)")
        if self.tail_weight and (self.negatives or self.future_window > 1):
            raise TrainConfigError("--tail-weight works with the full-softmax next-item loss only: drop --negatives "
                                   "and --future-window")
        if self.negatives and self.future_window > 1:
            raise TrainConfigError("--future-window > 1 (the next-N-items loss) needs the full softmax: drop --negatives or set it to 0")

    @property
    def smoothing(self) -> float:
        """The label smoothing training applies (`label_smoothing`, its None resolved)."""
        if self.label_smoothing is not None:
            return self.label_smoothing
        return 0.0 if self.negatives or self.future_window > 1 else DEFAULT_LABEL_SMOOTHING

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded (manifest, seed study): the label smoothing as applied."""
        return {**asdict(self), "label_smoothing": self.smoothing}


@dataclass
class TrainResult:
    artifact: Artifact | None
    metrics: dict[str, Any]
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _user_arrays(ds: Dataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    items = ds.items[idx]
    types = ds.types[idx]
    vals = value_feature(types, ds.values[idx])
    ts = ds.ts[idx]
    gaps = gap_feature(np.concatenate([[0.0], np.diff(ts)]))
    return items, types, vals, gaps


def _length_batches(seqs: Mapping[str, np.ndarray], users: Iterable[str], size: int) -> list[list[str]]:
    """`users` in batches of `size`, sorted by sequence length (stable) so a batch pads little."""
    ordered = sorted(users, key=lambda u: len(seqs[u]))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def _pad(seqs: Sequence[tuple[np.ndarray, ...]]) -> tuple[torch.Tensor, ...]:
    L = max(len(s[0]) for s in seqs)
    B = len(seqs)
    items = np.zeros((B, L), np.int64)
    types = np.zeros((B, L), np.int64)
    vals = np.zeros((B, L), np.float32)
    gaps = np.zeros((B, L), np.float32)
    for b, (it, ty, va, ga) in enumerate(seqs):
        n = len(it)
        items[b, :n], types[b, :n], vals[b, :n], gaps[b, :n] = it, ty, va, ga
    lengths = torch.tensor([len(s[0]) for s in seqs])
    return torch.from_numpy(items), torch.from_numpy(types), torch.from_numpy(vals), torch.from_numpy(gaps), lengths


def _seen_mask(items: torch.Tensor, lengths: torch.Tensor, valid_pos: torch.Tensor, targets: torch.Tensor,
               n_items: int, cols: torch.Tensor | None = None) -> torch.Tensor:
    """(P, N) True where an item was already seen at or before the predicting position (the
    target itself excepted): training ranks like evaluation, among items not yet interacted with.
    With `cols` (K,) item ids: the (P, K) mask of those items only (a column equal to the target
    is not excepted: `sampled_softmax_loss` masks it as an accidental hit anyway)."""
    B, L = items.shape
    first = torch.full((B, n_items), L, dtype=torch.int64)  # first position of each item per user
    pos = torch.arange(L).expand(B, L)
    pos = torch.where(pos < lengths[:, None], pos, torch.full_like(pos, L))  # padding never counts
    first.scatter_reduce_(1, items, pos, reduce="amin")
    if cols is not None:
        first = first[:, cols]  # (B, K)
    seen = first[:, None, :] <= torch.arange(L - 1)[None, :, None]  # (B, L-1, N or K)
    seen = seen[valid_pos[:, :-1]]  # (P, N or K)
    if cols is None:
        seen[torch.arange(len(targets)), targets] = False
    return seen


def sampled_softmax_loss(user: torch.Tensor, item_vecs: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                         negatives: torch.Tensor, log_q: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each row of `user` (P, D) over its target and the shared negatives
    (K,), every logit less log Q (`log_q` (N,): log of the expected count of the item in the
    sample), which makes the sampled softmax an unbiased stand-in for the full one. A negative
    equal to the row's target (an accidental hit) and those in `masked` (P, K) are left out.
    With every item as a negative once and log Q = 0 this is the full-softmax cross-entropy."""
    pos = (user * item_vecs[targets]).sum(-1) + bias[targets] - log_q[targets]  # (P,)
    neg = user @ item_vecs[negatives].T + bias[negatives] - log_q[negatives]  # (P, K)
    drop = negatives[None, :] == targets[:, None]
    if masked is not None:
        drop = drop | masked
    logits = torch.cat([pos[:, None], neg.masked_fill(drop, -1e9)], dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.int64))


def tail_weights(lengths: torch.Tensor, valid_pos: torch.Tensor, tail: float) -> torch.Tensor:
    """(P,) weight of each predicting position, in the order of `valid_pos[:, :-1]`: position t of
    a sequence with n predicting positions (its length less one) weighs 1 + tail * t / (n - 1),
    1 + tail when n = 1."""
    L = valid_pos.shape[1]
    n = (lengths - 1).clamp(min=1)[:, None].to(torch.float32)  # (B, 1)
    t = torch.arange(L - 1, dtype=torch.float32)[None, :]
    ramp = torch.where(n > 1, t / (n - 1).clamp(min=1), torch.ones_like(t))
    return (1.0 + tail * ramp)[valid_pos[:, :-1]]


def smoothed_loss(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor | None, eps: float,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean label-smoothed cross-entropy: (1 - eps) of each row's label on its target, eps spread
    evenly over the items the row may rank (`allowed` (P, N); None = all). Masked items get no
    share: their logits are -1e9, and torch's `label_smoothing` would put mass on them. With
    eps = 0 this is the plain cross-entropy. `weights` (P,): the weighted mean over the rows."""
    logp = torch.log_softmax(logits, dim=1)
    nll = -logp.gather(1, targets[:, None])[:, 0]
    if allowed is None:
        uniform = -logp.mean(dim=1)
    else:
        uniform = -(logp * allowed).sum(dim=1) / allowed.sum(dim=1)
    per_row = (1.0 - eps) * nll + eps * uniform
    if weights is None:
        return per_row.mean()
    return (weights * per_row).sum() / weights.sum()


def future_loss(logits: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor, valid_pos: torch.Tensor,
                window: int, decay: float) -> torch.Tensor:
    """Cross-entropy of each predicting position against the next `window` items of its
    sequence, the j-th weighted decay^(j-1), averaged over the weights present (a position near
    the end has fewer future items). `logits` (P, N) are the rows of `valid_pos[:, :-1]`; with
    window 1 this is the mean next-item cross-entropy. A future item that is masked at the
    position (a repeat of one seen before it) is left out."""
    logp = torch.log_softmax(logits, dim=1)
    B, L = items.shape
    rows = valid_pos[:, :-1]
    pos = torch.arange(L - 1)[None, :]
    total = logits.new_zeros(())
    weight = logits.new_zeros(())
    for j in range(1, window + 1):
        target = torch.nn.functional.pad(items[:, j:], (0, j - 1))[rows]  # item at t+j, (P,)
        ok = (pos + j < lengths[:, None])[rows]
        lp = logp.gather(1, target[:, None])[:, 0]
        ok = ok & (lp > -1e8)
        w = decay ** (j - 1)
        total = total - w * torch.where(ok, lp, torch.zeros_like(lp)).sum()
        weight = weight + w * ok.sum()
    return total / weight.clamp(min=1.0)


def lstm_scores(net: ProfileLSTM, ds: Dataset, es: EvalSet, *, batch: int = 128) -> np.ndarray:
    """(U, N) scores after each evaluated user's history (full-sequence pass, eval mode).
    Users are batched by history length, as in training: in file order a batch of 128 pads to
    its longest history, ≈ 6× the positions on ML-100k, and this pass ran every epoch."""
    net.eval()
    out = np.zeros((len(es.users), net.cfg.n_items), np.float32)
    order = sorted(range(len(es.users)), key=lambda u: len(es.histories[u]))
    with torch.inference_mode():
        for i in range(0, len(order), batch):
            rows = order[i:i + batch]
            seqs = [_user_arrays(ds, es.histories[u]) for u in rows]
            items, types, vals, gaps, lengths = _pad(seqs)
            uvec, ivec = net(items, types, vals, gaps, lengths)
            last = uvec[torch.arange(len(seqs)), lengths - 1]  # (B, D)
            out[rows] = net.score(last, ivec).numpy()
    return out


def evaluate_model(net: ProfileLSTM, ds: Dataset, split: Split, eval_sets: dict[str, EvalSet] | None = None, *,
                   baselines: bool = True) -> dict[str, Any]:
    """{valid|test: {model name: metrics with popularity buckets (and user groups, where the
    dataset has user attributes)}} for the LSTM and, in the same run, the baselines (built once,
    used for both sets)."""
    eval_sets = eval_sets or {w: build_eval_set(ds, split, w) for w in ("valid", "test")}
    buckets = popularity_buckets(ds, split)
    scorers = {"LSTM": lambda e: lstm_scores(net, ds, e)}
    if baselines:
        scorers.update(baseline_scorers(ds, split))
    return {which: {name: evaluate_scorer(sc, es, buckets, user_groups(es.users, ds.user_attrs))
                    for name, sc in scorers.items()}
            for which, es in eval_sets.items()}


def make_optimizer(net: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam over the trainable parameters; with weight_decay > 0, AdamW with the decay on every
    parameter of two or more dimensions (weight matrices, embeddings) and none on the biases."""
    params = [p for p in net.parameters() if p.requires_grad]
    if not weight_decay:
        return torch.optim.Adam(params, lr=lr)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


@torch.no_grad()
def ema_update(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], decay: float) -> None:
    """One step of the exponential moving average: average <- decay * average + (1 - decay) * weights."""
    for avg, w in pairs:
        avg.mul_(decay).add_(w.detach(), alpha=1.0 - decay)


def out_of_time(elapsed_s: float, epochs_done: int, budget_s: float, refit_epochs: int) -> bool:
    """True when another epoch, then the refit and the final evaluation, would end past the budget.

    The time an epoch takes is the mean so far (validation pass included); the refit costs one per
    refit epoch and the final evaluation is counted as one more, so a run that stops here is
    expected (not guaranteed: epochs vary) to end within `budget_s`: the budget bounds the whole run,
    not only the epochs."""
    epoch_s = elapsed_s / max(1, epochs_done)
    return elapsed_s + epoch_s * (2 + refit_epochs) > budget_s


def _code_version() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("profilestream")
    except PackageNotFoundError:
        v = "dev"
    return f"{v}+{rev}" if rev else v


def _subset(ds: Dataset, max_users: int | None) -> Dataset:
    if max_users is None:
        return ds
    keep_users = set(sorted(set(ds.users.tolist()), key=lambda u: (len(u), u))[:max_users])
    m = np.array([u in keep_users for u in ds.users.tolist()])
    return Dataset(ds.name, ds.users[m], ds.items[m], ds.types[m], ds.values[m], ds.ts[m], ds.item_ids, ds.item_text,
                   ds.titles, ds.item_cats, ds.category_names, f"{ds.source_hash}-u{max_users}",
                   {u: a for u, a in ds.user_attrs.items() if u in keep_users})


def train(ds: Dataset, cfg: TrainConfig, *, cache: Path, out: Path | None, progress: bool = True,
          baselines: bool = True) -> TrainResult:
    """Train, evaluate (valid + test, with baselines) and, when `out` is given, save the artifact."""
    from tqdm import tqdm

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    ds = _subset(ds, cfg.max_users)
    split = chronological_split(ds)
    text = None
    feat_info: dict[str, Any] = {}
    if cfg.use_text:
        emb = encode_texts(ds.item_text, cache, progress=progress)
        red = reduce_features(emb, cfg.text_dim, method=cfg.reducer, seed=cfg.seed, whiten=cfg.text_whiten)
        text = red.features
        feat_info = {"encoder": "all-MiniLM-L6-v2", "reducer": red.method, "dim": cfg.text_dim,
                     "whitened": cfg.text_whiten, "explained_variance": red.explained_variance}
    mcfg = ModelConfig(n_items=len(ds.item_ids), n_cats=len(ds.category_names), text_dim=cfg.text_dim if cfg.use_text else 0,
                       item_dim=cfg.item_dim, hidden=cfg.hidden, use_id=cfg.use_id, use_text=cfg.use_text,
                       item_bias=cfg.item_bias, dropout=cfg.dropout, input_dropout=cfg.input_dropout, input_id=cfg.input_id,
                       text_reducer=cfg.reducer if cfg.use_text else "none")
    net = ProfileLSTM(mcfg, text)
    opt = make_optimizer(net, cfg.lr, cfg.weight_decay)
    users = sorted((u for u, s in split.train.items() if len(s) >= 2), key=lambda u: len(split.train[u]))
    seqs = {u: _user_arrays(ds, split.train[u]) for u in users}
    batches = _length_batches(split.train, users, cfg.batch_users)
    valid_es = build_eval_set(ds, split, "valid")
    test_es = build_eval_set(ds, split, "test")
    rng = np.random.default_rng(cfg.seed)
    best = (-1.0, 0, {k: v.detach().clone() for k, v in net.state_dict().items()})
    history: list[dict[str, float]] = []
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * len(batches))
             if cfg.lr_schedule == "cosine" else None)
    loss_fn = nn.CrossEntropyLoss()
    if cfg.negatives:
        counts = np.bincount(ds.items[np.concatenate([split.train[u] for u in users])], minlength=mcfg.n_items)
        q = (counts + 1.0) ** 0.75 if cfg.neg_sampler == "popularity" else np.ones(mcfg.n_items)
        q_t = torch.as_tensor(q / q.sum(), dtype=torch.float32)
        log_q = torch.log(q_t * cfg.negatives)
        neg_gen = torch.Generator().manual_seed(cfg.seed)
    # the averaged copy validation judges (cfg.ema > 0); without it, the trained net itself
    judged = copy.deepcopy(net) if cfg.ema else net
    avg_pairs = [(a, p) for a, p in zip(judged.parameters(), net.parameters()) if p.requires_grad] if cfg.ema else []
    t_loop = time.perf_counter()
    bar = tqdm(total=cfg.epochs, desc="training", unit="epoch", file=sys.stderr, disable=not progress)

    def run_epoch(seqs: Mapping[str, tuple[np.ndarray, ...]], batches: list[list[str]], opt: Any,
                  sched: Any = None, averaging: bool = False) -> tuple[float, int]:
        net.train()
        total, count = 0.0, 0
        for bi in rng.permutation(len(batches)):
            items, types, vals, gaps, lengths = _pad([seqs[u] for u in batches[bi]])
            uvec, ivec = net(items, types, vals, gaps, lengths)  # (B, L, D), (N, D)
            # position t predicts the item at t+1 (within the training part of the sequence)
            valid_pos = torch.arange(items.shape[1])[None, :] < (lengths[:, None] - 1)  # (B, L)
            targets = items[:, 1:][valid_pos[:, :-1]]  # (P,)
            user = uvec[:, :-1][valid_pos[:, :-1]]  # (P, D)
            if cfg.negatives:
                neg = torch.multinomial(q_t, cfg.negatives, replacement=True, generator=neg_gen)  # (K,)
                seen = _seen_mask(items, lengths, valid_pos, targets, mcfg.n_items, neg) if cfg.mask_seen else None
                loss = sampled_softmax_loss(user, ivec, net.bias, targets, neg, log_q, seen)
            else:
                logits = net.score(user, ivec)  # (P, N)
                seen = _seen_mask(items, lengths, valid_pos, targets, mcfg.n_items) if cfg.mask_seen else None
                if seen is not None:
                    logits = logits.masked_fill(seen, -1e9)
                if cfg.smoothing or cfg.tail_weight:
                    weights = tail_weights(lengths, valid_pos, cfg.tail_weight) if cfg.tail_weight else None
                    loss = smoothed_loss(logits, targets, None if seen is None else ~seen, cfg.smoothing, weights)
                elif cfg.future_window > 1:
                    loss = future_loss(logits, items, lengths, valid_pos, cfg.future_window, cfg.future_decay)
                else:
                    loss = loss_fn(logits, targets)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if sched is not None:
                sched.step()
            if averaging:
                ema_update(avg_pairs, cfg.ema)
            total += loss.item() * len(targets)
            count += len(targets)
        return total, count

    for epoch in range(1, cfg.epochs + 1):
        total, count = run_epoch(seqs, batches, opt, sched, averaging=bool(cfg.ema))
        ranks = rank_of_targets(lstm_scores(judged, ds, valid_es), valid_es.targets, valid_es.masks)
        vm = metrics_from_ranks(ranks)
        history.append({"epoch": epoch, "loss": total / max(1, count), "valid_NDCG@10": vm["NDCG@10"],
                        "valid_HR@10": vm["HR@10"]})
        if vm["NDCG@10"] > best[0]:
            best = (vm["NDCG@10"], epoch, {k: v.detach().clone() for k, v in judged.state_dict().items()})
        bar.set_postfix(loss=f"{total / max(1, count):.3f}", vNDCG=f"{vm['NDCG@10']:.4f}", best_ep=best[1])
        bar.update(1)
        if epoch - best[1] >= cfg.patience:
            break
        now = time.perf_counter()
        # the loop's own mean epoch time (set-up excluded), against what is left of the budget
        if out_of_time(now - t_loop, epoch, cfg.max_minutes * 60 - (t_loop - t_start), cfg.refit_epochs):
            print(f"\nstopping after epoch {epoch}: one more, the refit and the evaluation would not fit the "
                  f"{cfg.max_minutes} min budget (--max-minutes)", file=sys.stderr)
            break
    bar.close()
    net.load_state_dict(best[2])
    valid_before = None
    if cfg.refit_epochs:
        net.eval()
        valid_before = evaluate_scorer(lambda e: lstm_scores(net, ds, e), valid_es, popularity_buckets(ds, split))
        # Train on, briefly, with each user's validation event as one more target. The test
        # event stays unseen; validation metrics after this no longer measure held-out data.
        full = {u: np.append(split.train[u], split.valid[u]) if u in split.valid else split.train[u] for u in users}
        seqs_f = {u: _user_arrays(ds, full[u]) for u in users}
        batches_f = _length_batches(full, users, cfg.batch_users)
        opt_f = make_optimizer(net, cfg.lr * cfg.refit_lr_scale, cfg.weight_decay)
        for _ in tqdm(range(cfg.refit_epochs), desc="refit with validation events", unit="epoch", file=sys.stderr,
                      disable=not progress):
            run_epoch(seqs_f, batches_f, opt_f)
    net.eval()
    train_seconds = time.perf_counter() - t_start
    results = evaluate_model(net, ds, split, {"valid": valid_es, "test": test_es}, baselines=baselines)
    if valid_before is not None:
        after = results["valid"].pop("LSTM")
        results["valid"] = {"LSTM": valid_before, REFIT_LABEL: after, **results["valid"]}
    metrics = {"results": results, "best_epoch": best[1], "epochs_run": len(history), "train_seconds": train_seconds,
               "text_features": feat_info, "n_users": len(split.train), "n_eval_users": len(test_es.users)}
    artifact = None
    if out is not None:
        weights = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        artifact = save_artifact(out, config=mcfg, weights=weights, catalogue=catalogue_of(ds), extra={
            "kind": "trained",
            "data": {"name": ds.name, "hash": ds.source_hash, "events": len(ds), "split_rule": SPLIT_RULE},
            "train_config": cfg.to_dict(), "metrics": metrics, "code_version": _code_version(),
        })
    return TrainResult(artifact, metrics, train_seconds, history)


#: what `seed_study` reports per seed: validation before any refit (held out), then test
SEED_METRICS = ("valid_NDCG@10", "valid_HR@10", "NDCG@10", "HR@10", "MRR@10")


def parse_seeds(text: str) -> list[int]:
    """'0-4' → [0, 1, 2, 3, 4]; '1,3,7' → [1, 3, 7]; ranges and lists mix ('0-2,9')."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError:
            raise TrainConfigError(f"bad seed list {text!r}: use e.g. 0-4 or 0,1,5") from None
    if not seeds:
        raise TrainConfigError(f"bad seed list {text!r}: no seeds")
    return seeds


def seed_study(ds: Dataset, cfg: TrainConfig, seeds: Iterable[int], *, cache: Path,
               progress: bool = True) -> dict[str, Any]:
    """Train `cfg` once per seed (no artifact, no baselines) and report the spread: one seed is
    one draw, and on ML-100k the seed-to-seed sd of test HR@10 is ≈ 0.005–0.008 (README, "Seeds";
    docs/history.md).
    Returns {"rows": [{seed, valid_NDCG@10, …, best_epoch, epochs_run, seconds}], "mean": {…},
    "sd": {…} (sample sd; NaN for one seed), "config": the config without its seed}."""
    rows = []
    for seed in seeds:
        if progress:
            print(f"--- seed {seed}", file=sys.stderr)
        res = train(ds, replace(cfg, seed=seed), cache=cache, out=None, progress=progress, baselines=False)
        valid, test = res.metrics["results"]["valid"]["LSTM"], res.metrics["results"]["test"]["LSTM"]
        rows.append({"seed": seed, "valid_NDCG@10": valid["NDCG@10"], "valid_HR@10": valid["HR@10"],
                     "NDCG@10": test["NDCG@10"], "HR@10": test["HR@10"], "MRR@10": test["MRR@10"],
                     "best_epoch": res.metrics["best_epoch"], "epochs_run": res.metrics["epochs_run"],
                     "seconds": res.seconds})
    cols = {m: np.array([r[m] for r in rows], np.float64) for m in SEED_METRICS}
    return {"rows": rows, "mean": {m: float(v.mean()) for m, v in cols.items()},
            "sd": {m: float(v.std(ddof=1)) if len(v) > 1 else float("nan") for m, v in cols.items()},
            "config": {k: v for k, v in cfg.to_dict().items() if k != "seed"}}
