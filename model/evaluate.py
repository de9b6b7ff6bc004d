"""Offline evaluation: full ranking over all items, the user's history masked; HR@10,
NDCG@10, MRR@10 on validation and test; baselines under the same protocol; results
bucketed by the target item's popularity (head / torso / tail) and, where the dataset has user
attributes (ML-100k), broken down by the user's gender, age band and occupation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .data import Dataset, Split

__all__ = ["rank_of_targets", "metrics_from_ranks", "EvalSet", "build_eval_set", "baseline_scorers",
           "evaluate_scorer", "popularity_buckets", "user_groups", "format_table", "AGE_BANDS",
           "RECENT_POP_DAYS", "recent_counts", "MAX_GROUPS_PER_ATTRIBUTE"]

K = 10


def rank_of_targets(scores: np.ndarray, targets: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """0-based rank of each row's target among all items, masked items excluded.
    Ties count against the target (an item scoring equal to it ranks above): no luck from ties."""
    s = scores.astype(np.float64, copy=True)
    for r, m in enumerate(masks):
        s[r, m] = -np.inf
    t = s[np.arange(len(targets)), targets]
    s[np.arange(len(targets)), targets] = -np.inf  # the target itself is not its own competitor
    ranks: np.ndarray = (s >= t[:, None]).sum(axis=1)
    return ranks


def metrics_from_ranks(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    if len(ranks) == 0:
        return {f"HR@{k}": 0.0, f"NDCG@{k}": 0.0, f"MRR@{k}": 0.0, "n": 0}
    hit = ranks < k
    return {
        f"HR@{k}": float(hit.mean()),
        f"NDCG@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()),
        f"MRR@{k}": float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean()),
        "n": int(len(ranks)),
    }


@dataclass
class EvalSet:
    """Per evaluated user: history (event indices, time order), target item, masked items, and the
    target event's time (float64 seconds; the recent-popularity baseline counts up to it)."""

    users: list[str]
    histories: list[np.ndarray]
    targets: np.ndarray
    masks: list[np.ndarray]
    target_ts: np.ndarray | None = None


def build_eval_set(ds: Dataset, split: Split, which: str) -> EvalSet:
    users = sorted(split.test, key=lambda u: (len(u), u))
    hist, targets, masks, when = [], [], [], []
    for u in users:
        h = split.train[u] if which == "valid" else np.append(split.train[u], split.valid[u])
        t = split.valid[u] if which == "valid" else split.test[u]
        hist.append(h)
        targets.append(ds.items[t])
        masks.append(np.unique(ds.items[h]))
        when.append(ds.ts[t])
    return EvalSet(users, hist, np.array(targets, np.int64), masks, np.array(when, np.float64))


def popularity_buckets(ds: Dataset, split: Split) -> np.ndarray:
    """Per item: 0 = head (most popular items holding 50 % of training events), 1 = torso (next 30 %),
    2 = tail (the rest, including items never seen in training)."""
    counts = np.bincount(ds.items[np.concatenate(list(split.train.values()))], minlength=len(ds.item_ids))
    order = np.argsort(-counts, kind="stable")
    share = np.cumsum(counts[order]) / max(1, counts.sum())
    bucket = np.full(len(counts), 2, np.int64)
    bucket[order[share <= 0.5]] = 0
    bucket[order[(share > 0.5) & (share <= 0.8)]] = 1
    bucket[counts == 0] = 2
    return bucket


#: (lowest age, first age not in the band, label)
AGE_BANDS = ((0, 25, "under 25"), (25, 35, "25-34"), (35, 50, "35-49"), (50, 1000, "50 and over"))


#: An attribute with more distinct values than this is not split into groups (a zip code or a
#: free-text field would make one group per user or so).
MAX_GROUPS_PER_ATTRIBUTE = 50


def user_groups(users: list[str], attrs: Mapping[str, Mapping[str, object]]) -> dict[str, np.ndarray]:
    """Boolean masks over `users` (an EvalSet's order): "gender F", "age 25-34", "occupation writer"
    …, each group that has at least one user; {} when there are no attributes. `age` is banded
    (AGE_BANDS); any other attribute gives one group per distinct value, unless it has more than
    MAX_GROUPS_PER_ATTRIBUTE. Gender first, then age, then the others in the order first seen. A
    user without an attribute is in none of its groups."""
    if not attrs:
        return {}
    rows = [attrs.get(u, {}) for u in users]
    keys: list[str] = []
    for a in attrs.values():
        keys.extend(k for k in a if k not in keys)
    keys.sort(key=lambda k: (k != "gender", k != "age"))  # stable: the rest keep their order
    out: dict[str, np.ndarray] = {}
    for key in keys:
        if key == "age":
            ages = np.array([_number(r.get("age")) for r in rows])
            for lo, hi, label in AGE_BANDS:
                m = (ages >= lo) & (ages < hi)
                if m.any():
                    out[f"age {label}"] = m
            continue
        values = sorted({str(r[key]) for r in rows if key in r})
        if len(values) > MAX_GROUPS_PER_ATTRIBUTE:
            continue
        col = [str(r[key]) if key in r else None for r in rows]
        for v in values:
            out[f"{key} {v}"] = np.array([c == v for c in col])
    return out


