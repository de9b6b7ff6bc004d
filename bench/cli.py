"""`profilestream bench run` (registered into the stream CLI)."""

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
    run_bench(s, args.out, smoke=args.smoke, rates=rates, seconds=seconds, batches=batches, argv=sys.argv[1:])
    return 0


def register(sub: Any, settings_parent: argparse.ArgumentParser) -> None:
    b = sub.add_parser("bench", help="latency/throughput benchmarks",
                       description="Benchmarks of the model step and of the stream, with floors in the same run.")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    r = bsub.add_parser("run", help="run the bench suite and write a report",
                        description="Microbenchmarks (CPU; GPU when CUDA is present), end-to-end latency of the "
                                    "transport floor, the Faust echo floor and the full pipeline (micro-batching off "
                                    "and on) at each --rates value, max throughput, throughput vs micro-batch size. "
                                    "Writes OUT/results.json, OUT/results.md, OUT/latency_cdf.png, "
                                    "OUT/throughput_vs_batch.png. Starts the local broker if none answers.")
    r.add_argument("--out", type=Path, default=Path("bench-results"), help="report directory (default bench-results)")
    r.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0, 5000.0],
                   help="target rates in events/s (default 100 1000 5000)")
    r.add_argument("--seconds", type=float, default=6.0, help="seconds per rate (default 6; first 1 s is warm-up)")
    r.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256, 1024],
                   help="micro-batch sizes for the throughput sweep (default 1 16 64 256 1024)")
    r.add_argument("--smoke", action="store_true", help="a ≤ 30 s run that checks the report is produced")
    r.add_argument("--bootstrap-servers", default=None)
    r.add_argument("--state-dir", type=Path, default=None)
    r.add_argument("--artifact", type=Path, default=None)
    r.set_defaults(func=cmd_bench_run)
