"""`profilestream bench profile`: where a worker's time goes per event, sampled with py-spy.

A fresh full-pipeline worker (the settings of the environment plus `--set NAME=VALUE …`) takes a
warm-up burst, then py-spy samples it (`record --nonblocking -f raw`, 100 Hz; it reads the
process's memory and never stops it) while a measured burst runs. Each sampled stack goes to the
first category of `CATEGORIES` whose frames it contains, and each category's share of the busy
samples (idle epoll waits left out) times the burst's measured worker CPU per event gives
µs per event. Shares are rough: py-spy sees the Python stack of the running coroutine only, so a
frame Faust or asyncio calls back into is sometimes cut from its caller, and such samples land in
the last category. Writes OUT/profile.txt (py-spy's folded stacks, for flame graph tools),
OUT/profile.json and OUT/profile.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from stream.errors import ConfigError
from stream.settings import Settings

__all__ = ["CATEGORIES", "OTHER", "IDLE", "categorize", "run_profile", "format_profile", "py_spy_path"]

IDLE = "idle (waiting in epoll)"
OTHER = "event loop: task and callback dispatch, waits, and frames py-spy could not place"

#: (category, frame substrings). A stack goes to the first category any of whose substrings occurs
#: in it, so the more specific come first: the state write before the profile processor that calls it.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (IDLE, ("EpollSelector.select",)),
    ("state write: RocksDB put + changelog record", ("ManagedUserDict.__setitem__", "Table.on_key_set",
                                                      "Collection._on_changelog_sent", "Store.set_persisted_offset")),
    ("model: LSTM step and bookkeeping (ProfileModel.apply)", ("ProfileModel.apply ",)),
    ("model: scores and top-K", ("ProfileModel.scores_topk_fused", "ProfileModel.topk ", "ProfileModel._ann_topk")),
    ("model: tags, reasons, output records (rest of ProfileModel.outputs)", ("ProfileModel.outputs ",)),
    ("state read and unpack", ("unpack_state", "ManagedUserDict.get", "ManagedUserDict.__getitem__", "Store._get")),
    ("output sends (JSON, handed to the producer)", ("send_output ", "encode (stream/records.py")),
    ("validation and normalisation", ("Normalizer.__call__",)),
    ("rest of the profile processor", ("ProfileProcessor.",)),
    ("Faust stream, micro-batch buffer, agent", ("Stream._c_aiter", "(stream/take.py", "faust/agents/",
                                                 "Channel.__anext__", "ThrowableQueue.get", "FlowControlQueue.get")),
    ("fetch: aiokafka fetcher, Faust consumer", ("aiokafka/consumer/", "faust/transport/consumer.py",
                                                 "AIOKafkaConsumerThread", "(stream/app.py", "(stream/sequencer.py",
                                                 "faust/transport/conductor.py")),
    ("produce: aiokafka producer and sender, socket writes", ("aiokafka/producer/", "ProducerBuffer",
                                                              "AIOKafkaClient.send", "AIOKafkaConnection",
                                                              "faust/transport/producer.py", "Topic.publish_message",
                                                              "aiokafka/protocol/", "StampedeWrapper")),
    ("web: /metrics and /ready requests", ("aiohttp/", "faust/web/", "prometheus_client/")),
]


def categorize(folded: Iterable[str]) -> dict[str, Any]:
    """Counts per category from py-spy's raw (folded) output: lines `frame;frame;… count`."""
    counts = {name: 0 for name, _ in CATEGORIES}
    counts[OTHER] = 0
    total = 0
    for line in folded:
        line = line.rstrip("\n")
        stack, _, n_s = line.rpartition(" ")
        if not stack or not n_s.isdigit():
            continue
        n = int(n_s)
        total += n
        for name, keys in CATEGORIES:
            if any(k in stack for k in keys):
                counts[name] += n
                break
        else:
            counts[OTHER] += n
    busy = total - counts[IDLE]
    return {"samples": total, "busy_samples": busy,
            "categories": [{"category": name, "samples": c, "share_of_busy": (c / busy if busy else 0.0)}
                           for name, c in counts.items() if name != IDLE],
            "idle_samples": counts[IDLE]}