def _number(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


Scorer = Callable[[EvalSet], np.ndarray]  # → (U, N) scores

#: Window of the recent-popularity baseline, days. Chosen on validation among 1, 7, 30 and 90
#: (docs/model.md, "Popularity over time").
RECENT_POP_DAYS = 30


def recent_counts(ds: Dataset, train_idx: np.ndarray, until: np.ndarray, days: float = RECENT_POP_DAYS) -> np.ndarray:
    """(U, N): per row, how often each item occurs among the training events `train_idx` whose time
    lies in [until[r] − days, until[r]). Training events only, as Pop counts: the window moves
    with each target's time, the events it may count do not."""
    order = train_idx[np.argsort(ds.ts[train_idx], kind="stable")]
    ts, items = ds.ts[order], ds.items[order]
    lo = np.searchsorted(ts, until - days * 86400.0, side="left")
    hi = np.searchsorted(ts, until, side="left")
    n = len(ds.item_ids)
    return np.stack([np.bincount(items[a:b], minlength=n) for a, b in zip(lo, hi)]).astype(np.float64)


def baseline_scorers(ds: Dataset, split: Split) -> dict[str, Scorer]:
    n = len(ds.item_ids)
    train_idx = np.concatenate(list(split.train.values()))
    pop = np.bincount(ds.items[train_idx], minlength=n).astype(np.float64)
    tiebreak = 1e-6 * pop / max(1.0, pop.max())  # popularity breaks ties in sparse scores
    trans = np.zeros((n, n), np.float64)
    co = np.zeros((n, n), np.float32)
    for seq in split.train.values():
        it = ds.items[seq]
        np.add.at(trans, (it[:-1], it[1:]), 1.0)
        u = np.zeros(n, np.float32)
        u[np.unique(it)] = 1.0
        co += np.outer(u, u)
    trans_norm = trans / np.maximum(trans.sum(axis=1, keepdims=True), 1.0)
    norms = np.sqrt(np.maximum(np.diag(co), 1e-9))
    cos = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(cos, 0.0)

    def s_pop(es: EvalSet) -> np.ndarray:
        return np.tile(pop, (len(es.users), 1))

    def s_recent(es: EvalSet) -> np.ndarray:
        if es.target_ts is None:
            raise ValueError("the recent-popularity baseline needs the targets' times (build_eval_set sets them)")
        out: np.ndarray = recent_counts(ds, train_idx, es.target_ts) + tiebreak
        return out

    def s_markov(es: EvalSet) -> np.ndarray:
        out: np.ndarray = np.stack([trans[ds.items[h[-1]]] for h in es.histories]) + tiebreak
        return out

    def s_markov5(es: EvalSet) -> np.ndarray:
        out = np.zeros((len(es.users), n))
        for r, h in enumerate(es.histories):
            for j, i in enumerate(ds.items[h[-5:]][::-1]):
                out[r] += 0.6 ** j * trans_norm[i]
        scores: np.ndarray = out + tiebreak
        return scores

    def s_knn(es: EvalSet) -> np.ndarray:
        out: np.ndarray = np.stack([cos[np.unique(ds.items[h])].sum(axis=0) for h in es.histories]) + tiebreak
        return out

    return {"Pop": s_pop, f"Pop, last {RECENT_POP_DAYS} days": s_recent, "Markov-1": s_markov,
            "Markov-5 (decayed)": s_markov5, "ItemKNN": s_knn}


def evaluate_scorer(scorer: Scorer, es: EvalSet, buckets: np.ndarray | None = None,
                    groups: Mapping[str, np.ndarray] | None = None) -> dict[str, object]:
    """Metrics over all of `es`; with `buckets` (per item, `popularity_buckets`) also per bucket of
    the target item, with `groups` (masks over es.users, `user_groups`) also per user group."""
    ranks = rank_of_targets(scorer(es), es.targets, es.masks)
    out: dict[str, object] = dict(metrics_from_ranks(ranks))
    if buckets is not None:
        tb = buckets[es.targets]
        out["buckets"] = {name: metrics_from_ranks(ranks[tb == b]) for b, name in enumerate(("head", "torso", "tail"))}
    if groups:
        out["user_groups"] = {name: metrics_from_ranks(ranks[m]) for name, m in groups.items()}
    return out


def format_table(rows: Mapping[str, Mapping[str, object]], cols: tuple[str, ...] = ("NDCG@10", "HR@10", "MRR@10")) -> str:
    head = "| model | " + " | ".join(cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    lines = [head, sep]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{float(r[c]):.4f}" for c in cols) + " |")  # type: ignore[arg-type]
    return "\n".join(lines)
