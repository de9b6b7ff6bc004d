"""The bench's per-event CPU accounting reads the right fields of /proc/PID/stat."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.e2e import _CpuMeter, cpu_seconds

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def _os_cpu() -> float:
    t = os.times()
    return t.user + t.system


def test_cpu_seconds_agrees_with_os_times_for_this_process() -> None:
    a_os, a = _os_cpu(), cpu_seconds()
    _burn(0.3)
    b_os, b = _os_cpu(), cpu_seconds()
    assert a is not None and b is not None
    # both count this process's user + system time in clock ticks; the other stat fields
    # (children's time, start time, memory) would not follow the burn like this
    assert abs(a - a_os) < 0.03 and abs(b - b_os) < 0.03
    assert b - a >= 0.25


def test_cpu_seconds_of_another_process_and_of_a_gone_one() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.4\n"
                              "while time.process_time() < end: pass\nimport sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        used = 0.0
        while used < 0.35 and time.monotonic() < deadline:  # until the child has burned its 0.4 s
            used = cpu_seconds(child.pid) or 0.0
            time.sleep(0.02)
        assert used >= 0.35
        assert cpu_seconds(child.pid) < 5.0  # it only burned ~0.4 s: not a start time or a size
    finally:
        child.communicate(b"", timeout=30)
    assert cpu_seconds(child.pid) is None  # reaped: no /proc entry


def test_meter_reports_per_event_cpu_and_leaves_unknown_processes_empty() -> None:
    meter = _CpuMeter(os.getpid(), broker_pid=-1)
    meter.start()
    _burn(0.2)
    row = meter.stop(1000)
    assert row["broker_cpu_us_per_event"] is None  # pid -1: a broker this bench did not start
    # worker and client are this same process here, so they read the same ~200 µs per event
    assert row["worker_cpu_us_per_event"] >= 150
    assert abs(row["worker_cpu_us_per_event"] - row["client_cpu_us_per_event"]) <= 20
    assert row["worker_cores"] > 0
