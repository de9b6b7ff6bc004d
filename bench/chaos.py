"""Chaos harness: replay a dataset while killing/restarting workers, restarting the broker or
changing the number of workers, then compare every user's final profile with the offline pass.

Counts: `lost` (events the final profile is missing), `applied_twice` (events counted more than
once), `worker_crashes` (workers that died without being killed by the harness), `dlq`,
`users_checked`, `max_abs_diff` (final profile vector vs offline pass), `recovery_s`.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model import Pending, ProfileModel, validate_event
from stream.consume import OutputFollower
from stream.process import WorkerProcess, free_port
from stream.replay import iter_dataset_events, produce_events
from stream.settings import Settings
from stream.topics import ensure_topics

__all__ = ["run_chaos", "Scenario"]

Scenario = Literal["kill", "broker", "rebalance"]


def _offline(model: ProfileModel, histories: dict[str, list[dict[str, Any]]]) -> dict[str, tuple[int, np.ndarray]]:
    """Every user's (events applied, profile vector) after an offline pass: all users in one
    batched `apply`, one LSTM round per event position."""
    users = list(histories)
    states = [model.initial_state() for _ in users]
    model.apply([(st, [Pending(validate_event(e, now=float("inf"))) for e in histories[u]])
                 for st, u in zip(states, users)])
    outs = model.outputs(list(zip(users, states)), k=1)
    return {u: (st.events_seen, np.array(p["vector"])) for u, st, (p, _) in zip(users, states, outs)}


class _Workers:
    def __init__(self, base: Settings, workdir: Path) -> None:
        self.base = base
        self.workdir = workdir
        self.workers: list[WorkerProcess] = []
        self.killed_by_us: set[int] = set()  # PIDs the harness stopped itself
        self.crashes = 0

    def add(self) -> WorkerProcess:
        n = len(self.workers)
        s = self.base.with_(state_dir=self.workdir / f"w{n}", web_port=free_port())
        w = WorkerProcess(s, self.workdir / f"w{n}.log")
        self.workers.append(w)
        return w.start(ready_timeout=180)

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def check_crashes(self) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is not None and w.proc.pid not in self.killed_by_us:
                self.crashes += 1
                self.killed_by_us.add(w.proc.pid)  # count once
                print(f"  worker crashed (exit {w.proc.returncode}); log {w.log}", file=sys.stderr)

    def stop(self, w: WorkerProcess, sig: int) -> None:
        assert w.proc is not None
        self.killed_by_us.add(w.proc.pid)
        w.stop(sig)

    def stop_all(self) -> None:
        for w in self.live():
            self.stop(w, signal.SIGTERM)


def run_chaos(settings: Settings, *, scenario: Scenario, dataset: str = "ml-100k", events: int | None = None,
              kills: int = 5, rate: float | None = 600.0, seed: int = 0, batch_size: int = 64,
              workdir: Path | None = None, settle_timeout: float = 600.0) -> dict[str, Any]:
    from stream.broker import broker_down, broker_up, wait_reachable

    rng = random.Random(seed)
    workdir = workdir or Path(settings.state_dir) / "chaos" / uuid.uuid4().hex[:8]
    s = settings.with_(topic_prefix=f"chaos{uuid.uuid4().hex[:8]}.", batch_size=batch_size, standby_replicas=0)
    info = broker_up(s, quiet=True)
    if scenario == "broker" and not info.started_by_us and info.pid < 0:
        raise RuntimeError("the broker scenario restarts the local broker: run it against `profilestream broker up`")
    ensure_topics(s)
    evs = list(iter_dataset_events(dataset, s))[:events]
    histories: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        histories.setdefault(str(e["user_id"]), []).append(e)
    workers = _Workers(s, workdir)
    follower = OutputFollower(s)
    workers.add()
    sent = [0]
    producer = threading.Thread(target=produce_events, args=(s, evs), daemon=True,
                                kwargs={"rate": rate, "progress": True, "on_send": lambda n, _: sent.__setitem__(0, n + 1)})
    t_start = time.monotonic()
    producer.start()
    n = len(evs)
    if scenario == "kill":
        points = sorted(rng.uniform(0.05, 0.9) * n for _ in range(kills))
    elif scenario == "broker":
        points = [n / 3, 2 * n / 3]
    else:
        points = [n * f for f in (0.15, 0.35, 0.6)]
    recovery: list[float] = []
    for j, point in enumerate(points):
        while sent[0] < point and producer.is_alive():
            follower.poll(0.1)
            workers.check_crashes()
        at = sent[0]
        if scenario == "kill":
            victim = rng.choice(workers.live())
            workers.stop(victim, signal.SIGKILL)
            t0 = time.monotonic()
            victim.start(ready_timeout=180)
            recovery.append(time.monotonic() - t0)
            print(f"  kill -9 #{j + 1} at ~{at} events: ready again after {recovery[-1]:.1f} s", file=sys.stderr)
        elif scenario == "broker":
            t0 = time.monotonic()
            broker_down(s)
            broker_up(s, quiet=True)
            wait_reachable(s, timeout=60)
            recovery.append(time.monotonic() - t0)
            print(f"  broker restart at ~{at} events: back after {recovery[-1]:.1f} s", file=sys.stderr)
        else:
            if j < 2:
                workers.add()
            else:
                for w in workers.live()[1:]:
                    workers.stop(w, signal.SIGTERM)
            print(f"  rebalance at ~{at} events: {len(workers.live())} worker(s)", file=sys.stderr)
    producer.join()
    expected = {u: len(h) for u, h in histories.items()}
    deadline = time.monotonic() + settle_timeout
    # Settled when every user shows its expected count, or nothing new arrived for 30 s.
    while time.monotonic() < deadline:
        follower.poll(0.2)
        workers.check_crashes()
        if all(follower.profiles.get(u, {}).get("events_seen") == c for u, c in expected.items()):
            break
        if time.monotonic() - follower.last_record_at > 30:
            break
    elapsed = time.monotonic() - t_start
    model = ProfileModel.load(s.artifact_path)
    offline = _offline(model, histories)
    lost = twice = 0
    worst = 0.0
    for u, (count, vec) in offline.items():
        prof = follower.profiles.get(u)
        got = prof["events_seen"] if prof else 0
        lost += max(0, count - got)
        twice += max(0, got - count)
        if prof and got == count:
            worst = max(worst, float(np.max(np.abs(np.array(prof["vector"]) - vec))))
    workers.check_crashes()
    summary = {"scenario": scenario, "events": n, "users_checked": len(offline), "lost": lost,
               "applied_twice": twice, "worker_crashes": workers.crashes, "dlq": len(follower.dlq),
               "max_abs_diff": worst, "recovery_s": [round(r, 2) for r in recovery], "seconds": round(elapsed, 1),
               "events_per_s": round(n / elapsed, 1)}
    workers.stop_all()
    follower.close()
    return summary
