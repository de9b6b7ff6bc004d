"""`profilestream seeds` (model.train.seed_study): one configuration trained per seed, the spread
reported; the same seed twice gives the same run (training is seeded and reproducible on CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from model import load_ml100k
from model.train import SEED_METRICS, TrainConfig, parse_seeds, seed_study
from stream.settings import Settings


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("1,3, 7") == [1, 3, 7]
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    for bad in ("", "a", "1-", "0-x"):
        with pytest.raises(ValueError, match="bad seed list"):
            parse_seeds(bad)


def test_seed_study_rows_spread_and_reproducibility() -> None:
    cache = Settings.from_env().cache_dir
    cfg = TrainConfig(epochs=2, max_users=120, hidden=32, item_dim=16, text_dim=16, refit_epochs=0, patience=2)
    study = seed_study(load_ml100k(cache), cfg, [5, 5, 6], cache=cache, progress=False)
    rows = study["rows"]
    assert [r["seed"] for r in rows] == [5, 5, 6]
    assert {m: rows[0][m] for m in SEED_METRICS} == {m: rows[1][m] for m in SEED_METRICS}  # same seed, same run
    assert any(rows[0][m] != rows[2][m] for m in SEED_METRICS)  # another seed, another draw
    for m in SEED_METRICS:
        vals = np.array([r[m] for r in rows])
        assert study["mean"][m] == pytest.approx(vals.mean())
        assert study["sd"][m] == pytest.approx(vals.std(ddof=1))
    assert "seed" not in study["config"] and study["config"]["max_users"] == 120


def test_seeds_cli_rejects_a_bad_seed_list_with_a_message(capsys) -> None:
    from stream.cli import main

    assert main(["seeds", "--seeds", "0-x"]) == 2
    err = capsys.readouterr().err
    assert "error: bad seed list '0-x'" in err and "Traceback" not in err
