"""A tiny training run on a subset of ML-100k (real data, real text features): it must beat
popularity on that subset, and its artifact must load into the streaming runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model import ProfileModel, load_ml100k
from model.train import TrainConfig, train
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
    hist = [e for e in ds.event_dicts(ds.time_order()) if e["user_id"] == "1"][:30]
    recs = m.recommend(hist, k=10)
    assert len(recs) == 10 and not {e["item_id"] for e in hist} & set(recs)
    assert np.isfinite(m.profile(hist)["vector"]).all()
