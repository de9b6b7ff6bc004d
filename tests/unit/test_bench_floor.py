"""The bench's arithmetic floor counts the step's flops as the step really computes them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.micro import read_rate, step_flops, step_weight_bytes
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


def test_step_weight_bytes_are_the_arrays_the_batch1_kernels_read(tmp_path: Path) -> None:
    """The read floor counts the bytes of the weight arrays the compiled CPU path really reads:
    the matrices once per call, one row of the item input table per event."""
    ds = load_ml100k(Settings.from_env().cache_dir)
    init_random_artifact(ds, tmp_path / "model", hidden=48, item_dim=24)
    model = ProfileModel.load(tmp_path / "model", device="cpu")
    fw = model._fw
    assert fw is not None
    shared, per_event = step_weight_bytes(model)
    assert shared == fw.W_hh_T.nbytes + fw.W_out.nbytes + fw.item_vecs.nbytes + fw.item_bias.nbytes
    assert per_event == fw.p_item[0].nbytes


def test_read_rate_is_bytes_per_ns_of_a_real_read() -> None:
    """The rate is bytes per ns (= GB/s) of reads that really happen: in the range any CPU core
    reads at (0.1–10,000 GB/s; a pass the compiler dropped would give an absurd rate)."""
    assert 0.1 < read_rate(1_000_000, seconds=0.05) < 10_000
