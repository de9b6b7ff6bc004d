"""Hostile input through the real broker (short version of `profilestream chaos --scenario fuzz`,
which sends 10,000): hypothesis-generated messages, about half valid renderings of ML-100k events
and half hostile, go to one worker. No crash, every invalid message in the DLQ (found by its
exact bytes) with a reason, no valid one in the DLQ, every valid one applied exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import run_fuzz
from stream import Settings

pytestmark = pytest.mark.integration


def test_fuzzed_messages_never_crash_the_worker_and_never_lose_a_good_event(
        broker: Settings, ml_artifact: Path, tmp_path: Path) -> None:
    s = broker.with_(artifact=ml_artifact, partitions=3)
    r = run_fuzz(s, events=2000, seed=1, workdir=tmp_path / "fuzz", settle_timeout=180)
    print(f"\n[fuzz] { {k: v for k, v in r.items() if k != 'kinds'} }")
    assert r["valid_sent"] >= 400 and r["invalid_sent"] >= 400  # both well represented
    assert len([k for k in r["kinds"] if k.startswith("invalid/")]) >= 10
    assert (r["worker_crashes"], r["worker_restarts"]) == (0, 0), r
    assert (r["invalid_missing_from_dlq"], r["dlq_unexpected"], r["dlq_without_reason"]) == (0, 0, 0), r
    assert r["dlq"] == r["invalid_sent"]
    assert (r["lost"], r["applied_twice"]) == (0, 0), r
    assert r["users_checked"] >= 100 and r["max_abs_diff"] <= 1e-5
