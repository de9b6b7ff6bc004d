from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model import Catalogue, ModelConfig, ProfileLSTM, save_artifact


def make_artifact(out: Path, *, n_items: int = 60, seed: int = 0, use_text: bool = True, input_id: bool = False) -> Path:
    """A small random artifact over a synthetic catalogue (no dataset download)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n_items, 12)).astype(np.float32) if use_text else None
    cfg = ModelConfig(n_items=n_items, n_cats=3, text_dim=12 if use_text else 0, item_dim=16, hidden=24,
                      use_text=use_text, recent_len=8, input_id=input_id)
    net = ProfileLSTM(cfg, text)
    with torch.no_grad():  # make the ID part non-zero so both halves of the fusion matter
        if cfg.use_id:
            net.id_emb.weight.normal_(0, 0.3)
        net.bias.normal_(0, 0.1)
        if input_id:  # and the input side's own part, so the step must read it to match
            net.in_id_emb.weight.normal_(0, 0.3)
    weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    cat = Catalogue([f"i{i}" for i in range(n_items)], [f"Item {i}" for i in range(n_items)],
                    [[i % 3] for i in range(n_items)], ["A", "B", "C"])
    save_artifact(out, config=cfg, weights=weights, catalogue=cat)
    return out


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact") / "model")


def synthetic_history(user: str, n: int, *, n_items: int = 60, seed: int = 1) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    ts = 881_000_000.0
    out: list[dict[str, object]] = []
    types = ["view", "click", "cart", "purchase", "rate", "skip"]
    for j in range(n):
        ts += float(rng.integers(0, 5000))
        t = types[int(rng.integers(0, len(types)))]
        ev: dict[str, object] = {"user_id": user, "item_id": f"i{int(rng.integers(0, n_items))}", "type": t, "ts": ts,
                                 "event_id": f"{user}-{j}"}
        if t == "rate":
            ev["value"] = float(rng.integers(1, 6))
        elif rng.random() < 0.5:
            ev["value"] = float(rng.integers(0, 300))
        out.append(ev)
    return out
