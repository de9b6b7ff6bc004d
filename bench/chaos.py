"""Chaos harness: replay a dataset while killing/restarting workers, restarting the broker or
changing the number of workers, then compare every user's final profile with the offline pass.

Counts: `lost` (events the final profile is missing), `applied_twice` (events counted more than
once), `worker_crashes` (workers that died without being killed by the harness), `dlq`,
`users_checked`, `max_abs_diff` (final profile vector vs offline pass), `recovery_s`, and
`offset_gaps` (records an agent skipped within one consumer generation, from the worker logs),
`read_again` (times the fetch went back for records never handed to the agents, by the path that
saw it, from the worker logs: `before_seek` and `not_yielded` are part of ordinary rebalances,
`watchdog` is the backstop's; stream/app.py `_Consumer`).
`off_users` names up to 10 users whose count is wrong (expected, got), and `log_digest` pulls the
lines of the workers' logs that explain a failed run (rebalances, seeks, stalls, warnings).
"""

from __future__ import annotations

import base64
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np

from model import Pending, ProfileModel, validate_event
from stream.agents import GAP_LOG_PREFIX
from stream.consume import OutputFollower
from stream.process import WorkerProcess, free_port
from stream.replay import iter_dataset_events, produce_events
from stream.settings import Settings
from stream.topics import ensure_topics

__all__ = ["run_chaos", "run_fuzz", "Scenario", "log_digest"]

Scenario = Literal["kill", "broker", "rebalance", "failover"]


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
        #: restarts of workers that exited with EXIT_STALLED (stream/stall.py), as a supervisor would
        self.stall_restarts = 0
        self.last_restart_at = 0.0

    def add(self) -> WorkerProcess:
        n = len(self.workers)
        s = self.base.with_(state_dir=self.workdir / f"w{n}", web_port=free_port())
        w = WorkerProcess(s, self.workdir / f"w{n}.log")
        self.workers.append(w)
        return w.start(ready_timeout=180)

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def check_crashes(self) -> None:
        """Count workers that died on their own. One that exited to be restarted (status
        EXIT_STALLED from the stall watchdog, EXIT_OUTPUT_FAILED from a stuck or failed output
        producer) is started again, as the supervisor they ask for would, and counted in
        `stall_restarts` instead."""
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is not None and w.proc.pid not in self.killed_by_us:
                self.killed_by_us.add(w.proc.pid)  # count once
                if w.asks_for_restart():
                    self.stall_restarts += 1
                    print(f"  worker exited with status {w.proc.returncode} to be restarted; starting it again; "
                          f"log {w.log}", file=sys.stderr)
                    w.start(ready_timeout=180)
                    self.last_restart_at = time.monotonic()
                    continue
                self.crashes += 1
                print(f"  worker crashed (exit {w.proc.returncode}); log {w.log}", file=sys.stderr)

    def stop(self, w: WorkerProcess, sig: int) -> None:
        assert w.proc is not None
        self.killed_by_us.add(w.proc.pid)
        w.stop(sig)

    def offset_gaps(self) -> int:
        """Offset-gap warnings in the workers' logs (stream/agents.py: GapWatch)."""
        return sum(w.log.read_text(errors="replace").count(GAP_LOG_PREFIX + " on ")
                   for w in self.workers if w.log.exists())

    def read_again(self) -> dict[str, int]:
        """`read_again_counts` over the workers' logs."""
        return read_again_counts(w.log.read_text(errors="replace") for w in self.workers if w.log.exists())

    def stop_all(self) -> None:
        for w in self.live():
            self.stop(w, signal.SIGTERM)


#: The worker log line of each path that sends the fetch back for stream records the agents were
#: never handed (stream/app.py `_Consumer`), by the reason `profilestream_read_again_total` gives it.
READ_AGAIN_LINES = {
    "before_seek": re.compile(r"came before this generation's seek and were held back; reading from \d+ again"),
    "not_yielded": re.compile(r"were not yielded by Faust's getmany \([^)]*\); reading from \d+ again"),
    "watchdog": re.compile(r"fetched to \d+ but handed over only up to \d+; reading from \d+ again"),
}


