"""The bench's arithmetic floor counts the step's flops as the step really computes them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.micro import step_flops
from model import ProfileModel, init_random_artifact, load_ml100k
from stream.settings import Settings


def test_step_flops_match_what_torch_counts_in_the_step(tmp_path: Path) -> None:
    ds = load_ml100k(Settings.from_env().cache_dir)
    init_random_artifact(ds, tmp_path / "model", hidden=48, item_dim=24)
    model = ProfileModel.load(tmp_path / "model", device="cpu")
    B = 5
    h = torch.zeros(B, model.hidden)
    c = torch.zeros_like(h)
    items = torch.randint(0, model.n_items, (B,))
    types = torch.zeros(B, dtype=torch.int64)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        h2, _ = model.step(h, c, items, types, torch.zeros(B), torch.zeros(B))
        model.scores(h2)
    assert fc.get_total_flops() == B * step_flops(model)
