"""A seeded random artifact over a dataset's catalogue, so the pipeline runs end to end before
(or without) training. Its recommendations are meaningless; its math is the real model's."""

from __future__ import annotations

from pathlib import Path

import torch

from .artifact import Artifact, Catalogue, save_artifact
from .data import Dataset
from .lstm import ModelConfig, ProfileLSTM

__all__ = ["init_random_artifact", "catalogue_of"]


def catalogue_of(ds: Dataset) -> Catalogue:
    return Catalogue(list(ds.item_ids), list(ds.titles), [list(c) for c in ds.item_cats], list(ds.category_names))


def init_random_artifact(ds: Dataset, out: Path, *, seed: int = 0, item_dim: int = 32, hidden: int = 64) -> Artifact:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=len(ds.item_ids), n_cats=len(ds.category_names), text_dim=0, item_dim=item_dim,
                      hidden=hidden, use_text=False, text_reducer="none")
    net = ProfileLSTM(cfg, None)
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return save_artifact(out, config=cfg, weights=weights, catalogue=catalogue_of(ds),
                         extra={"kind": "random-init", "seed": seed,
                                "data": {"name": ds.name, "hash": ds.source_hash}})
