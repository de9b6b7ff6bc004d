"""`profilestream bench gpu` (bench/gpu.py) off a GPU: the report is produced and well-formed
with --device cpu, the two-stage top-K is exact, and asking for CUDA where there is none, or
for a missing artifact, fails with a message that names the fix. No timing assertions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench.gpu import main, topk_chunked
from tests.conftest import make_artifact


@pytest.mark.parametrize("n,k,chunk", [(1682, 10, 29), (1682, 10, 13), (300, 10, 7), (25, 10, 3), (12, 5, 100)])
def test_topk_chunked_equals_torch_topk(n: int, k: int, chunk: int) -> None:
    g = torch.Generator().manual_seed(n + chunk)
    scores = torch.randn(40, n, generator=g)
    scores[0, : n // 2] = -math.inf  # masked items, as the history mask leaves them
    scores[1, :] = -math.inf
    scores[1, n - 3:] = torch.tensor([3.0, 1.0, 2.0])  # fewer finite items than k
    vals, idx = topk_chunked(scores, k, chunk)
    want_vals, _ = torch.topk(scores, min(k, n), dim=1)
    assert torch.equal(vals, want_vals)
    assert torch.equal(scores.gather(1, idx), want_vals)  # each index holds the value reported for it
    assert idx[1, :3].tolist() == [n - 3, n - 1, n - 2]
    for r in range(40):  # no item twice in a row's list
        assert len(set(idx[r].tolist())) == idx.shape[1]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 300 items: the core step masks 100 history items per user
    return make_artifact(tmp_path_factory.mktemp("gpu-bench") / "model", n_items=300)


def test_cpu_report_is_produced_and_well_formed(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    rc = main(["--device", "cpu", "--quick", "--seconds", "0.05", "--artifact", str(artifact), "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "gpu.json").read_text())
    assert res["errors"] == [] and res["device"] == "cpu" and res["n_items"] == 300
    for key in ("tensor_step", "graph_core_step", "core_step", "step", "topk", "breakdown"):
        assert res[key], f"no {key} rows"
        for row in res[key]:
            assert row["p50_us"] > 0 and row["p99_us"] >= row["p50_us"] and math.isfinite(row["p50_us"])
    chunked = [r for r in res["tensor_step"] if "chunked" in r["device"]]
    assert chunked and all(r["topk_equal_to_torch"] == 1.0 for r in chunked)
    # the graph code path (run eagerly here) ranks what the model ranks, history masked
    assert all(r["topk_equal_to_model"] == 1.0 for r in res["graph_core_step"])
    s = res["summary"]
    assert s["batched_target"] == 50e6 and s["single_target_us"] == 50.0
    assert s["batched_events_per_s"] == max(r["events_per_s"] for r in res["tensor_step"])
    assert s["single_step_graph_us"] is None  # no CUDA graph was captured on a CPU
    md = (out / "gpu.md").read_text()
    assert "≥ 50 M events/s batched step" in md and "no CUDA graph was captured" in md
    assert (out / "gpu_step_vs_batch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cuda_requested_without_cuda_names_the_fix(artifact: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--artifact", str(artifact), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--device cpu" in err
    assert not (tmp_path / "r").exists()


def test_missing_artifact_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--device", "cpu", "--artifact", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "profilestream train" in capsys.readouterr().err
