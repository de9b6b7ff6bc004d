"""The Triton kernels of the CUDA step (model/gpu_kernels.py) against the torch path, run on the
CPU under Triton's interpreter in a child process (tests/unit/gpu_kernel_checks.py says why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("check", ["lstm", "topk", "ties", "runtime"])
def test_triton_kernel_matches_torch(check: str) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.unit.gpu_kernel_checks", check], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"ok {check}" in proc.stdout
