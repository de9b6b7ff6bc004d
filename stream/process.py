"""A worker as a child process (`python -m stream worker`, or another module such as the bench's
echo app): start, await readiness on its web port, read its metrics, stop with a signal.
Used by the demo, the bench and the integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path

from .errors import WorkerExited
from .settings import Settings

__all__ = ["WorkerProcess", "worker_env", "free_port", "describe_exit"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a child worker's web server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(s: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child worker resolve exactly these settings: every field of
    `Settings`, written to its own environment variable (inherited PROFILESTREAM_* are dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")}
    for f in fields(Settings):
        value = s.artifact_path if f.name == "artifact" else getattr(s, f.name)
        if value is not None:
            env[f.metadata["env"]] = str(value)
    env.update(extra)
    return env


def exit_words(code: int) -> str:
    """A return code in words: "was killed by SIGKILL" (negative: the signal), "exited with status 1"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def describe_exit(code: int | None) -> str:
    """How a worker ended, in words, from its return code (negative: the signal that killed it), with
    what the worker's own statuses mean."""
    from .output import EXIT_OUTPUT_FAILED
    from .stall import EXIT_STALLED
    from .worker import EXIT_SHUTDOWN_TIMEOUT

    if code is None:
        return "is still running"
    why = {0: "a clean stop: something sent it SIGINT or SIGTERM",
           EXIT_SHUTDOWN_TIMEOUT: "its graceful stop took too long",
           EXIT_OUTPUT_FAILED: "its outputs could not be delivered",
           EXIT_STALLED: "its stall watchdog found it stuck"}.get(code) if code >= 0 else None
    return exit_words(code) + (f" ({why})" if why else "")


class WorkerProcess:
    def __init__(self, settings: Settings, log: Path, *, module: str = "stream", args: tuple[str, ...] = ("worker",),
                 cwd: Path | None = None) -> None:
        self.settings = settings
        self.log = log
        self.cmd = [sys.executable, "-m", module, *args]
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, ready_timeout: float = 120.0) -> "WorkerProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=worker_env(self.settings), stdout=f,
                                         stderr=subprocess.STDOUT)
        self.starts += 1
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.settings.web_port}/ready"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise self.exited("before it was ready", lines=50)
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if json.loads(r.read()).get("ready"):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready within {timeout:.0f} s:\n{self.tail()}")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.web_port}/metrics", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    out[name] = float(value)
            return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def asks_for_restart(self) -> bool:
        """Whether the worker ended with a status that asks its supervisor for a fresh one: the stall
        watchdog's (EXIT_STALLED) or a stuck or failed output producer's (EXIT_OUTPUT_FAILED). A
        fresh worker applies the uncommitted events again from the committed offsets."""
        from .output import EXIT_OUTPUT_FAILED
        from .stall import EXIT_STALLED

        return self.proc is not None and self.proc.returncode in (EXIT_STALLED, EXIT_OUTPUT_FAILED)

    def how_it_ended(self) -> str:
        """`describe_exit` of this worker's return code ("is still running" while it runs)."""
        return describe_exit(None if self.proc is None else self.proc.returncode)

    def exited(self, what: str, *, lines: int = 12) -> WorkerExited:
        """The error for a worker that ended while `what` needed it: how it ended, its log's path
        and last `lines` lines."""
        last = "\n".join(self.tail(20_000).splitlines()[-lines:])
        return WorkerExited(f"the worker {self.how_it_ended()} {what}. Its log is {self.log}; the last lines:\n{last}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""
