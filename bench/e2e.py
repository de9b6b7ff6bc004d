"""End-to-end latency and throughput through the real broker, with floors measured in the same
run: the transport floor (producer → plain consumer), the Faust echo floor (a Faust agent
forwarding each event) and the full pipeline (normalise → LSTM step → outputs), micro-batching
off and on.

Latency of one output = its receive time − the send time of the newest event it reflects. The
producer writes the send time (epoch seconds, float64) into the event's `ts`; the pipeline
carries it into `source_event_ts`. Producer, consumer and worker run on one machine, one clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stream.consume import TopicReader
from stream.metrics import BATCH_PHASES
from stream.process import WorkerProcess, free_port
from stream.settings import Settings
from stream.topics import ensure_topics, topic_names

from .hdr import HdrHistogram

__all__ = ["Pipeline", "latency_run", "throughput_run", "sustained_run", "start_pipeline", "cpu_seconds",
           "latency_over_time", "slow_outputs"]


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds a process (all its threads) has used so far; `None` = this
    process. Read from Linux's /proc/PID/stat (utime and stime, fields 14 and 15); None where
    that does not exist (another OS) or the process is gone."""
    try:
        with open(f"/proc/{pid if pid is not None else 'self'}/stat") as f:
            # the command name (field 2) may hold spaces and ')': split after its last ')'
            rest = f.read().rpartition(")")[2].split()  # rest[0] is field 3
    except OSError:
        return None
    return (int(rest[14 - 3]) + int(rest[15 - 3])) / os.sysconf("SC_CLK_TCK")


class _CpuMeter:
    """CPU time used by the worker, the broker and this bench process (its producer and consumer
    threads included) between `start()` and `stop()`, per event: what each side costs an event,
    independent of how the two cores were shared out between them while it ran. A process whose
    pid is unknown (None, or -1 for a broker this bench did not start) reads as None."""

    def __init__(self, worker_pid: int | None, broker_pid: int | None) -> None:
        pids = {"worker": worker_pid, "broker": broker_pid, "client": os.getpid()}
        self.pids: dict[str, int | None] = {k: pid if pid and pid > 0 else None for k, pid in pids.items()}
        self.t0: dict[str, float | None] = {}
        self.wall0 = 0.0
        self.unix0 = 0.0

    def _read(self) -> dict[str, float | None]:
        return {k: cpu_seconds(pid) if pid is not None else None for k, pid in self.pids.items()}

    def start(self) -> None:
        self.t0 = self._read()
        self.wall0 = time.perf_counter()
        self.unix0 = time.time()

    def stop(self, n: int, end: float | None = None) -> dict[str, float | None]:
        """CPU per event of each process since `start`; `worker_cores` over the time until `end`
        (Unix time the work ended, when known: the read itself may come a poll later)."""
        wall = end - self.unix0 if end is not None else time.perf_counter() - self.wall0
        out: dict[str, float | None] = {}
        for k, t1 in self._read().items():
            t0 = self.t0.get(k)
            used = t1 - t0 if t0 is not None and t1 is not None else None
            out[f"{k}_cpu_us_per_event"] = used / n * 1e6 if used is not None else None
            if k == "worker":
                out["worker_cores"] = used / wall if used is not None and wall > 0 else None
        return out


@dataclass
class Pipeline:
    name: str
    settings: Settings
    in_topic: str
    out_topic: str
    ts_of: Callable[[dict[str, Any]], float]
    worker: WorkerProcess | None = None
    #: The full pipeline coalesces a user's events into one output, so its completion is read
    #: from the worker's applied-events counter instead of counting output records.
    coalesces: bool = False
    #: Events produced into this pipeline so far (all valid, so all are applied eventually).
    sent: int = 0

    def applied(self) -> float:
        return self.applied_at()[0]

    @property
    def worker_pid(self) -> int | None:
        """The worker process's pid (None for the transport floor, which has none)."""
        return self.worker.proc.pid if self.worker is not None and self.worker.proc is not None else None

    def applied_at(self) -> tuple[float, float]:
        """(events applied, Unix time the worker last finished a batch that applied some), one scrape."""
        assert self.worker is not None
        m = self.worker.metrics()
        return m.get("profilestream_events_applied_total", 0.0), m.get("profilestream_last_applied_time_seconds", 0.0)

    def stop(self) -> None:
        if self.worker is not None and self.worker.alive():
            self.worker.stop(timeout=30)
        _delete_topics(self.settings)


