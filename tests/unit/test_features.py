"""Text-feature reduction: whitened PCA (unit variance per column) and the common-scale variant
that keeps the components' relative variance."""

from __future__ import annotations

import numpy as np
import pytest

from model.features import reduce_features


def _embeddings(n: int = 400, width: int = 48, seed: int = 0) -> np.ndarray:
    # columns of very different spread, as sentence embeddings have, plus an offset
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, width)) * np.geomspace(3.0, 0.05, width) + 2.0).astype(np.float32)


def test_whitened_pca_has_unit_variance_per_column() -> None:
    red = reduce_features(_embeddings(), 8, method="pca")
    z = red.features.astype(np.float64)
    assert red.features.shape == (400, 8) and red.features.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-4)


def test_unwhitened_pca_keeps_the_components_relative_variance() -> None:
    emb = _embeddings()
    white = reduce_features(emb, 8, method="pca").features.astype(np.float64)
    plain = reduce_features(emb, 8, method="pca", whiten=False).features.astype(np.float64)
    var = plain.var(axis=0)
    np.testing.assert_allclose(plain.mean(axis=0), 0.0, atol=1e-5)
    assert var.mean() == pytest.approx(1.0, rel=1e-4)  # same overall scale as the whitened features
    assert np.all(np.diff(var) < 0)  # PCA order: each component smaller than the one before
    # the columns' variances are in proportion to the input's principal variances (whitening
    # would make them all 1)
    s = np.linalg.svd(emb.astype(np.float64) - emb.mean(axis=0), compute_uv=False)[:8]
    np.testing.assert_allclose(var / var[0], s**2 / s[0] ** 2, rtol=1e-3)
    assert var[0] / var[-1] > 3
    # the same directions, only each column scaled: per-column correlation with the whitened ones is ±1
    corr = [abs(np.corrcoef(white[:, j], plain[:, j])[0, 1]) for j in range(8)]
    np.testing.assert_allclose(corr, 1.0, atol=1e-5)
    # the explained variance does not depend on the scaling
    assert (reduce_features(emb, 8, method="pca", whiten=False).explained_variance
            == reduce_features(emb, 8, method="pca").explained_variance)