def py_spy_path() -> str:
    """The py-spy executable next to this Python, else on PATH; ConfigError naming the fix."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise ConfigError("py-spy not found: install it into this environment (`pip install py-spy`; the `dev` "
                          "extra has it, `make test` installs it)")
    return found


def run_profile(base: Settings, env: dict[str, str], *, events: int, out: Path, rate: float | None = None,
                hz: int = 100) -> dict[str, Any]:
    """Profile one fresh worker through a burst of `events` (or `events` at `rate` ev/s)."""
    from model import load_artifact
    from stream.broker import broker_down, broker_up

    from .e2e import latency_run, start_pipeline, throughput_run

    spy = py_spy_path()
    s = Settings.from_env(environ={**os.environ, **env}, bootstrap_servers=base.bootstrap_servers,
                          state_dir=base.state_dir, artifact=base.artifact_path)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "profile.txt"
    raw.unlink(missing_ok=True)  # a file from an earlier run must not pass for this one's samples
    info = broker_up(base, quiet=True)
    items = load_artifact(base.artifact_path).catalogue.item_ids
    tmp = Path(tempfile.mkdtemp(prefix="profilestream-profile-"))
    t0 = time.time()
    try:
        p = start_pipeline("pipeline", s, tmp, batch_size=s.batch_size)
        try:
            throughput_run(p, n=max(200, min(2000, events // 10)), items=items, broker_pid=info.pid)  # warm-up
            assert p.worker is not None and p.worker.proc is not None
            # py-spy's messages go to a file: a pipe nobody reads while it samples could fill and stop it
            spy_log = tmp / "py-spy.log"
            with spy_log.open("w") as log_f:
                proc = subprocess.Popen([spy, "record", "--nonblocking", "-r", str(hz), "-f", "raw", "-o", str(raw),
                                         "-p", str(p.worker.proc.pid)], stdout=subprocess.DEVNULL, stderr=log_f)
            time.sleep(1.0)  # py-spy attaches
            if proc.poll() is not None:
                raise ConfigError(f"py-spy could not attach to the worker (pid {p.worker.proc.pid}): "
                                  f"{_tail(spy_log)} — it needs ptrace permission (run as the worker's user; in a "
                                  "container, add CAP_SYS_PTRACE)")
            print(f"py-spy sampling the worker at {hz} Hz", file=sys.stderr)
            try:
                if rate:
                    run = latency_run(p, rate=rate, seconds=events / rate, warmup=min(1.0, events / rate / 3),
                                      items=items)
                    cpu_per_event = run.get("worker_cpu_us_per_event")  # over the rate run (bench.e2e)
                else:
                    run = throughput_run(p, n=events, items=items, broker_pid=info.pid)
                    cpu_per_event = run.get("worker_cpu_us_per_event")
            finally:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        finally:
            p.stop()
        if not raw.exists():
            raise ConfigError(f"py-spy wrote no samples to {raw}; its message: {_tail(spy_log)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if info.started_by_us:
            broker_down(base)
    with raw.open() as f:
        res = categorize(f)
    for c in res["categories"]:
        c["us_per_event"] = c["share_of_busy"] * cpu_per_event if cpu_per_event else None
    res.update({"settings": env, "events": events, "rate": rate, "hz": hz, "run": run,
                "worker_cpu_us_per_event": cpu_per_event, "seconds": round(time.time() - t0, 1),
                "command": "profilestream " + " ".join(sys.argv[1:])})
    (out / "profile.json").write_text(json.dumps(res, indent=1))
    (out / "profile.md").write_text(format_profile(res) + "\n")
    return res


def _tail(path: Path, chars: int = 400) -> str:
    """The end of a log file, for an error message."""
    try:
        return path.read_text(errors="replace").strip()[-chars:] or "(no output)"
    except OSError:
        return "(no output)"


def format_profile(res: dict[str, Any]) -> str:
    run = res["run"]
    if res.get("rate"):
        head = (f"{res['events']} events at {res['rate']:.0f} ev/s; p50 {run.get('p50_ms', float('nan')):.1f} ms, "
                f"p99 {run.get('p99_ms', float('nan')):.1f} ms")
        if res.get("worker_cpu_us_per_event") and run.get("worker_cores") is not None:
            head += (f", worker CPU {res['worker_cpu_us_per_event']:.0f} µs/event "
                     f"({run['worker_cores']:.2f} of a core)")
    else:
        head = (f"burst of {res['events']} events: {run['events_per_s']:.0f} events/s, worker CPU "
                f"{res['worker_cpu_us_per_event']:.0f} µs/event")
    lines = [f"# Where the worker's time goes ({head})", "",
             f"settings: {res['settings'] or 'the environment as it is'}; py-spy at {res['hz']} Hz, "
             f"{res['samples']} samples, {res['busy_samples']} busy ({res['idle_samples']} idle in epoll); "
             f"command: `{res['command']}`", "",
             "| category | share of busy samples | µs per event |", "|---|---:|---:|"]
    for c in sorted(res["categories"], key=lambda c: -c["samples"]):
        us = f"{c['us_per_event']:.0f}" if c.get("us_per_event") is not None else "–"
        lines.append(f"| {c['category']} | {100 * c['share_of_busy']:.1f} % | {us} |")
    return "\n".join(lines)
