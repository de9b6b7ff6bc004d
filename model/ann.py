"""Approximate top-K for big catalogues: a faiss IVF-Flat index over the item vectors.

The model scores an item as `user · item + bias(item)`. That is one inner product in one more
dimension, `[user, 1] · [item, bias]`, so a maximum-inner-product index over the augmented item
vectors returns the same ranking as brute force, except for the items it does not visit.
`nprobe` of the `nlist = √n` lists are searched per query. The bench (`bench/micro.py`,
`bench_ann`) measures the speed-up and recall@10 at 100k and 1M items; bench/README.md has the
numbers. faiss-cpu is imported only when an index is built.

Building takes seconds at 1M items (≈ 3–5.5 s on 2 cores), so a worker passes a cache directory:
the index is stored there under a hash of exactly what it was built from (the augmented item
matrix, nlist, the training sample's seed and size, the faiss version) and loaded on the next
start. A cached file that cannot be read, or does not match, is rebuilt and replaced; the
`CACHE_KEEP` most recently used indexes are kept.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["AnnIndex", "DEFAULT_ANN_NPROBE", "DEFAULT_ANN_MIN_ITEMS"]

log = logging.getLogger("profilestream.ann")

#: Catalogues with at least this many items use the index in the stream (below, brute force is
#: fast: 1,682 items take ≈ 25 µs per query on one core).
DEFAULT_ANN_MIN_ITEMS = 100_000
#: Lists searched per query. At 1M items grown from ML-100k's item vectors: recall@10 ≈ 0.99 at
#: ≈ 85× the brute-force speed on 2 cores (bench/README.md).
DEFAULT_ANN_NPROBE = 16
#: Indexes kept in a cache directory (the most recently used): a rolled-back model still starts fast.
CACHE_KEEP = 3


@dataclass
class AnnIndex:
    index: object
    nlist: int
    nprobe: int
    build_seconds: float

    #: where the index came from: "built", "loaded from the cache" (`cache_dir`) or "built and cached"
    source: str = "built"
    #: the cache file, when a cache directory was given
    cache_path: Path | None = None

    @classmethod
    def build(cls, item_vecs: np.ndarray, item_bias: np.ndarray, *, nprobe: int = DEFAULT_ANN_NPROBE,
              seed: int = 0, cache_dir: Path | None = None) -> "AnnIndex":
        """Index (N, D) item vectors and (N,) biases. Training uses up to 64 items per list,
        drawn with `seed`, so one artifact always gives the same index. With `cache_dir`, an
        index built before from the same inputs is loaded instead, and a new one is saved."""
        try:
            import faiss
        except ImportError as exc:  # pragma: no cover - faiss-cpu is a declared dependency
            raise RuntimeError("the ANN top-K needs faiss-cpu: pip install faiss-cpu") from exc
        t0 = time.perf_counter()
        X = np.ascontiguousarray(np.hstack([item_vecs, item_bias[:, None]]), dtype=np.float32)
        n, d = X.shape
        nlist = max(1, int(round(math.sqrt(n))))
        n_train = min(n, 64 * nlist)
        index, source, path = None, "built", None
        if cache_dir is not None:
            h = hashlib.sha256(memoryview(X).cast("B"))  # type: ignore[arg-type]  # numpy arrays are buffers  # no copy; SHA extensions: ≈ 0.2 s per 1M × 65 floats
            h.update(f"{n}x{d} nlist={nlist} seed={seed} train={n_train} faiss={faiss.__version__}".encode())
            path = Path(cache_dir) / f"ivf{nlist}-{h.hexdigest()[:32]}.faiss"
            index = cls._read(path, n, d, nlist)
            if index is not None:
                source = "loaded from the cache"
        if index is None:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            sample = np.random.default_rng(seed).choice(n, size=n_train, replace=False)
            index.train(X[np.sort(sample)])
            index.add(X)
            if path is not None and cls._write(index, path):
                source = "built and cached"
        out = cls(index, nlist, nprobe, time.perf_counter() - t0, source, path)
        out.set_nprobe(nprobe)
        return out

    @staticmethod
    def _read(path: Path, n: int, d: int, nlist: int) -> object | None:
        import faiss

        if not path.is_file():
            return None
        try:
            index = faiss.read_index(str(path))
        except Exception as exc:  # noqa: BLE001 - faiss raises RuntimeError with its C++ message
            log.warning("ANN index cache %s is unreadable (%s): rebuilding it", path, str(exc).splitlines()[0][:200])
            return None
        got = (getattr(index, "ntotal", None), getattr(index, "d", None), getattr(index, "nlist", None))
        if got != (n, d, nlist):
            log.warning("ANN index cache %s holds %s (items, dim, lists), expected %s: rebuilding it", path, got,
                        (n, d, nlist))
            return None
        try:
            os.utime(path)  # recently used: pruning keeps it
        except OSError:
            pass
        return index

    @staticmethod
    def _write(index: Any, path: Path) -> bool:
        """Save atomically (a reader never sees half a file), then drop all but the
        `CACHE_KEEP` most recently used indexes (each model version adds one; 256 MiB at 1M
        items). A cache that cannot be written only costs the next start a rebuild."""
        import faiss

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            faiss.write_index(index, str(tmp))
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            log.warning("could not cache the ANN index at %s (%s): the next start builds it again", path, exc)
            tmp.unlink(missing_ok=True)
            return False
        try:
            cached = sorted(path.parent.glob("ivf*.faiss"), key=lambda f: f.stat().st_mtime, reverse=True)
            for old in cached[CACHE_KEEP:]:
                old.unlink()
                log.info("ANN index cache: removed the least recently used %s", old)
        except OSError as exc:  # another worker pruning at the same time
            log.info("ANN index cache: pruning stopped (%s)", exc)
        return True

    def set_nprobe(self, nprobe: int) -> None:
        self.nprobe = min(nprobe, self.nlist)
        self.index.nprobe = self.nprobe  # type: ignore[attr-defined]

    def topk(self, uvec: np.ndarray, exclude: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) item indices and scores for (B, D) user vectors, never an index listed in
        `exclude[row]`; ranked by score, equal scores by item index. A row whose visited lists
        hold fewer than k allowed items is padded with index -1 and score -inf."""
        B = len(uvec)
        q = np.ascontiguousarray(np.hstack([uvec, np.ones((B, 1), uvec.dtype)]), dtype=np.float32)
        extra = max((len(e) for e in exclude), default=0)
        scores, idx = self.index.search(q, k + extra)  # type: ignore[attr-defined]
        out_i = np.full((B, k), -1, np.int64)
        out_s = np.full((B, k), -np.inf, np.float32)
        for r in range(B):
            keep = idx[r] >= 0
            if len(exclude[r]):
                keep &= ~np.isin(idx[r], exclude[r])
            ii, ss = idx[r][keep], scores[r][keep]
            order = np.lexsort((ii, -ss))[:k]
            out_i[r, :len(order)] = ii[order]
            out_s[r, :len(order)] = ss[order]
        return out_i, out_s