def read_again_counts(logs: Iterable[str]) -> dict[str, int]:
    """How often each path of READ_AGAIN_LINES sent the fetch back, over the worker log texts `logs`
    (a worker's /metrics go with it when the harness kills it; its log stays)."""
    counts = dict.fromkeys(READ_AGAIN_LINES, 0)
    for text in logs:
        for reason, line in READ_AGAIN_LINES.items():
            counts[reason] += len(line.findall(text))
    return counts


#: Seconds without a new output after which `_settle` stops waiting, when the stall watchdog is off.
SETTLE_IDLE_S = 30.0
#: With the watchdog on, `_settle` waits its PROFILESTREAM_STALL_EXIT_S plus this long: its 5 s timer,
#: an end-offsets query that fails once right after a broker outage and builds a fresh client, and
#: slack. A worker that stalls for good after a broker restart (stream/stall.py) is silent from the
#: outage on; the harness must outwait the watchdog so that the restart it asks for can happen, as
#: under a real supervisor. Until 2026-12-04 it waited 30 s, which a watchdog of 20 s that fires on
#: its fourth check after the broker's return (≈ 20 s + 5 s + a failed query) can miss.
SETTLE_IDLE_AFTER_WATCHDOG_S = 25.0


def settle_idle_s(stall_exit_s: float) -> float:
    """How long `_settle` waits for a new output before it gives up (see SETTLE_IDLE_AFTER_WATCHDOG_S)."""
    return max(SETTLE_IDLE_S, stall_exit_s + SETTLE_IDLE_AFTER_WATCHDOG_S) if stall_exit_s > 0 else SETTLE_IDLE_S


