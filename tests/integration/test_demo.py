"""`profilestream demo` (what `make demo` runs) against the real broker, with a random model so no
training is needed: it replays ML-100k, shows profiles coming back, and stops what it started,
both at the end of `--duration` and when its terminal goes away (SIGHUP); a worker or a broker of
its own that dies under it is named, with no traceback and no page of client errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from stream import Settings, broker_status
from stream.broker import _pid_alive, broker_down
from stream.process import free_port, worker_env

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


@contextmanager
def _running_demo(settings: Settings, **kw: object) -> Iterator[tuple[subprocess.Popen[str], list[str], int]]:
    """A demo whose view shows profile updates: (process, its output lines so far, its worker's pid).
    On the way out, whatever is still running of it is killed."""
    proc = _demo(settings, **kw)
    lines: list[str] = []
    workers: list[int] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lambda: any(int(m.group(2)) > 0 for m in map(STATUS.search, list(lines)) if m),
                 timeout=180, what="profile updates in the demo's view")
        workers += [pid for pid in _children(proc.pid) if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 1, workers  # (a broker the demo started is its child too)
        yield proc, lines, workers[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in workers:  # a worker the demo left behind must not outlive the test
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        reader.join(10)


def test_demo_stops_its_worker_when_its_terminal_hangs_up(stream_settings: Settings) -> None:
    """Before stream/signals.py, SIGHUP killed the demo outright and left its worker (and a broker it
    had started) running."""
    with _running_demo(stream_settings) as (proc, lines, worker):
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=90) == 128 + signal.SIGHUP, "".join(lines)[-3000:]
        assert not _pid_alive(worker), f"the demo's worker (pid {worker}) outlived it"
    assert broker_status(stream_settings)[1]  # a broker the demo did not start is left running


def _as_a_terminal_starts_it() -> None:
    # A terminal's shell runs the demo as the foreground job: its own process group, SIGINT at its
    # default (a shell running this suite in the background would have it ignored, and Python keeps
    # an ignored SIGINT ignored).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_demo_and_its_worker_cleanly(stream_settings: Settings) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group, the worker included,
    which then stops on its own while the demo cleans up. The demo must end as Ctrl-C should (status
    0, no error, no traceback) and leave no worker behind."""
    with _running_demo(stream_settings, start_new_session=True, preexec_fn=_as_a_terminal_starts_it) as (
            proc, lines, worker):
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=90) == 0, "".join(lines)[-3000:]
        assert not _pid_alive(worker), f"the demo's worker (pid {worker}) outlived it"
    out = "".join(lines)
    assert "stopping …" in out, out[-3000:]
    assert "Traceback" not in out and "error:" not in out, out[-3000:]
    assert broker_status(stream_settings)[1]


def test_a_worker_that_dies_under_the_demo_is_named_without_a_traceback(stream_settings: Settings) -> None:
    """Until 2026-12-07 a worker that ended under the demo gave a RuntimeError traceback and "see the
    log"; now the demo says how the worker ended, where its log is, and its last lines."""
    with _running_demo(stream_settings) as (proc, lines, worker):
        os.kill(worker, signal.SIGKILL)
        assert proc.wait(timeout=90) == 2, "".join(lines)[-3000:]
    out = "".join(lines)
    assert "error: the worker was killed by SIGKILL while the demo ran. Its log is " in out, out[-3000:]
    assert "worker.log; the last lines:" in out, out[-3000:]
    assert "stopped (the broker was already running; left as it was)" in out, out[-3000:]  # not "the worker"
    assert "Traceback" not in out, out[-3000:]
    assert broker_status(stream_settings)[1]


def _free_port_pair() -> int:
    """A free port whose next port is free too: the local broker's controller takes port + 1."""
    import socket

    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_a_broker_the_demo_started_that_dies_under_it_is_named(ml_artifact: Path, tmp_path: Path) -> None:
    """`make demo` starts its own broker. Until 2026-12-07, when that broker died the demo went on
    showing a frozen view under librdkafka's "Connection refused" lines, about twenty a second, and
    never said why; now it stops within seconds, says how the broker ended and where its log is, and
    shows each kind of client error line once."""
    s = Settings.from_env({}, bootstrap_servers=f"127.0.0.1:{_free_port_pair()}", state_dir=tmp_path / "own",
                          artifact=ml_artifact, web_port=free_port(), partitions=3)
    try:
        with _running_demo(s) as (proc, lines, worker):
            rec = broker_status(s)[0]
            assert rec is not None and rec.pid > 0, "the demo should have started a broker of its own"
            os.kill(rec.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == 2, "".join(lines)[-3000:]
            assert not _pid_alive(worker), f"the demo's worker (pid {worker}) outlived it"
    finally:
        broker_down(s)  # the broker runs in a session of its own: a failed test must not leave it running
    out = "".join(lines)
    assert (f"error: the Kafka broker the demo started (pid {rec.pid}) was killed by SIGKILL while the demo ran. "
            f"Its log is {tmp_path / 'own' / 'kafka' / 'logs' / 'server.log'}") in out, out[-3000:]
    assert "Run the demo again to start a fresh broker." in out
    assert "stopped the worker\n" in out, out[-3000:]  # the broker was gone already: not "and the Kafka broker"
    assert "Traceback" not in out, out[-3000:]
    client_lines = [ln for ln in out.splitlines() if "Connection refused" in ln]
    assert all(ln.startswith("kafka client rdkafka#") for ln in client_lines), client_lines
    assert len(client_lines) <= 8, client_lines