def _delete_topics(s: Settings) -> None:
    """Delete the topics of one bench pipeline (its unique prefix; the worker's changelog starts
    with it too), so repeated bench runs do not pile up partitions on the broker. Best effort."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(s.confluent_config())
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(s.topic_prefix)]
        for fut in (admin.delete_topics(names, operation_timeout=30).values() if names else []):
            fut.result(60)
    except Exception as exc:  # noqa: BLE001 - a failed clean-up must not lose the measurements
        print(f"  (could not delete the bench topics {s.topic_prefix}*: {exc})", file=sys.stderr)


def start_pipeline(kind: str, base: Settings, workdir: Path, *, batch_size: int = 1) -> Pipeline:
    """kind: transport | echo | pipeline. Each gets its own topic prefix and consumer group."""
    s = base.with_(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", state_dir=workdir / uuid.uuid4().hex[:8],
                   web_port=free_port(), batch_size=batch_size, standby_replicas=0)
    ensure_topics(s)
    n = topic_names(s)
    if kind == "transport":
        return Pipeline("transport floor", s, n.raw, n.raw, lambda v: float(v["ts"]))
    if kind == "echo":
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # not in __all__

        admin = AdminClient(s.confluent_config())  # keep the handle alive until the futures resolve
        for fut in admin.create_topics([NewTopic(s.topic("echo.out"), s.partitions, s.replication_factor)]).values():
            fut.result(30)
        w = WorkerProcess(s, s.state_dir / "echo.log", module="bench.echo", args=()).start()
        return Pipeline("Faust echo floor", s, n.raw, s.topic("echo.out"), lambda v: float(v["ts"]), w)
    w = WorkerProcess(s, s.state_dir / "worker.log").start()
    label = f"pipeline batch={batch_size}" if batch_size > 1 else "pipeline per event"
    if s.single_hop:
        label += " single-hop"
    return Pipeline(label, s, n.raw, n.recommendations, lambda v: float(v["source_event_ts"]), w, coalesces=True)


class _Collector(threading.Thread):
    def __init__(self, p: Pipeline) -> None:
        super().__init__(daemon=True)
        self.p = p
        self.reader = TopicReader(p.settings, [p.out_topic], start="latest")
        #: (send ts, the output record's CreateTime, receive time), seconds
        self.samples: list[tuple[float, float, float]] = []
        self.stop_flag = threading.Event()
        self.last_rx = time.time()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            recs = self.reader.poll(0.05, 10_000)
            now = time.time()
            for r in recs:
                if r.value is not None:
                    self.samples.append((self.p.ts_of(r.value), r.timestamp_ms / 1e3, now))
            if recs:
                self.last_rx = now
        self.reader.close()

    def finish(self) -> None:
        """Stop collecting and close the reader; safe to call twice."""
        self.stop_flag.set()
        if self.is_alive():
            self.join(5)

    def __enter__(self) -> "_Collector":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Also on Ctrl-C / SIGTERM: the reader must close before the bench stops a broker it
        # started, or librdkafka logs a page of reconnect failures on the way out.
        self.finish()


def latency_split(samples: np.ndarray | list[tuple[float, float, float]]) -> dict[str, float]:
    """Where each output's latency went, split at the output record's CreateTime (set by the
    worker's producer when it sends the output; ms resolution): `send_to_created` = queueing and
    the worker's processing up to its send; `created_to_received` = the output's own trip through
    the producer, the broker and the bench's consumer. p50 and p90 of each, in ms. `samples`:
    (send ts, CreateTime, receive time) rows, seconds."""
    if len(samples) == 0:
        return {}
    a = np.asarray(samples, dtype=np.float64)
    parts = {"send_to_created": (a[:, 1] - a[:, 0]) * 1e3, "created_to_received": (a[:, 2] - a[:, 1]) * 1e3}
    return {f"{name}_p{q}_ms": float(np.percentile(v, q)) for name, v in parts.items() for q in (50, 90)}


#: Width in seconds of a latency row's time bins (`over_time`): fine enough to place a stall of
#: a few hundred ms, coarse enough that a 10-s row at 100 ev/s has ≈ 50 outputs per bin.
OVER_TIME_BIN_S = 0.5
#: An output is *slow* when its latency is at least SLOW_FACTOR × its row's p50 and at least
#: SLOW_MIN_MS: at the rates measured here that is a stall (a pause of the worker, its clients
#: or the broker), not the queueing a rate near a pipeline's throughput builds up gradually.
SLOW_FACTOR = 10.0
SLOW_MIN_MS = 50.0


def latency_over_time(sent_s: np.ndarray, lat_ms: np.ndarray, *, bin_s: float = OVER_TIME_BIN_S) -> dict[str, Any]:
    """Outputs binned by their send time (`sent_s`: seconds since the row's first send, warm-up
    included), as columns over the non-empty bins: each bin's start `t_s`, `outputs`, `p50_ms`
    and `max_ms`. Shows *when* a row's tail happened: a stall is a run of bins whose max jumps,
    queueing a steady climb."""
    res: dict[str, Any] = {"bin_s": bin_s, "t_s": [], "outputs": [], "p50_ms": [], "max_ms": []}
    bins = np.floor(sent_s / bin_s).astype(np.int64)
    for b in np.unique(bins).tolist():
        v = lat_ms[bins == b]
        res["t_s"].append(round(b * bin_s, 6))
        res["outputs"].append(int(v.size))
        res["p50_ms"].append(float(np.median(v)))
        res["max_ms"].append(float(v.max()))
    return res


def slow_outputs(sent_s: np.ndarray, lat_ms: np.ndarray, p50_ms: float) -> dict[str, Any]:
    """The outputs at least SLOW_FACTOR × `p50_ms` and SLOW_MIN_MS late (see there): how many,
    their share, and the send times (s since the row's first send) of the first and the last."""
    bound = max(SLOW_FACTOR * p50_ms, SLOW_MIN_MS)
    slow = lat_ms >= bound
    n = int(slow.sum())
    res: dict[str, Any] = {"bound_ms": bound, "count": n, "share": n / lat_ms.size if lat_ms.size else 0.0,
                           "first_s": None, "last_s": None}
    if n:
        res["first_s"], res["last_s"] = float(sent_s[slow].min()), float(sent_s[slow].max())
    return res


def worker_phases(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Where the worker's profile processor spent a run, from two scrapes of its /metrics: per
    micro-batch, the mean ms of each phase of `profilestream_batch_phase_seconds` (stream/metrics.py)
    and of the whole batch (`profilestream_step_seconds`), the batches and their mean size. A phase
    no batch of the run went through (`wait` outside micro-batches of what has arrived) is left out."""
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("profilestream_step_seconds_count")
    if batches <= 0:
        return {}
    out: dict[str, Any] = {"batches": int(batches),
                           "events_per_batch": delta("profilestream_batch_events_sum") / batches,
                           "total_ms": delta("profilestream_step_seconds_sum") / batches * 1e3, "phase_ms": {}}
    for phase in BATCH_PHASES:
        n = delta(f'profilestream_batch_phase_seconds_count{{phase="{phase}"}}')
        if n > 0:
            out["phase_ms"][phase] = delta(f'profilestream_batch_phase_seconds_sum{{phase="{phase}"}}') / n * 1e3
    return out


def _produce(p: Pipeline, *, rate: float | None, n: int, items: list[str], users: int = 943) -> float:
    from confluent_kafka import Producer

    conf = p.settings.confluent_config()
    conf.update({"linger.ms": 0 if rate and rate <= 2000 else 2, "acks": "all", "partitioner": "murmur2_random"})
    prod = Producer(conf)
    rng = np.random.default_rng(0)
    uids = rng.integers(1, users + 1, n)
    iids = rng.integers(0, len(items), n)
    t0 = time.perf_counter()
    first = time.time()
    for j in range(n):
        if rate:
            ahead = t0 + j / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        uid = str(uids[j])
        ev = {"user_id": uid, "item_id": items[iids[j]], "type": "view", "ts": time.time()}
        while True:
            try:
                prod.produce(p.in_topic, key=uid.encode(), value=json.dumps(ev).encode())
                break
            except BufferError:
                prod.poll(0.01)
        prod.poll(0)
    prod.flush(30)
    return first


#: Seconds a latency run waits, after its last event is sent, for the pipeline to work off what
#: it was sent. An overloaded pipeline (rate above its throughput) needs long; past this the row
#: says `drained: false` and the next run still starts only once the backlog is gone (`_drain`).
DRAIN_TIMEOUT_S = 150.0


#: Seconds between two scrapes of a worker's /metrics while the bench waits on it. A scrape costs
#: the worker ≈ 2.6 ms of CPU on its one Python thread (2026-12-06, 2 cores); at the 50 ms of the
#: other polls that was ≈ 5 % of the worker during a burst (bench/README.md "The bench's own load").
#: The burst's end time comes from the worker's own clock (`Pipeline.applied_at`), so a slow poll
#: costs no precision.
SCRAPE_EVERY_S = 0.5


def _drain(p: Pipeline, done: Callable[[], bool], timeout: float, every_s: float = 0.05) -> bool:
    """Wait until `done()` (polled every `every_s`) or `timeout` s pass; True if done. Prints progress."""
    deadline = time.time() + timeout
    next_note = time.time() + 10
    while not done():
        if time.time() > deadline:
            return False
        if time.time() > next_note:
            print(f"    ... {p.name}: working off its backlog", file=sys.stderr)
            next_note = time.time() + 10
        time.sleep(every_s)
    return True


def _applied_all(p: Pipeline) -> Callable[[], bool]:
    return lambda: p.applied() >= p.sent


def _wait_idle(p: Pipeline, timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Wait until the pipeline has processed every event it was sent (True), or `timeout` s."""
    if p.coalesces:
        return _drain(p, _applied_all(p), timeout, SCRAPE_EVERY_S)
    reader = TopicReader(p.settings, [p.out_topic], start="latest")  # one output per event: count them
    try:
        return _drain(p, lambda: sum(reader.end_offsets().values()) >= p.sent, timeout)
    finally:
        reader.close()


def latency_run(p: Pipeline, *, rate: float, seconds: float, warmup: float, items: list[str],
                drain_timeout: float = DRAIN_TIMEOUT_S) -> dict[str, Any]:
    """Send `rate` events/s for `seconds`; latency of every output until the pipeline has worked
    off all of them (an overloaded pipeline's backlog is part of its latency, and must not leak
    into the next run)."""
    with _Collector(p) as col:
        before = p.worker.metrics() if p.coalesces and p.worker is not None else None
        n = int(rate * seconds)
        # The worker's CPU at this steady rate (not only in bursts): what an event costs when the
        # micro-batches stay small, and how busy one core is at the rate.
        meter = _CpuMeter(p.worker_pid, None)
        meter.start()
        first = _produce(p, rate=rate, n=n, items=items)
        p.sent += n
        if p.coalesces:
            drained = _drain(p, _applied_all(p), drain_timeout, SCRAPE_EVERY_S)
            cpu = meter.stop(n, end=(p.applied_at()[1] or None) if drained else None)
            _drain(p, lambda: time.time() - col.last_rx > 0.5, 5.0)  # the last outputs of the last batch
        else:
            drained = _drain(p, lambda: len(col.samples) >= n, drain_timeout)
            cpu = meter.stop(n, end=col.last_rx if drained else None)
    phases = worker_phases(before, p.worker.metrics()) if before is not None and p.worker is not None else {}
    # every output as (send ts, its CreateTime, receive time); the percentiles leave the warm-up out
    every = np.asarray(col.samples, dtype=np.float64).reshape(-1, 3)
    sent_s = every[:, 0] - first  # since the row's first send
    every_ms = (every[:, 2] - every[:, 0]) * 1e3
    kept = sent_s >= warmup
    lat = every_ms[kept]
    row: dict[str, Any] = {"pipeline": p.name, "rate": rate, "sent": n, "outputs": len(col.samples),
                           "measured": int(lat.size), "drained": drained,
                           "worker_cpu_us_per_event": cpu["worker_cpu_us_per_event"], "worker_cores": cpu["worker_cores"]}
    if lat.size:
        hist = HdrHistogram()
        hist.record(lat * 1e3)  # µs
        row["hdr"] = hist.to_json("us")
        row.update({f"p{q}_ms": float(np.percentile(lat, q)) for q in (50, 90, 99)})
        row.update({"p99.9_ms": float(np.percentile(lat, 99.9)), "max_ms": float(lat.max()),
                    "cdf_ms": np.percentile(lat, np.linspace(0, 100, 101)).tolist()})
        row.update(latency_split(every[kept]))
        row["warmup_s"] = warmup
        row["over_time"] = latency_over_time(sent_s, every_ms)
        row["slow"] = slow_outputs(sent_s[kept], lat, row["p50_ms"])
    if phases:
        row["worker_phases"] = phases
    busy = (f"; worker {row['worker_cores']:.2f} cores, {row['worker_cpu_us_per_event']:.0f} µs CPU/event"
            if row["worker_cores"] is not None else "")
    slow = row.get("slow") or {}
    stall = (f"; {slow['count']} slow (≥ {slow['bound_ms']:.0f} ms), sent at {slow['first_s']:.1f}–{slow['last_s']:.1f} s"
             if slow.get("count") else "")
    print(f"  {p.name:<22} {rate:>7.0f} ev/s: p50 {row.get('p50_ms', float('nan')):8.2f} ms  "
          f"p99 {row.get('p99_ms', float('nan')):8.2f} ms  ({row['measured']} samples{busy}{stall})", file=sys.stderr)
    return row


def throughput_run(p: Pipeline, *, n: int, items: list[str], timeout: float = 180.0,
                   broker_pid: int | None = None) -> dict[str, Any]:
    """Send n events as fast as possible; events/s until the last one is processed, and the CPU
    time each process (worker, broker when its pid is known, this bench client) spent per event."""
    if not _wait_idle(p):
        print(f"  {p.name}: still working off earlier events after {DRAIN_TIMEOUT_S:.0f} s; "
              "the throughput below is measured behind that backlog", file=sys.stderr)
    col = None if p.coalesces else _Collector(p)
    with col if col is not None else contextlib.nullcontext():
        before = p.applied() if col is None else 0.0
        meter = _CpuMeter(p.worker_pid, broker_pid)
        meter.start()
        first = _produce(p, rate=None, n=n, items=items)
        p.sent += n
        done = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            if col is not None:
                if len(col.samples) >= n:
                    done = max(rx for _, _, rx in col.samples)
                    break
                time.sleep(0.05)
            else:  # the end is the worker's own time of its last applying batch: no need to poll often
                applied, at = p.applied_at()
                if applied - before >= n:
                    done = at
                    break
                time.sleep(SCRAPE_EVERY_S)
        cpu = meter.stop(n, end=done)
    eps = n / (done - first) if done else float("nan")
    per = "  ".join(f"{k.split('_')[0]} {v:.0f}" for k, v in cpu.items() if k.endswith("per_event") and v is not None)
    print(f"  {p.name:<22} max rate: {eps:9.0f} events/s ({n} events); CPU µs/event: {per}", file=sys.stderr)
    return {"pipeline": p.name, "events": n, "events_per_s": eps, "completed": done is not None, **cpu}


def sustained_run(p: Pipeline, *, items: list[str], p99_bound_ms: float, seconds: float, start_rate: float,
                  max_steps: int = 8, precision: float = 0.1) -> dict[str, Any]:
    """Max sustained rate: send at a fixed rate for `seconds`, raising it (doubling, then bisecting
    between the highest rate that held and the lowest that did not) until within `precision`.
    A rate holds when the pipeline worked off every event within 30 s after the last was sent and
    the p99 latency stayed ≤ `p99_bound_ms`. A pipeline that cannot keep up builds a backlog that
    grows for the whole step, so its p99 exceeds the bound once the backlog is worth more than
    the bound's time."""
    steps: list[dict[str, Any]] = []
    lo, hi = 0.0, None
    rate = start_rate
    print(f"  {p.name}: raising the rate until p99 > {p99_bound_ms:.0f} ms ({seconds:g} s per step)", file=sys.stderr)
    while len(steps) < max_steps:
        row = latency_run(p, rate=rate, seconds=seconds, warmup=min(1.0, seconds / 3), items=items, drain_timeout=30.0)
        p99 = row.get("p99_ms", float("nan"))
        ok = bool(row["drained"]) and p99 <= p99_bound_ms  # NaN (no samples) compares False
        steps.append({"rate": rate, "p50_ms": row.get("p50_ms"), "p99_ms": row.get("p99_ms"),
                      "drained": row["drained"], "held": ok, "slow": row.get("slow")})
        if ok:
            lo = rate
        else:
            hi = rate
            if not _wait_idle(p):
                print(f"  {p.name}: still busy {DRAIN_TIMEOUT_S:.0f} s after the step; the ramp stops here",
                      file=sys.stderr)
                break
        if hi is None:
            rate *= 2
        elif hi - lo <= precision * hi:
            break
        else:
            rate = round((lo + hi) / 2)
    print(f"  {p.name}: sustained {lo:.0f} events/s (p99 ≤ {p99_bound_ms:.0f} ms)", file=sys.stderr)
    return {"pipeline": p.name, "p99_bound_ms": p99_bound_ms, "seconds_per_step": seconds, "steps": steps,
            "sustained_events_per_s": lo, "bounded": hi is not None}
