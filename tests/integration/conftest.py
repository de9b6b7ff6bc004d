"""Integration fixtures: one real local Kafka broker per session (started through the project's
own `broker_up`), a fresh topic prefix + consumer group + state dir per test, and workers run
as real `python -m stream worker` processes."""

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
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from stream import Settings, broker_down, broker_up

REPO = Path(__file__).resolve().parents[2]
#: Tests use their own broker port and state dir so they never touch a running demo.
TEST_BOOTSTRAP = os.environ.get("PROFILESTREAM_TEST_BOOTSTRAP", "127.0.0.1:39092")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def broker() -> Iterator[Settings]:
    s = Settings.from_env({}, bootstrap_servers=TEST_BOOTSTRAP, state_dir=REPO / ".profilestream" / "test-broker")
    info = broker_up(s, quiet=False)
    yield s
    if info.started_by_us:
        broker_down(s)


@pytest.fixture(scope="session")
def ml_artifact(broker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random artifact over the ML-100k catalogue (training is tested in its own tests)."""
    from model import init_random_artifact, load_ml100k

    out = tmp_path_factory.mktemp("ml-model") / "model"
    init_random_artifact(load_ml100k(broker.cache_dir), out, seed=3)
    return out


class Worker:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")}
        env.update({
            "PROFILESTREAM_BOOTSTRAP_SERVERS": s.bootstrap_servers, "PROFILESTREAM_TOPIC_PREFIX": s.topic_prefix,
            "PROFILESTREAM_STATE_DIR": str(s.state_dir), "PROFILESTREAM_ARTIFACT": str(s.artifact_path),
            "PROFILESTREAM_WEB_PORT": str(s.web_port), "PROFILESTREAM_BATCH_SIZE": str(s.batch_size),
            "PROFILESTREAM_PARTITIONS": str(s.partitions), "PROFILESTREAM_CACHE_DIR": str(s.cache_dir),
            "PROFILESTREAM_STANDBY_REPLICAS": "0",
        })
        return env

    def start(self, *, ready_timeout: float = 90.0) -> "Worker":
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "stream", "worker"], cwd=REPO, env=self.env(),
                                         stdout=f, stderr=subprocess.STDOUT)
        self.starts += 1
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.settings.web_port}/ready"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if json.loads(r.read()).get("ready"):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.tail()}")

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
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture
def stream_settings(broker: Settings, ml_artifact: Path, tmp_path: Path) -> Settings:
    """Fresh topic prefix (hence consumer group) and state dir for this test."""
    return broker.with_(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", state_dir=tmp_path / "state",
                        artifact=ml_artifact, web_port=free_port(), partitions=3)


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(settings: Settings, name: str = "worker") -> Worker:
        w = Worker(settings, tmp_path / f"{name}.log")
        workers.append(w)
        return w

    yield make
    for w in workers:
        if w.alive():
            w.stop(signal.SIGKILL)


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, poll: Callable[[], None] | None = None) -> None:
    """Await a condition with a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if poll is not None:
            poll()
        if predicate():
            return
        if poll is None:
            time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
