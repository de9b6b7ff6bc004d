"""`profilestream demo` (what `make demo` runs) against the real broker, with a random model so no
training is needed: it replays ML-100k, shows profiles coming back, and stops what it started,
both at the end of `--duration` and when its terminal goes away (SIGHUP)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stream import Settings, broker_status
from stream.broker import _pid_alive
from stream.process import worker_env

from .conftest import REPO, wait_for

pytestmark = pytest.mark.integration

STATUS = re.compile(r"(\d+) events sent \(\d+/s\), (\d+) profile updates, (\d+) in DLQ")


def _demo(settings: Settings, *args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "stream", "demo", "--rate", "300", *args], cwd=REPO,
                            env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kw)  # type: ignore[call-overload]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:  # field 4: the parent's pid
                out.append(int(entry.name))
    return out


def test_demo_shows_profiles_and_stops_its_worker_after_duration(stream_settings: Settings) -> None:
    proc = _demo(stream_settings, "--duration", "6")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    statuses = [tuple(map(int, m.groups())) for m in STATUS.finditer(out)]
    assert statuses, out[-3000:]
    sent, updates, dlq = statuses[-1]
    assert sent > 0 and updates > 0 and dlq == 0, statuses[-1]
    assert re.search(r"^user \S+ +events \d+ +updates \d+ +tags: ", out, re.M), out[-3000:]  # the live view
    assert "demo finished" in out
    assert "stopped the worker (the broker was already running; left as it was)" in out
    assert broker_status(stream_settings)[1]  # the test broker, not started by the demo, still answers


def test_demo_stops_its_worker_when_its_terminal_hangs_up(stream_settings: Settings) -> None:
    """Before stream/signals.py, SIGHUP killed the demo outright and left its worker (and a broker it
    had started) running."""
    proc = _demo(stream_settings)
    lines: list[str] = []
    workers: list[int] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lambda: any(int(m.group(2)) > 0 for m in map(STATUS.search, list(lines)) if m),
                 timeout=180, what="profile updates in the demo's view")
        workers += _children(proc.pid)
        assert len(workers) == 1, workers
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=90) == 128 + signal.SIGHUP, "".join(lines)[-3000:]
        assert not _pid_alive(workers[0]), f"the demo's worker (pid {workers[0]}) outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in workers:  # a worker the demo left behind must not outlive the test
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert broker_status(stream_settings)[1]  # a broker the demo did not start is left running
