"""Integration fixtures: one real local Kafka broker per session (started through the project's
own `broker_up`), a fresh topic prefix + consumer group + state dir per test, and workers run
as real `python -m stream worker` processes."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bench.chaos import log_digest
from stream import Settings, broker_down, broker_status, broker_up
from stream.consume import OutputFollower
from stream.process import WorkerProcess, free_port

from .helpers import caught_up

REPO = Path(__file__).resolve().parents[2]
#: Tests use their own broker port and state dir so they never touch a running demo. The port is
#: below Linux's ephemeral range (32768-60999): there a client socket can hold it and the broker
#: (re)start fails with "Address already in use".
TEST_BOOTSTRAP = os.environ.get("PROFILESTREAM_TEST_BOOTSTRAP", "127.0.0.1:29092")


@pytest.fixture(scope="session")
def broker() -> Iterator[Settings]:
    s = Settings.from_env({}, bootstrap_servers=TEST_BOOTSTRAP, state_dir=REPO / ".profilestream" / "test-broker")
    if broker_status(s)[0] is None:  # not running: start from empty storage (test topics are disposable)
        shutil.rmtree(s.state_dir, ignore_errors=True)
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


Worker = WorkerProcess


@pytest.fixture
def stream_settings(broker: Settings, ml_artifact: Path, tmp_path: Path) -> Settings:
    """Fresh topic prefix (hence consumer group) and state dir for this test."""
    return broker.with_(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", state_dir=tmp_path / "state",
                        artifact=ml_artifact, web_port=free_port(), partitions=3)


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def make(settings: Settings, name: str = "worker") -> Worker:
        w = Worker(settings.with_(standby_replicas=0), tmp_path / f"{name}.log", cwd=REPO)
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


def wait_caught_up(outputs: OutputFollower, want: dict[str, int], *, timeout: float, what: str,
                   logs: Path | None = None) -> None:
    """`wait_for` every user's profile to count `want[user]` events (and its recommendations to
    match it). On timeout the error names the users that are off, (expected, got), and the stale
    records, and the lines of the worker logs under `logs` that explain what the workers did (CI
    keeps only what a failed test printed)."""
    try:
        wait_for(lambda: caught_up(outputs, want), timeout=timeout, what=what, poll=outputs.poll)
    except AssertionError as exc:
        off = {u: (n, outputs.profiles.get(u, {}).get("events_seen")) for u, n in want.items()
               if outputs.profiles.get(u, {}).get("events_seen") != n}
        shown = dict(sorted(off.items())[:20])
        if logs is not None:
            print(log_digest(logs))
        raise AssertionError(f"{exc}; {len(off)} users off (expected, got), the first {len(shown)}: {shown}; "
                             f"stale records {outputs.stale}") from None

