"""`broker_up` on a broker that is already running: it reports the broker as not started by this
call, so a demo, bench or test run that found it running leaves it running."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream import Settings, broker_status, broker_up

pytestmark = pytest.mark.integration


def test_broker_up_on_a_running_broker_does_not_claim_to_have_started_it(broker: Settings) -> None:
    rec, reachable = broker_status(broker)
    assert rec is not None and reachable  # the session's broker, managed by its state dir
    info = broker_up(broker, quiet=True)
    assert info.pid == rec.pid and info.bootstrap == rec.bootstrap
    assert info.started_by_us is False  # so callers that stop "their" broker leave this one alone
    proc = subprocess.run([sys.executable, "-m", "stream", "broker", "up", "--bootstrap-servers",
                           broker.bootstrap_servers, "--state-dir", str(broker.state_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Kafka (already running) ready at {rec.bootstrap}" in proc.stdout and f"pid {rec.pid}" in proc.stdout
    assert broker_status(broker)[0] is not None  # still running afterwards
