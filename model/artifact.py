"""The model artifact: a directory with weights, item catalogue and a manifest.

    manifest.json  format, model_version (content hash), config, metrics, data description,
                   sha256 of every other file
    weights.npz    the ProfileLSTM state dict as numpy arrays (no pickle)
    items.json     item ids (strings), titles, category indices, category names

`model_version` is a hash of the files' contents and the config: two artifacts with the same
version are the same model. Nothing is parsed out of file or directory names.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError
from .lstm import ModelConfig

__all__ = ["Catalogue", "Artifact", "save_artifact", "load_artifact", "ARTIFACT_FORMAT"]

ARTIFACT_FORMAT = 1
_FILES = ("weights.npz", "items.json")


@dataclass(frozen=True)
class Catalogue:
    item_ids: list[str]
    titles: list[str]
    categories: list[list[int]]  # per item, indices into category_names
    category_names: list[str]

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.titles) != n or len(self.categories) != n:
            raise ArtifactError("catalogue lists have different lengths")
        if len(set(self.item_ids)) != n:
            raise ArtifactError("catalogue has duplicate item ids")

    def to_json(self) -> dict[str, Any]:
        return {"item_ids": self.item_ids, "titles": self.titles, "categories": self.categories,
                "category_names": self.category_names}

    def category_matrix(self) -> np.ndarray:
        m = np.zeros((len(self.item_ids), len(self.category_names)), np.float32)  # (N, C)
        for i, cats in enumerate(self.categories):
            m[i, cats] = 1.0
        return m


@dataclass(frozen=True)
class Artifact:
    path: Path
    config: ModelConfig
    weights: dict[str, np.ndarray]
    catalogue: Catalogue
    manifest: dict[str, Any]

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def save_artifact(out: Path, *, config: ModelConfig, weights: dict[str, np.ndarray], catalogue: Catalogue,
                  extra: dict[str, Any] | None = None) -> Artifact:
    """Write an artifact directory atomically enough for a single writer (files, then manifest)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays: dict[str, Any] = {k: np.ascontiguousarray(v) for k, v in sorted(weights.items())}
    np.savez(buf, **arrays)
    blobs = {"weights.npz": buf.getvalue(),
             "items.json": json.dumps(catalogue.to_json(), separators=(",", ":")).encode()}
    cfg_json = json.dumps(config.to_dict(), sort_keys=True)
    digest = hashlib.sha256(cfg_json.encode())
    for name in _FILES:
        digest.update(blobs[name])
    manifest = {
        "format": ARTIFACT_FORMAT,
        "model_version": digest.hexdigest()[:12],
        "config": config.to_dict(),
        "files": {name: _sha256(blobs[name]) for name in _FILES},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    for name in _FILES:
        (out / name).write_bytes(blobs[name])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Artifact(out, config, dict(weights), catalogue, manifest)


def load_artifact(path: Path | str) -> Artifact:
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise ArtifactError(
            f"no model artifact at {path} (manifest.json missing) — run `profilestream train --out {path}` "
            f"or `profilestream model init --out {path}`"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{mpath} is not valid JSON ({exc.msg}): the artifact is corrupt; re-create it") from None
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{path} has artifact format {manifest.get('format')!r}, this code reads {ARTIFACT_FORMAT}; "
            "re-create it with this version's `profilestream train`"
        )
    blobs: dict[str, bytes] = {}
    for name in _FILES:
        f = path / name
        if not f.is_file():
            raise ArtifactError(f"{f} is missing: the artifact is incomplete; re-create it")
        blobs[name] = f.read_bytes()
        want = manifest.get("files", {}).get(name)
        if _sha256(blobs[name]) != want:
            raise ArtifactError(
                f"{f} does not match the sha256 in its manifest: the artifact is corrupt or was edited; re-create it"
            )
    try:
        config = ModelConfig.from_dict(manifest["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{mpath} has an unusable model config: {exc}") from None
    with np.load(io.BytesIO(blobs["weights.npz"]), allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    bad = sorted(k for k, v in weights.items() if v.dtype.kind == "f" and not np.isfinite(v).all())
    if bad:
        raise ArtifactError(f"{path}: weights {', '.join(bad)} hold NaN or infinity (training diverged?); re-train "
                            "with a lower learning rate")
    cat = json.loads(blobs["items.json"])
    catalogue = Catalogue(cat["item_ids"], cat["titles"], cat["categories"], cat["category_names"])
    if len(catalogue.item_ids) != config.n_items:
        raise ArtifactError(f"{path}: config says {config.n_items} items, items.json lists {len(catalogue.item_ids)}")
    return Artifact(path, config, weights, catalogue, manifest)
