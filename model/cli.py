"""`profilestream train | evaluate | ablate | seeds` (registered into the stream CLI)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _print_results(metrics: dict[str, Any], *, buckets: bool = True) -> None:
    from .evaluate import format_table

    for which in ("test", "valid"):
        rows = metrics["results"][which]
        n = next(iter(rows.values()))["n"]
        print(f"\n{which} ({n} users, full ranking, history masked)")
        print(format_table(rows))
        if buckets and which == "test":
            for b in ("head", "torso", "tail"):
                sub = {name: r["buckets"][b] for name, r in rows.items() if "buckets" in r}
                n = next(iter(sub.values()))["n"]
                print(f"\n  test, target item in the {b} ({n} users)")
                print("  " + format_table(sub, ("NDCG@10", "HR@10")).replace("\n", "\n  "))
            _print_user_groups(rows)


#: An attribute's groups are printed when it has at most this many (occupation, 21 groups on
#: ML-100k, is in the JSON only); the JSON has every group.
PRINT_GROUPS_MAX = 12


def _print_user_groups(rows: dict[str, Any]) -> None:
    """Test NDCG@10 / HR@10 by user group, one column per model, for the attributes with at most
    PRINT_GROUPS_MAX groups (on ML-100k gender and age band)."""
    names = [name for name, r in rows.items() if r.get("user_groups")]
    if not names:
        return
    all_groups = list(rows[names[0]]["user_groups"])
    per_attr: dict[str, list[str]] = {}
    for g in all_groups:
        per_attr.setdefault(g.split(" ", 1)[0], []).append(g)
    groups = [g for gs in per_attr.values() if len(gs) <= PRINT_GROUPS_MAX for g in gs]
    hidden = [a for a, gs in per_attr.items() if len(gs) > PRINT_GROUPS_MAX]
    note = f" ({', '.join(hidden)}: in the JSON, \"user_groups\")" if hidden else ""
    if not groups:
        print(f"\n  test by user group: {', '.join(hidden)}: more than {PRINT_GROUPS_MAX} groups each, "
              "in the JSON only (\"user_groups\")")
        return
    print(f"\n  test by user group, NDCG@10 / HR@10{note}")
    print("  | group | users | " + " | ".join(names) + " |")
    print("  |---|---:|" + "---:|" * len(names))
    for g in groups:
        cells = [f"{rows[n]['user_groups'][g]['NDCG@10']:.4f} / {rows[n]['user_groups'][g]['HR@10']:.4f}" for n in names]
        print(f"  | {g} | {rows[names[0]]['user_groups'][g]['n']} | " + " | ".join(cells) + " |")


def _train_config(args: argparse.Namespace) -> Any:
    from .train import TrainConfig

    cfg = TrainConfig()
    over = {k: getattr(args, k) for k in ("epochs", "max_minutes", "seed", "max_users", "reducer", "hidden",
                                          "item_dim", "text_dim", "lr", "lr_schedule", "patience", "dropout", "input_dropout", "refit_epochs",
                                          "future_window", "future_decay", "negatives", "neg_sampler",
                                          "label_smoothing", "ema", "weight_decay", "tail_weight", "batch_users") if getattr(args, k, None) is not None}
    if getattr(args, "no_text", False):
        over["use_text"] = False
    if getattr(args, "no_item_bias", False):
        over["item_bias"] = False
    if getattr(args, "input_id", False):
        over["input_id"] = True
    if getattr(args, "no_id", False):
        over["use_id"] = False
    if getattr(args, "no_text_whiten", False):
        over["text_whiten"] = False
    return replace(cfg, **over)


def cmd_train(args: argparse.Namespace) -> int:
    from stream.settings import Settings

    from .data import load_dataset
    from .train import train

    s = Settings.from_env(state_dir=args.state_dir, artifact=args.artifact)
    out = args.out or s.artifact_path
    cfg = _train_config(args)
    ds = load_dataset(args.dataset, s.cache_dir, users=args.users)
    print(f"training on {ds.name}: {len(ds)} events, {len(ds.item_ids)} items; config {cfg}", file=sys.stderr)
    _note_user_attrs(ds)
    res = train(ds, cfg, cache=s.cache_dir, out=out)
    assert res.artifact is not None
    if args.json:
        print(json.dumps(res.metrics, indent=2))
    else:
        _print_results(res.metrics)
        fi = res.metrics["text_features"]
        if fi:
            print(f"\ntext features: {fi['encoder']} → {fi['reducer']} {fi['dim']}-d, explained variance {fi['explained_variance']:.3f}")
        print(f"trained in {res.seconds:.0f} s (best epoch {res.metrics['best_epoch']} of {res.metrics['epochs_run']}); "
              f"artifact {res.artifact.model_version} → {out}")
    return 0


def _note_user_attrs(ds: Any) -> None:
    """Say how many of the dataset's users the attributes cover (they only group the evaluation)."""
    if ds.user_attrs:
        users = set(ds.users.tolist())
        known = len(users & set(ds.user_attrs))
        print(f"user attributes: {known} of {len(users)} users ({', '.join(sorted({k for a in ds.user_attrs.values() for k in a}))}); "
              "the evaluation is also broken down by them", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train import REFIT_LABEL

    import torch

    from stream.settings import Settings

    from .artifact import load_artifact
    from .data import chronological_split, load_dataset
    from .lstm import ProfileLSTM
    from .train import evaluate_model

    s = Settings.from_env(state_dir=args.state_dir, artifact=args.artifact)
    art = load_artifact(s.artifact_path)
    dataset = args.dataset or art.manifest.get("data", {}).get("name", "ml-100k")
    ds = load_dataset(dataset, s.cache_dir, users=args.users)
    _note_user_attrs(ds)
    if list(ds.item_ids) != art.catalogue.item_ids:
        print(f"error: artifact {art.model_version} was not trained on the catalogue of {dataset}", file=sys.stderr)
        return 2
    net = ProfileLSTM(art.config, art.weights.get("text"))
    net.load_state_dict({k: torch.as_tensor(v) for k, v in art.weights.items()})
    results = evaluate_model(net, ds, chronological_split(ds))
    if art.manifest.get("train_config", {}).get("refit_epochs"):
        results["valid"] = {REFIT_LABEL if k == "LSTM" else k: v for k, v in results["valid"].items()}
    metrics = {"results": results, "model_version": art.model_version, "dataset": dataset}
    out = args.out or (s.artifact_path / "evaluation.json")
    Path(out).write_text(json.dumps(metrics, indent=2))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_results(metrics)
        print(f"\nwritten to {out}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from stream.settings import Settings

    from .data import load_dataset
    from .evaluate import format_table
    from .train import train

    s = Settings.from_env(state_dir=args.state_dir)
    ds = load_dataset(args.dataset, s.cache_dir)
    # refit off: the ablation compares variants on held-out validation events too
    base = replace(_train_config(args), refit_epochs=0)
    variants = {
        "ID embeddings only": replace(base, use_text=False),
        "text features only (PCA)": replace(base, use_id=False),
        "ID + text (PCA)": base,
        "ID + text (autoencoder)": replace(base, reducer="autoencoder"),
    }
    rows: dict[str, Any] = {}
    for name, cfg in variants.items():
        print(f"--- {name}", file=sys.stderr)
        res = train(ds, cfg, cache=s.cache_dir, out=None, baselines=False)
        rows[name] = dict(res.metrics["results"]["test"]["LSTM"], seconds=res.seconds,
                          valid_NDCG=res.metrics["results"]["valid"]["LSTM"]["NDCG@10"])
    print(format_table(rows, ("NDCG@10", "HR@10", "MRR@10", "valid_NDCG", "seconds")))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from stream.settings import Settings

    from .data import load_dataset
    from .train import SEED_METRICS, parse_seeds, seed_study

    seeds = parse_seeds(args.seeds)  # a bad list: TrainConfigError, printed by the CLI's ModelError handler
    s = Settings.from_env(state_dir=args.state_dir)
    ds = load_dataset(args.dataset, s.cache_dir)
    study = seed_study(ds, _train_config(args), seeds, cache=s.cache_dir)
    if args.out:
        Path(args.out).write_text(json.dumps(study, indent=2))
    if args.json:
        print(json.dumps(study, indent=2))
        return 0
    heads = ["valid NDCG@10", "valid HR@10", "test NDCG@10", "test HR@10", "test MRR@10"]
    print("| seed | " + " | ".join(heads) + " | best epoch | seconds |")
    print("|---|" + "---:|" * (len(heads) + 2))
    for r in study["rows"]:
        print(f"| {r['seed']} | " + " | ".join(f"{r[m]:.4f}" for m in SEED_METRICS)
              + f" | {r['best_epoch']} of {r['epochs_run']} | {r['seconds']:.0f} |")
    sd = study["sd"]
    print("| mean ± sd | " + " | ".join(f"{study['mean'][m]:.4f} ± {sd[m]:.4f}" if sd[m] == sd[m] else
                                        f"{study['mean'][m]:.4f}" for m in SEED_METRICS) + " | | |")
    return 0


def _train_flags(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    p.add_argument("--dataset", default="ml-100k", help="ml-100k or a CSV/JSONL file in the event contract")
    p.add_argument("--epochs", type=int, help="max epochs (default 50; early stopping on valid NDCG@10)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (default 5)")
    p.add_argument("--max-users", type=int, help="train on the first N users only")
    if seed:
        p.add_argument("--seed", type=int, help="torch/numpy seed (default 1: the best validation NDCG@10 of seeds 0-4)")
    p.add_argument("--reducer", choices=["pca", "autoencoder"], help="text-feature reducer (default pca)")
    p.add_argument("--hidden", type=int, help="LSTM width (default 128)")
    p.add_argument("--item-dim", type=int, help="item/user vector width (default 64)")
    p.add_argument("--text-dim", type=int, help="reduced text-feature width (default 64)")
    p.add_argument("--no-text-whiten", action="store_true",
                   help="scale the reduced text features by one common factor instead of to unit variance per column, "
                        "so minor components stay small")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 3e-3)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better valid NDCG@10 (default 10)")
    p.add_argument("--dropout", type=float, help="dropout on LSTM inputs and outputs (default 0.5)")
    p.add_argument("--input-dropout", type=float, help="dropout on the LSTM's inputs alone; --dropout then acts on "
                   "its outputs only (default: the --dropout value on both)")
    p.add_argument("--refit-epochs", type=int, help="after early stopping, this many epochs over training + validation "
                   "events at a third of the learning rate (default 2; 0 = off); the validation table then shows "
                   "the model before the refit, and after it as a row marked 'not held out'")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"],
                   help="learning-rate schedule; cosine anneals to 0 over --epochs")
    p.add_argument("--future-window", type=int,
                   help="each position also learns the next N items, not only the next one (default 1 = next item only)")
    p.add_argument("--future-decay", type=float, help="weight of the j-th future item: decay^(j-1) (default 0.5)")
    p.add_argument("--label-smoothing", type=float,
                   help="label smoothing of the full-softmax loss: the target keeps 1 - EPS, the items not masked "
                        "share EPS (default 0.1; 0 = plain cross-entropy; not with --negatives or --future-window, "
                        "where the default is 0)")
    p.add_argument("--ema", type=float,
                   help="average the weights over optimiser steps (decay D, e.g. 0.99); validation, early stopping "
                        "and the kept weights use the average (default 0 = off)")
    p.add_argument("--batch-users", type=int, metavar="N",
                   help="users per training batch, grouped by sequence length (default 32)")
    p.add_argument("--tail-weight", type=float, metavar="B",
                   help="weight the end of each training sequence: a user's last predicting position counts "
                        "1 + B times its first, linearly in between (default 0 = every position alike; full-softmax "
                        "loss only)")
    p.add_argument("--weight-decay", type=float,
                   help="decoupled weight decay (AdamW) on weight matrices and embeddings, none on biases "
                        "(default 0 = off, plain Adam)")
    p.add_argument("--negatives", type=int,
                   help="sampled softmax with this many negatives per batch, logQ-corrected, for catalogues too big "
                        "to score in full at every step (default 0 = full softmax over the catalogue)")
    p.add_argument("--neg-sampler", choices=["uniform", "popularity"],
                   help="where --negatives are drawn from (default popularity: (training count + 1)^0.75)")
    p.add_argument("--input-id", action="store_true",
                   help="a second learned ID embedding on the LSTM's input side only, so an item's input vector "
                        "can differ from the vector that scores it (default: one vector for both)")
    p.add_argument("--no-item-bias", action="store_true",
                   help="no learned per-item score bias: score = user vector · item vector (default: with the bias)")
    p.add_argument("--no-text", action="store_true", help="ablation: ID embeddings only")
    p.add_argument("--no-id", action="store_true", help="ablation: text features only")
    p.add_argument("--state-dir", type=Path, default=None)


USERS_HELP = ("CSV (header with user_id and attribute columns) or JSONL file of user attributes, e.g. "
              "user_id,age,gender,country: the evaluation is also broken down by them (never a model input; "
              "for ml-100k it replaces the dataset's own)")


def register(sub: Any, settings_parent: argparse.ArgumentParser) -> None:
    t = sub.add_parser("train", help="train the LSTM profile model and write an artifact",
                       description="Train on ML-100k or your own events (chronological leave-last-out split), "
                                   "evaluate against baselines, write the artifact the workers load.")
    _train_flags(t)
    t.add_argument("--users", type=Path, default=None, help=USERS_HELP)
    t.add_argument("--out", type=Path, default=None, help="artifact directory (default STATE_DIR/model)")
    t.add_argument("--artifact", type=Path, default=None, help=argparse.SUPPRESS)
    t.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate an artifact beside the baselines",
                       description="Full ranking over all items with the user's history masked; HR@10, NDCG@10, "
                                   "MRR@10 on test and validation for the artifact and Pop, Pop over the last 30 "
                                   "days, Markov-1, Markov-5 (decayed) and ItemKNN; bucketed by item popularity "
                                   "and, with user attributes (ML-100k's, or --users), by user group.")
    e.add_argument("--artifact", type=Path, default=None, help="artifact directory (default STATE_DIR/model)")
    e.add_argument("--dataset", default=None, help="dataset (default: the one in the artifact's manifest)")
    e.add_argument("--users", type=Path, default=None, help=USERS_HELP)
    e.add_argument("--out", type=Path, default=None, help="JSON output (default ARTIFACT/evaluation.json)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--state-dir", type=Path, default=None)
    e.set_defaults(func=cmd_evaluate)

    a = sub.add_parser("ablate", help="train the ablation variants and print their table",
                       description="ID embeddings only, text features only, both (PCA), both (autoencoder); "
                                   "test metrics of each under the evaluation protocol.")
    _train_flags(a)
    a.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    a.set_defaults(func=cmd_ablate)

    sd = sub.add_parser("seeds", help="train one configuration with several seeds and print the spread",
                        description="One training run is one draw: this trains the configuration given by the "
                                    "train flags once per seed (no artifact, no baselines) and prints validation "
                                    "(before any refit) and test metrics per seed with their mean ± sd. "
                                    "The README's seed table: `profilestream seeds --seeds 0-4 --max-minutes 10` "
                                    "(≈ 18 min on 2 cores).")
    _train_flags(sd, seed=False)
    sd.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 or 0,1,5 (default 0-4)")
    sd.add_argument("--out", type=Path, default=None, help="also write the rows and summary as JSON here")
    sd.add_argument("--json", action="store_true", help="print the rows and summary as JSON")
    sd.set_defaults(func=cmd_seeds)
