from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model import ArtifactError, ProfileModel, load_artifact
from model.artifact import save_artifact
from tests.conftest import make_artifact


def test_save_load_gives_identical_scores(tmp_path: Path, small_artifact: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_artifact, copy)
    a, b = ProfileModel.load(small_artifact), ProfileModel.load(copy)
    h = torch.randn(4, a.hidden)
    assert a.model_version == b.model_version
    torch.testing.assert_close(a.scores(h), b.scores(h), rtol=0, atol=0)


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    v1 = load_artifact(make_artifact(tmp_path / "a", seed=1)).model_version
    v2 = load_artifact(make_artifact(tmp_path / "b", seed=1)).model_version
    v3 = load_artifact(make_artifact(tmp_path / "c", seed=2)).model_version
    assert v1 == v2 != v3


def test_corrupt_weights_fail_with_a_clear_error(tmp_path: Path, small_artifact: Path) -> None:
    copy = tmp_path / "corrupt"
    shutil.copytree(small_artifact, copy)
    data = bytearray((copy / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt"):
        load_artifact(copy)


def test_mismatched_catalogue_fails(tmp_path: Path, small_artifact: Path) -> None:
    copy = tmp_path / "mismatch"
    shutil.copytree(small_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["n_items"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="items"):
        load_artifact(copy)


def test_missing_artifact_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="profilestream train"):
        load_artifact(tmp_path / "nothing")


def test_wrong_shape_weights_are_refused(tmp_path: Path, small_artifact: Path) -> None:
    other = make_artifact(tmp_path / "wide", n_items=70)
    copy = tmp_path / "swapped"
    shutil.copytree(small_artifact, copy)
    shutil.copy(other / "weights.npz", copy / "weights.npz")
    with pytest.raises(ArtifactError):
        load_artifact(copy)
    assert np.load(other / "weights.npz")["bias"].shape == (70,)


def test_weights_with_nan_are_refused(tmp_path: Path, small_artifact: Path) -> None:
    art = load_artifact(small_artifact)
    weights = {k: v.copy() for k, v in art.weights.items()}
    name = sorted(weights)[0]
    weights[name].flat[0] = np.nan
    save_artifact(tmp_path / "nan", config=art.config, weights=weights, catalogue=art.catalogue)
    with pytest.raises(ArtifactError, match=f"{name}.*NaN or infinity"):
        load_artifact(tmp_path / "nan")