def _settle(follower: OutputFollower, workers: _Workers, expected: dict[str, int], *, timeout: float,
            also: Callable[[], bool] = lambda: True, idle: float = SETTLE_IDLE_S) -> None:
    """Poll the outputs until every user shows its expected event count (and `also()` holds),
    nothing new arrived and no worker was restarted for `idle` seconds, or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        follower.poll(0.2)
        workers.check_crashes()
        if all(follower.profiles.get(u, {}).get("events_seen") == c for u, c in expected.items()) and also():
            return
        if time.monotonic() - max(follower.last_record_at, workers.last_restart_at) > idle:
            return


def run_chaos(settings: Settings, *, scenario: Scenario, dataset: str = "ml-100k", events: int | None = None,
              kills: int = 5, rate: float | None = 600.0, seed: int = 0, batch_size: int = 64,
              workdir: Path | None = None, settle_timeout: float = 600.0, standby: int = 0,
              event_ids: bool = True) -> dict[str, Any]:
    """Scenarios: `kill` (SIGKILL one worker `kills` times, restarting it at once), `broker` (two
    broker restarts), `rebalance` (1 → 2 → 3 → 1 workers), `failover` (two workers with `standby`
    standby replicas; one is killed half-way and not restarted: `recovery_s` is the time from the
    kill until every event sent up to 2 s after it has been applied, by the survivor for the dead
    worker's partitions). `event_ids=False` sends the events without their `event_id`."""
    from stream.broker import broker_down, broker_up, wait_reachable

    rng = random.Random(seed)
    workdir = workdir or Path(settings.state_dir) / "chaos" / uuid.uuid4().hex[:8]
    # artifact pinned: each worker gets its own state dir, which must not move STATE_DIR/model
    s = settings.with_(artifact=settings.artifact_path, topic_prefix=f"chaos{uuid.uuid4().hex[:8]}.", batch_size=batch_size,
                       standby_replicas=standby if scenario == "failover" else 0)
    info = broker_up(s, quiet=True)
    if scenario == "broker" and not info.started_by_us and info.pid < 0:
        raise RuntimeError("the broker scenario restarts the local broker: run it against `profilestream broker up`")
    ensure_topics(s)
    evs = list(iter_dataset_events(dataset, s, event_ids=event_ids))[:events]
    histories: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        histories.setdefault(str(e["user_id"]), []).append(e)
    workers = _Workers(s, workdir)
    follower = OutputFollower(s)
    try:
        workers.add()
        if scenario == "failover":
            workers.add()
        sent = [0]
        producer = threading.Thread(target=produce_events, args=(s, evs), daemon=True,
                                    kwargs={"rate": rate, "progress": True,
                                            "on_send": lambda n, _: sent.__setitem__(0, n + 1)})
        t_start = time.monotonic()
        producer.start()
        n = len(evs)
        if scenario == "kill":
            points = sorted(rng.uniform(0.05, 0.9) * n for _ in range(kills))
        elif scenario == "broker":
            points = [n / 3, 2 * n / 3]
        elif scenario == "failover":
            points = [n / 2]
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
            elif scenario == "failover":
                victim = workers.live()[-1]
                workers.stop(victim, signal.SIGKILL)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 2.0:  # events sent in the 2 s after the kill ...
                    follower.poll(0.1)
                want = Counter(str(e["user_id"]) for e in evs[:sent[0]])
                while time.monotonic() - t0 < 180:  # ... are all applied once the survivor took over
                    follower.poll(0.1)
                    workers.check_crashes()
                    if all(follower.profiles.get(u, {}).get("events_seen", 0) >= c for u, c in want.items()):
                        break
                recovery.append(time.monotonic() - t0)
                print(f"  kill -9 of worker 2 of 2 at ~{at} events (standby replicas {standby}): every event sent "
                      f"up to 2 s after the kill was applied {recovery[-1]:.1f} s after it", file=sys.stderr)
            else:
                if j < 2:
                    workers.add()
                else:
                    for w in workers.live()[1:]:
                        workers.stop(w, signal.SIGTERM)
                print(f"  rebalance at ~{at} events: {len(workers.live())} worker(s)", file=sys.stderr)
        producer.join()
        _settle(follower, workers, {u: len(h) for u, h in histories.items()}, timeout=settle_timeout,
                idle=settle_idle_s(s.stall_exit_s))
        elapsed = time.monotonic() - t_start
        lost, twice, worst, off = _compare(ProfileModel.load(s.artifact_path), histories, follower)
        workers.check_crashes()
        summary = {"scenario": scenario, "standby_replicas": s.standby_replicas, "events": n, "event_ids": event_ids,
                   "users_checked": len(histories), "lost": lost, "applied_twice": twice, "off_users": off,
                   "worker_crashes": workers.crashes, "stall_restarts": workers.stall_restarts, "dlq": len(follower.dlq), "stale_records": follower.stale,
                   "offset_gaps": workers.offset_gaps(), "read_again": workers.read_again(), "max_abs_diff": worst, "recovery_s": [round(r, 2) for r in recovery],
                   "seconds": round(elapsed, 1), "events_per_s": round(n / elapsed, 1), "logs": str(workdir)}
    finally:  # never leave a worker running, whatever went wrong
        workers.stop_all()
        follower.close()
    return summary


def _compare(model: ProfileModel, histories: dict[str, list[dict[str, Any]]],
             follower: OutputFollower) -> tuple[int, int, float, dict[str, list[int]]]:
    """(lost, applied_twice, max_abs_diff, off_users) of the followed profiles against the offline
    pass; off_users: up to OFF_USERS_SHOWN users whose count is wrong, as [expected, got]."""
    lost = twice = 0
    worst = 0.0
    off: dict[str, list[int]] = {}
    for u, (count, vec) in _offline(model, histories).items():
        prof = follower.profiles.get(u)
        got = prof["events_seen"] if prof else 0
        lost += max(0, count - got)
        twice += max(0, got - count)
        if got != count and len(off) < OFF_USERS_SHOWN:
            off[u] = [count, got]
        if prof and got == count:
            worst = max(worst, float(np.max(np.abs(np.array(prof["vector"]) - vec))))
    return lost, twice, worst, off


OFF_USERS_SHOWN = 10

#: Worker log lines that explain a failed chaos run: every warning and error, and the INFO lines on
#: rebalances, table recovery, seeks, consumer generations, commits discarded and the watchdog.
_DIGEST = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]|generation|Revoking|Setting newly assigned|Worker ready|"
                     r"Recovery complete|seek|committed offsets|first record of|Discarded commit|stall|Stopping|rebalance:|"
                     r"reading from \d+ again")


def log_digest(workdir: Path, max_lines: int = 400) -> str:
    """The lines of every worker log under `workdir` that explain what the workers did (`_DIGEST`),
    each prefixed with its log's name; at most `max_lines` per log (the last ones). For the failure
    message of a chaos test, whose worker logs are gone once CI ends."""
    out = []
    for log in sorted(workdir.glob("*.log")):
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if _DIGEST.search(ln)]
        out.append(f"--- {log.name}: {len(lines)} lines of interest" + (f", the last {max_lines}" if len(lines) > max_lines else ""))
        out += [f"{log.stem}| {ln}" for ln in lines[-max_lines:]]
    return "\n".join(out)


