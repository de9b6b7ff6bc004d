"""`profilestream demo`: everything on the local broker, with a live terminal view."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from .broker import BrokerInfo, broker_down, broker_ended, broker_up
from .errors import BrokerError
from .process import WorkerProcess
from .settings import Settings

__all__ = ["run_demo"]


def _ensure_model(s: Settings, *, train: bool) -> None:
    """Use STATE_DIR/model; else the default ML-100k model trained earlier on this machine (kept
    in CACHE_DIR, so a fresh clone does not retrain); else train it (or write a random one)."""
    import hashlib
    import shutil

    from model import load_dataset

    if (s.artifact_path / "manifest.json").is_file():
        return
    ds = load_dataset("ml-100k", s.cache_dir)
    if train:
        from model.train import TrainConfig, train as train_model

        cfg = TrainConfig()
        key = hashlib.sha256(repr(cfg).encode()).hexdigest()[:10]
        cached = s.cache_dir / "models" / f"ml-100k-{ds.source_hash}-{key}"
        if not (cached / "manifest.json").is_file():
            print(f"no model at {s.artifact_path}: training one on ML-100k first (≈ 5 min on 2 cores, once per "
                  "machine) …", flush=True)
            res = train_model(ds, cfg, cache=s.cache_dir, out=cached, baselines=False)
            lstm = res.metrics["results"]["test"]["LSTM"]
            print(f"trained in {res.seconds:.0f} s: test NDCG@10 {lstm['NDCG@10']:.4f}, HR@10 {lstm['HR@10']:.4f}")
        shutil.copytree(cached, s.artifact_path, dirs_exist_ok=True)
        print(f"model {cached.name} → {s.artifact_path}")
    else:
        from model import init_random_artifact

        init_random_artifact(ds, s.artifact_path)
        print(f"wrote a random model to {s.artifact_path} (--random-model)")


def display_titles(item_ids: Sequence[str], titles: Sequence[str]) -> dict[str, str]:
    """item id → the title the live view shows: the title, and for a title that more than one item
    of the catalogue carries, the item id after it. ML-100k has 22 such titles over 45 items: films
    listed twice under two ids (e.g. "Kull the Conqueror", 266 and 680), which a list may recommend
    both, and remakes (Sabrina, 1954 and 1995)."""
    shared = {t for t, n in Counter(titles).items() if n > 1}
    return {i: f"{t} [{i}]" if t in shared else t for i, t in zip(item_ids, titles)}


class _View:
    def __init__(self, s: Settings, show: int) -> None:
        from model import load_artifact

        from .consume import TopicReader
        from .topics import topic_names

        cat = load_artifact(s.artifact_path).catalogue
        self.titles = display_titles(cat.item_ids, cat.titles)
        self.names = topic_names(s)
        self.reader = TopicReader(s, [self.names.profiles, self.names.recommendations, self.names.dlq])
        self.show = show
        self.profiles: dict[str, dict[str, Any]] = {}
        self.recs: dict[str, dict[str, Any]] = {}
        self.updates: Counter[str] = Counter()
        self.n_out = 0
        self.n_dlq = 0
        self.tty = sys.stdout.isatty()

    def poll(self) -> None:
        for r in self.reader.poll(0.2, 5000):
            key = r.key.decode() if r.key else ""
            if r.topic == self.names.dlq:
                self.n_dlq += 1
            elif r.value is None:
                continue
            elif r.topic == self.names.profiles:
                self.profiles[key] = r.value
                self.updates[key] += 1
                self.n_out += 1
            else:
                self.recs[key] = r.value

    def render(self, sent: int, elapsed: float) -> None:
        lines = [f"profilestream demo — {sent} events sent ({sent / max(elapsed, 1e-9):.0f}/s), "
                 f"{self.n_out} profile updates, {self.n_dlq} in DLQ, {elapsed:.0f} s  (Ctrl-C stops)", ""]
        for uid, n in self.updates.most_common(self.show):
            p = self.profiles[uid]
            tags = ", ".join(f"{k} {v:+.1f}" for k, v in list(p["tags"].items())[:3])
            lines.append(f"user {uid:<5} events {p['events_seen']:<4} updates {n:<4} tags: {tags}")
            items = self.recs.get(uid, {}).get("items", [])[:4]
            for it in items:
                why = f"  ({it['reason']})" if "reason" in it else ""
                lines.append(f"    → {self.titles.get(it['item_id'], it['item_id'])[:40]:<40}{why[:60]}")
            lines.append("")
        if self.tty:
            sys.stdout.write("\x1b[2J\x1b[H" + "\n".join(lines) + "\n")
        else:
            sys.stdout.write("\n".join(lines[:1] + lines[2:2 + 2 * 3]) + "\n")
        sys.stdout.flush()


def run_demo(settings: Settings, *, rate: float, duration: float | None, show: int, train: bool) -> int:
    from .replay import iter_dataset_events, produce_events
    from .topics import ensure_topics

    info = broker_up(settings)
    print(f"Kafka ready at {info.bootstrap}")
    # A fresh topic prefix per run: replaying ML-100k again into old topics would mix two runs.
    run = f"{settings.topic_prefix}demo{int(time.time())}."
    s = settings.with_(topic_prefix=run, state_dir=settings.state_dir / "demo" / run.rstrip("."),
                       artifact=settings.artifact_path)
    log = s.state_dir / "worker.log"
    worker = WorkerProcess(s, log)
    stop = threading.Event()
    sent = [0]
    view: _View | None = None
    producer: threading.Thread | None = None
    try:  # from here on, Ctrl-C (or SIGTERM / SIGHUP, stream/signals.py) stops what the demo started
        _ensure_model(settings, train=train)
        ensure_topics(s)
        s.state_dir.mkdir(parents=True, exist_ok=True)
        print(f"starting a worker (topics {run}*, log {log}) …", flush=True)
        worker.start()

        def produce() -> None:
            def counted(n: int, _: Any) -> None:
                sent[0] = n + 1
                if stop.is_set():
                    raise _Stop

            try:
                produce_events(s, iter_dataset_events("ml-100k", s), rate=rate, progress=False, on_send=counted)
            except _Stop:
                pass

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        view = _View(s, show)
        t0 = time.monotonic()
        last = 0.0
        while duration is None or time.monotonic() - t0 < duration:
            view.poll()
            if time.monotonic() - last >= 1.0:
                view.render(sent[0], time.monotonic() - t0)
                last = time.monotonic()
            if info.started_by_us and (how := broker_ended(info)) is not None:
                raise _broker_error(info, how)
            if not worker.alive():
                if worker.asks_for_restart():
                    print(f"\nthe worker {worker.how_it_ended()} (see {log}); starting it again", flush=True)
                    worker.start()
                    continue
                raise worker.exited("while the demo ran")
        print(f"\ndemo finished: {sent[0]} events sent, {view.n_out} profile updates received")
        return 0
    except KeyboardInterrupt as exc:
        print("\nstopping …")
        return getattr(exc, "exit_status", 0)  # Ctrl-C is how the demo is meant to end: 0
    finally:
        stop.set()
        broker_gone = broker_ended(info) is not None
        if producer is not None:  # it stops at its next send and delivers what it queued
            producer.join(timeout=1 if broker_gone else 15)
        if view is not None:
            view.reader.close()  # before the broker goes, or librdkafka logs reconnect errors
        # "stopped the worker" only for a worker this clean-up stopped: one that had ended is named
        # by the error above it, and one that Ctrl-C reached too is still stopping here
        stopping = worker.alive()
        if stopping:  # without its broker a worker cannot stop gracefully (its last commit waits): 5 s
            worker.stop(timeout=5 if broker_gone else 30)
        if info.started_by_us:
            stopped = [what for what, yes in (("the worker", stopping),
                                              ("the Kafka broker", broker_down(settings) is not None)) if yes]
            print(f"stopped {' and '.join(stopped)}" if stopped else "nothing the demo started was still running")
        else:
            print(f"stopped{' the worker' if stopping else ''} (the broker was already running; left as it was)")


def _broker_error(info: BrokerInfo, how: str) -> BrokerError:
    """The error for the demo's own broker ending under it: how, its log's path and the warnings and
    errors at the log's end (its INFO lines are a page of routine; a SIGKILL leaves none at all)."""
    log = Path(info.log_file)
    tail = log.read_text(errors="replace")[-200_000:].splitlines()[-300:] if log.exists() else []
    bad = [ln[:300] for ln in tail if re.search(r"\b(WARN|ERROR|FATAL)\b|Exception|Error:", ln)][-8:]
    said = ("; its last warnings and errors:\n" + "\n".join(bad)) if bad else \
        ", with no warning or error at its end" if log.exists() else ", which is not there"
    return BrokerError(f"the Kafka broker the demo started (pid {info.pid}) {how} while the demo ran. Its log is "
                       f"{log}{said}\nRun the demo again to start a fresh broker.")


class _Stop(Exception):
    pass
