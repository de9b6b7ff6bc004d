"""The packages type-check under mypy --strict (pyproject.toml [tool.mypy]; the house style asks for
it). Third-party stubs that do not declare what the code uses (nn.LSTM's weights, Faust's consumer
internals, confluent-kafka's config values) are met with a local `Any` or a `# type: ignore[code]`
that says why, never by turning a check off for a whole module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_packages_type_check_under_mypy_strict() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert proc.stdout.startswith("Success: no issues found in "), proc.stdout[-2000:]
