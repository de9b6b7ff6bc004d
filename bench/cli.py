"""`profilestream bench run`, `bench gpu`, `bench ab` and `bench profile`, and `profilestream chaos` (registered
into the stream CLI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def cmd_bench_run(args: argparse.Namespace) -> int:
    from stream.settings import Settings

    from .run import run_bench

    s = Settings.from_env(bootstrap_servers=args.bootstrap_servers, state_dir=args.state_dir, artifact=args.artifact)
    if args.smoke:
        rates, seconds, batches = [200.0], 2.0, [64]
    else:
        rates, seconds, batches = args.rates, args.seconds, args.batches
    res = run_bench(s, args.out, smoke=args.smoke, rates=rates, seconds=seconds, batches=batches, argv=sys.argv[1:],
                    p99_bound_ms=args.p99_bound_ms, ramp_seconds=args.ramp_seconds)
    if res["micro"].get("gpu_error"):
        print(f"error: the GPU microbenchmarks failed ({res['micro']['gpu_error']}); the report in {args.out} has "
              "every CPU row and says so. Check `nvidia-smi` and the traceback above.", file=sys.stderr)
        return 1
    return 0


def cmd_bench_gpu(args: argparse.Namespace) -> int:
    from stream.settings import Settings

    from .gpu import run_cli

    artifact = args.artifact or Settings.from_env(state_dir=args.state_dir).artifact_path
    return run_cli(args, artifact, " ".join(["profilestream", *sys.argv[1:]]))


def cmd_bench_ab(args: argparse.Namespace) -> int:
    import json

    from stream.errors import ConfigError
    from stream.settings import Settings

    from .ab import format_ab, parse_assignments, run_ab

    variants = {"A": parse_assignments(args.a), "B": parse_assignments(args.b or [])}
    if args.echo and args.b is None:  # A against the echo floor alone
        del variants["B"]
    elif variants["A"] == variants["B"]:
        raise ConfigError("--a and --b give the same settings: name at least one that differs "
                          "(e.g. --b PROFILESTREAM_PRODUCER_LINGER_MS=5), or compare A with the Faust "
                          "echo floor alone with --echo and no --b")
    if args.rounds < 1 or args.events < 100:
        raise ConfigError("--rounds must be >= 1 and --events >= 100")
    s = Settings.from_env(bootstrap_servers=args.bootstrap_servers, state_dir=args.state_dir, artifact=args.artifact)
    res = run_ab(s, variants, rounds=args.rounds, events=args.events, rate=args.rate, seconds=args.seconds,
                 echo=args.echo)
    print(json.dumps(res) if args.json else format_ab(res))
    return 0


def cmd_bench_profile(args: argparse.Namespace) -> int:
    from stream.errors import ConfigError
    from stream.settings import Settings

    from .ab import parse_assignments
    from .profile import format_profile, run_profile

    if args.events < 100 or args.hz < 1 or (args.rate is not None and args.rate <= 0):
        raise ConfigError("--events must be >= 100, --hz >= 1 and --rate > 0")
    s = Settings.from_env(bootstrap_servers=args.bootstrap_servers, state_dir=args.state_dir, artifact=args.artifact)
    res = run_profile(s, parse_assignments(args.set), events=args.events, out=args.out, rate=args.rate, hz=args.hz)
    print(format_profile(res))
    print(f"\nwritten: {args.out}/profile.md, profile.json, profile.txt (py-spy's folded stacks)", file=sys.stderr)
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    import json

    from stream.settings import Settings

    from .chaos import run_chaos, run_fuzz

    s = Settings.from_env(bootstrap_servers=args.bootstrap_servers, state_dir=args.state_dir, artifact=args.artifact)
    scenarios: list[Any] = ["kill", "broker", "rebalance", "failover", "fuzz"] if args.scenario == "all" \
        else [args.scenario]  # argparse's choices: run_chaos's Literal
    results = []
    for sc in scenarios:
        print(f"chaos scenario {sc}:", file=sys.stderr)
        if sc == "fuzz":
            results.append(run_fuzz(s, dataset=args.dataset, events=args.events or 10_000, seed=args.seed))
        else:
            results.append(run_chaos(s, scenario=sc, dataset=args.dataset, events=args.events, kills=args.kills,
                                     rate=args.rate, seed=args.seed, standby=args.standby,
                                     event_ids=not args.no_event_ids))
        r = results[-1]
        if not args.json:
            line = (f"{sc:<10} events {r['events']:>6}  users {r['users_checked']:>4}  lost {r['lost']}  "
                    f"applied_twice {r['applied_twice']}  worker_crashes {r['worker_crashes']}  dlq {r['dlq']}  "
                    f"max_abs_diff {r['max_abs_diff']:.1e}  offset_gaps {r['offset_gaps']}")
            if sc == "fuzz":
                line += (f"  invalid {r['invalid_sent']} (missing from DLQ {r['invalid_missing_from_dlq']})  "
                         f"valid {r['valid_sent']}  unexpected DLQ {r['dlq_unexpected']}")
            else:
                line += f"  recovery {r['recovery_s']} s  read_again {r['read_again']}"
            print(line + f"  ({r['seconds']} s)")
            if r["off_users"]:
                print(f"           users off (expected, got): {r['off_users']}; worker logs in {r['logs']}")
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    bad = any(r["lost"] or r["applied_twice"] or r["worker_crashes"] or r["max_abs_diff"] > 1e-5 or r["offset_gaps"]
              or r.get("invalid_missing_from_dlq") or r.get("dlq_unexpected") or r.get("dlq_without_reason")
              for r in results)
    return 1 if bad else 0


def add_gpu_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact", type=Path, default=None,
                   help="trained model directory (default: $PROFILESTREAM_ARTIFACT, else STATE_DIR/model)")
    p.add_argument("--out", type=Path, default=Path("bench-results-gpu"),
                   help="report directory (default bench-results-gpu)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cuda (default), or cpu to run the same sections without the CUDA-graph rows")
    p.add_argument("--seconds", type=float, default=0.5, help="seconds of repeats per row (default 0.5)")
    p.add_argument("--quick", action="store_true", help="small batches and one catalogue: a check that the "
                                                        "report is produced (a few seconds)")


GPU_DESCRIPTION = ("The model step on a GPU, with and without CUDA graphs: parity with the CPU, the tensor step by "
                   "batch up to 1,048,576 events (float32; with a two-stage top-K; with TF32 and its top-10 "
                   "agreement), where its time goes (LSTM step, scores, top-K alone), the core step (unpack → step "
                   "→ top-K with 100 recent items masked → pack) with and without a CUDA graph, the full step, and "
                   "top-K over 1.7k, 100k and 1M items. Needs torch and numpy only (no Kafka, no Faust), so "
                   "`python -m bench.gpu` runs on a GPU machine with just this repository and a trained artifact. "
                   "Writes OUT/gpu.json, OUT/gpu.md, OUT/gpu_step_vs_batch.png. Exit 2 without CUDA (unless "
                   "--device cpu), 1 when a section failed (the report keeps the others).")


def _connection_flags(p: argparse.ArgumentParser) -> None:
    """Where the broker, the state and the model are (env defaults: `profilestream settings`)."""
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--artifact", type=Path, default=None)


def register(sub: Any, settings_parent: argparse.ArgumentParser) -> None:
    c = sub.add_parser("chaos", help="replay under worker kills, broker restarts or rebalances; check every profile",
                       description="Replay a dataset while killing workers with SIGKILL (kill), restarting the local "
                                   "broker (broker), going from 1 to 2 to 3 to 1 workers (rebalance), killing one of "
                                   "two workers for good (failover; see --standby), or sending "
                                   "hypothesis-generated hostile and valid messages (fuzz, 10,000 by default); then "
                                   "compare every user's final profile with the offline pass and print lost, "
                                   "applied_twice, worker_crashes, dlq, users_checked, max_abs_diff, offset_gaps (fuzz also: "
                                   "every invalid message found in the DLQ by its bytes; the others also the recovery "
                                   "times and read_again, the times the fetch went back for records never handed to "
                                   "the agents, by the path that saw it). Exit 1 when the invariant breaks (lost, "
                                   "applied twice, a crash, a profile off by more than 1e-5, an offset gap, an "
                                   "invalid message missing from the DLQ, a valid one in it, a DLQ record without a reason).")
    c.add_argument("--scenario", choices=["kill", "broker", "rebalance", "failover", "fuzz", "all"], default="kill")
    c.add_argument("--standby", type=int, default=0,
                   help="failover: standby replicas of the state table (0 or 1 with two workers; default 0)")
    c.add_argument("--dataset", default="ml-100k")
    c.add_argument("--events", type=int, default=None, help="replay only the first N events (default: all; fuzz: N messages, default 10000)")
    c.add_argument("--kills", type=int, default=5, help="kill -9 count in the kill scenario (default 5)")
    c.add_argument("--rate", type=float, default=600.0, help="replay events/s (default 600)")
    c.add_argument("--seed", type=int, default=0, help="seed of the kill schedule / the fuzz generator")
    c.add_argument("--no-event-ids", action="store_true",
                   help="replay the events without their event_id, so only positions (and the ids the normalize "
                        "stage derives from them) keep redeliveries out")
    c.add_argument("--json", action="store_true", help="one summary object per scenario as JSON")
    _connection_flags(c)
    c.set_defaults(func=cmd_chaos)

    b = sub.add_parser("bench", help="latency/throughput benchmarks",
                       description="Benchmarks of the model step and of the stream, with floors in the same run.")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    r = bsub.add_parser("run", help="run the bench suite and write a report",
                        description="Microbenchmarks (model step; brute-force and faiss-IVF top-K over 1.7k, 100k and 1M items; "
                                    "CPU, and GPU when CUDA is present), end-to-end latency of the "
                                    "transport floor, the Faust echo floor and the full pipeline (micro-batching off "
                                    "and on) at each --rates value, max burst throughput with the CPU time per "
                                    "event of the worker, the broker and the bench client, sustained throughput (the "
                                    "rate is raised until p99 passes --p99-bound-ms), throughput vs micro-batch size. "
                                    "Writes OUT/results.json, OUT/results.md, OUT/latency_cdf.png, "
                                    "OUT/latency_percentiles.png (from each row's HDR-style histogram), "
                                    "OUT/latency_over_time.png (p50 and max per 0.5 s of send time, to place a "
                                    "stall), OUT/throughput_vs_batch.png. Starts the local broker if none answers.")
    r.add_argument("--out", type=Path, default=Path("bench-results"), help="report directory (default bench-results)")
    r.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0, 5000.0],
                   help="target rates in events/s (default 100 1000 5000)")
    r.add_argument("--seconds", type=float, default=6.0, help="seconds per rate (default 6; first 1 s is warm-up)")
    r.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256, 1024],
                   help="micro-batch sizes for the throughput sweep (default 1 16 64 256 1024)")
    r.add_argument("--p99-bound-ms", type=float, default=500.0,
                   help="sustained throughput: the highest rate whose p99 stays under this bound and whose backlog "
                        "is worked off (default 500)")
    r.add_argument("--ramp-seconds", type=float, default=8.0,
                   help="seconds per rate step of the sustained-throughput ramp (default 8)")
    r.add_argument("--smoke", action="store_true", help="a ≤ 60 s run that checks the report is produced")
    _connection_flags(r)
    r.set_defaults(func=cmd_bench_run)

    gp = bsub.add_parser("gpu", help="the model step on a CUDA GPU, with and without CUDA graphs",
                         description=GPU_DESCRIPTION)
    add_gpu_arguments(gp)
    gp.add_argument("--state-dir", type=Path, default=None, help="where the default artifact lives (STATE_DIR/model)")
    gp.set_defaults(func=cmd_bench_gpu)

    ab = bsub.add_parser("ab", help="A/B two worker settings (and the echo floor) by CPU per event, throughput "
                                    "and latency",
                         description="Alternating rounds of two variants of the worker's settings (environment "
                                     "assignments over the current environment). Each round starts a fresh "
                                     "full-pipeline worker per variant and measures a burst of --events (events/s "
                                     "and CPU µs per event of the worker and the broker) and the latency at --rate "
                                     "ev/s for --seconds. Prints mean and min–max per variant (or --json). The "
                                     "min–max across rounds is the noise to compare a difference with. Starts the "
                                     "local broker if none answers. With --echo each round also runs the Faust "
                                     "echo floor and each variant's p99 is divided by the floor's p99 of the same "
                                     "round (issue #4's target is ≤ 1.5 at 1,000 ev/s). Examples: profilestream "
                                     "bench ab --b PROFILESTREAM_PRODUCER_LINGER_MS=5 --rounds 5; profilestream "
                                     "bench ab --b PROFILESTREAM_SINGLE_HOP=1 --echo --rate 1000 --seconds 10")
    ab.add_argument("--a", nargs="*", default=[], metavar="NAME=VALUE",
                    help="settings of variant A (default: none, i.e. the environment as it is)")
    ab.add_argument("--b", nargs="*", default=None, metavar="NAME=VALUE",
                    help="settings of variant B (with --echo, leave out --b to run A and the echo floor only)")
    ab.add_argument("--echo", action="store_true",
                    help="run the Faust echo floor too in every round, and report each variant's p99 over "
                         "the floor's p99 of the same round")
    ab.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ab.add_argument("--events", type=int, default=15000, help="events per measured burst (default 15000)")
    ab.add_argument("--rate", type=float, default=100.0, help="rate of the latency run, events/s (default 100)")
    ab.add_argument("--seconds", type=float, default=5.0, help="seconds of the latency run (default 5)")
    ab.add_argument("--json", action="store_true", help="every round and the summary as JSON")
    _connection_flags(ab)
    ab.set_defaults(func=cmd_bench_ab)

    pr = bsub.add_parser("profile", help="where a worker's time goes per event (py-spy during a burst)",
                         description="Starts a fresh full-pipeline worker with the environment's settings plus "
                                     "--set, sends it a warm-up burst, then samples it with py-spy (non-blocking, "
                                     "--hz) while a measured burst of --events runs (or --events at --rate ev/s). "
                                     "Prints the share of the worker's busy samples per category (LSTM step, "
                                     "scores and top-K, output records, state write, fetch, produce, event loop, "
                                     "…) and µs per event from the worker CPU measured over the burst or the rate run. Writes "
                                     "OUT/profile.md, OUT/profile.json and OUT/profile.txt (py-spy's folded "
                                     "stacks, for flame graph tools). Needs py-spy (the dev extra) and ptrace "
                                     "permission on the worker. Starts the local broker if none answers. Example: "
                                     "profilestream bench profile --set PROFILESTREAM_SINGLE_HOP=1")
    pr.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="worker settings over the environment (e.g. PROFILESTREAM_SINGLE_HOP=1)")
    pr.add_argument("--events", type=int, default=40000, help="events of the measured burst (default 40000)")
    pr.add_argument("--rate", type=float, default=None,
                    help="send the events at this rate (events/s) instead of as fast as possible")
    pr.add_argument("--hz", type=int, default=100, help="py-spy samples per second (default 100)")
    pr.add_argument("--out", type=Path, default=Path("bench-profile"), help="report directory (default bench-profile)")
    _connection_flags(pr)
    pr.set_defaults(func=cmd_bench_profile)