def run_fuzz(settings: Settings, *, dataset: str = "ml-100k", events: int = 10_000, seed: int = 0,
             rate: float | None = None, batch_size: int = 64, workdir: Path | None = None,
             settle_timeout: float = 300.0) -> dict[str, Any]:
    """Send `events` hypothesis-generated messages (about half valid renderings of real events,
    half hostile; see bench/fuzz.py) to one worker. Checks: no worker crash, every invalid
    message in the DLQ (matched by its exact bytes) with a reason, no valid message in the DLQ,
    and every valid one applied (profiles equal the offline pass over the valid events)."""
    from stream.broker import broker_up

    try:
        from .fuzz import generate
    except ImportError as exc:  # hypothesis is a dev extra
        raise RuntimeError(f"the fuzz scenario needs hypothesis ({exc}): pip install -e '.[dev]'") from None

    workdir = workdir or Path(settings.state_dir) / "chaos" / uuid.uuid4().hex[:8]
    s = settings.with_(artifact=settings.artifact_path, topic_prefix=f"fuzz{uuid.uuid4().hex[:8]}.", batch_size=batch_size,
                       standby_replicas=0)
    broker_up(s, quiet=True)
    ensure_topics(s)
    base = list(iter_dataset_events(dataset, s))[:events]
    print(f"  generating {events} messages with hypothesis (seed {seed})", file=sys.stderr)
    msgs = generate(base, events, seed=seed)
    valid = [m for m in msgs if m.valid]
    invalid = [m for m in msgs if not m.valid]
    histories: dict[str, list[dict[str, Any]]] = {}
    for m in valid:
        assert m.event is not None
        histories.setdefault(str(m.event["user_id"]), []).append(m.event)
    workers = _Workers(s, workdir)
    follower = OutputFollower(s)
    try:
        worker = workers.add()
        pid = worker.proc.pid if worker.proc else -1
        t_start = time.monotonic()
        produce_events(s, [(m.key, m.value) for m in msgs], rate=rate, progress=True)
        _settle(follower, workers, {u: len(h) for u, h in histories.items()}, timeout=settle_timeout,
                also=lambda: len(follower.dlq) >= len(invalid), idle=settle_idle_s(s.stall_exit_s))
        elapsed = time.monotonic() - t_start
        # Every invalid message must be in the DLQ, recognised by its exact bytes (a multiset match).
        sent = Counter(m.value for m in invalid)
        unexpected = 0
        no_reason = 0
        for d in follower.dlq:
            raw = None if d["raw_base64"] is None else base64.b64decode(d["raw_base64"])
            if d["stage"] == "normalize" and not d["raw_truncated"] and sent[raw] > 0:
                sent[raw] -= 1
            else:
                unexpected += 1
            if len(str(d.get("reason") or "").strip()) < 8:
                no_reason += 1
        missing = sum(sent.values())
        lost, twice, worst, off = _compare(ProfileModel.load(s.artifact_path), histories, follower)
        workers.check_crashes()
        summary = {"scenario": "fuzz", "events": len(msgs), "valid_sent": len(valid), "invalid_sent": len(invalid),
                   "users_checked": len(histories), "lost": lost, "applied_twice": twice, "off_users": off,
                   "worker_crashes": workers.crashes, "worker_restarts": int(not worker.alive() or worker.proc is None
                                                                              or worker.proc.pid != pid),
                   "dlq": len(follower.dlq), "stale_records": follower.stale,
                   "offset_gaps": workers.offset_gaps(), "invalid_missing_from_dlq": missing, "dlq_unexpected": unexpected,
                   "dlq_without_reason": no_reason, "max_abs_diff": worst, "recovery_s": [],
                   "kinds": dict(sorted(Counter(m.kind for m in msgs).items())), "seconds": round(elapsed, 1),
                   "events_per_s": round(len(msgs) / elapsed, 1), "logs": str(workdir)}
    finally:  # never leave a worker running, whatever went wrong
        workers.stop_all()
        follower.close()
    return summary
