"""Short versions of the chaos scenarios (`make chaos` runs the full ones): a broker restart and
a 1 → 2 → 3 → 1 worker rebalance mid-replay keep every user's profile exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import run_chaos
from stream import Settings

pytestmark = pytest.mark.integration


REBALANCE_BUG = ("known bug, issue 5 open: in 4 of 8 short runs on 2026-11-28 the 3 → 1 step left one user "
                 "one event short or with a profile off by ~0.04 (README, Crash safety)")


@pytest.mark.parametrize("scenario,events,rate", [
    ("broker", 4000, 300.0),
    pytest.param("rebalance", 5000, 250.0, marks=pytest.mark.xfail(reason=REBALANCE_BUG, strict=False)),
])
def test_chaos_scenario_keeps_every_profile_exact(broker: Settings, ml_artifact: Path, tmp_path: Path,
                                                  scenario: str, events: int, rate: float) -> None:
    s = broker.with_(artifact=ml_artifact, partitions=3)
    r = run_chaos(s, scenario=scenario, events=events, rate=rate, workdir=tmp_path / "chaos",  # type: ignore[arg-type]
                  settle_timeout=240)
    print(f"\n[chaos {scenario}] {r}")
    assert r["users_checked"] >= 40
    assert (r["lost"], r["applied_twice"], r["worker_crashes"]) == (0, 0, 0), r
    assert r["max_abs_diff"] <= 1e-5
    assert len(r["recovery_s"]) == (2 if scenario == "broker" else 0)
