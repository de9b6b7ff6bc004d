"""The ANN top-K microbenchmark measures recall against the exact top 10: an exhaustive search
through the index (every list probed) must find all of it, one probed list of many must not."""

from __future__ import annotations

import numpy as np

from bench.micro import bench_ann


def test_ann_recall_is_one_when_every_list_is_probed_and_lower_when_one_is() -> None:
    n = 2025  # nlist = √n = 45
    rows = bench_ann([n], dim=16, batches=[1, 8], nprobes=(45, 1), seconds=0.01, n_queries=64)
    assert {(r["method"], r["batch"]) for r in rows} == {(f"faiss IVF45,Flat nprobe {p}", b)
                                                         for p in (45, 1) for b in (1, 8)}
    recall = {r["method"].rsplit(" ", 1)[1]: r["recall_at_10"] for r in rows}
    assert recall["45"] == 1.0
    assert recall["1"] < 0.9
    assert all(r["p50_us"] > 0 and r["build_s"] > 0 and r["load_s"] > 0 for r in rows)


def test_ann_clustered_catalogue_is_grown_from_the_given_vectors() -> None:
    centers = np.eye(16, dtype=np.float32) * 10.0
    rows = bench_ann([2025], dim=16, batches=[1], nprobes=(45,), seconds=0.01, n_queries=32, centers=centers)
    assert rows and all(r["data"].startswith("clustered") and r["recall_at_10"] == 1.0 for r in rows)
