"""Run one Faust worker process."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from typing import Any

from .errors import ConfigError
from .settings import Settings

__all__ = ["run_worker", "use_event_loop", "SHUTDOWN_GRACE_S", "EXIT_SHUTDOWN_TIMEOUT", "watch_gc_pauses"]

#: Seconds a clean stop may take before the worker exits hard. aiokafka retries metadata in a
#: tight loop when the broker is gone, so a worker told to stop after its broker went away would
#: otherwise spin at 100 % CPU forever (seen: 300 MB of log in 20 minutes). Exiting hard is safe:
#: offsets not committed mean redelivery, and redelivered events are skipped by the state.
SHUTDOWN_GRACE_S = 30.0
EXIT_SHUTDOWN_TIMEOUT = 70


def _worker_class() -> Any:
    import faust

    class Worker(faust.Worker):
        def _install_signal_handlers_unix(self) -> None:
            super()._install_signal_handlers_unix()
            # A closed terminal (SIGHUP) stops the worker as SIGTERM does (offsets committed, RocksDB
            # closed) instead of Python's default, dying on the spot (docs/operations.md "Restart").
            self.loop.add_signal_handler(signal.SIGHUP, self._on_sigterm)

        def on_worker_shutdown(self) -> None:
            super().on_worker_shutdown()
            log = logging.getLogger("profilestream")

            def give_up() -> None:
                log.error("clean shutdown took more than %.0f s (broker unreachable?): exiting hard", SHUTDOWN_GRACE_S)
                logging.shutdown()
                os._exit(EXIT_SHUTDOWN_TIMEOUT)

            timer = threading.Timer(SHUTDOWN_GRACE_S, give_up)
            timer.daemon = True
            timer.start()

    return Worker


def watch_gc_pauses(metrics: Any) -> None:
    """Time every collection of generation 1 and 2 into `profilestream_gc_pause_seconds` (the
    frequent generation-0 collections are left out: the callback would cost more than they do).
    A full collection walks every object the worker holds (≈ 330,000 once torch, numba, Faust and
    the model are loaded) and stops it for ≈ 200 ms on the 2-core bench machine; docs/operations.md
    "Garbage-collector pauses"."""
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 0:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            metrics.gc_pause[info["generation"]](time.perf_counter() - started[0])

    gc.callbacks.append(on_gc)


def use_event_loop(settings: Settings) -> None:
    """Make the event loop Faust will create the one `settings.event_loop` names. Must run before
    anything creates a loop (the Faust app, its topics)."""
    if settings.event_loop == "uvloop":
        import asyncio

        try:
            import uvloop
        except ImportError as exc:  # a dependency of the project: only a broken install lacks it
            raise ConfigError("PROFILESTREAM_EVENT_LOOP=uvloop but uvloop is not installed: run "
                              "`pip install uvloop` (or `make demo` / `make test`, which install it); on Windows, "
                              "where uvloop does not run, use PROFILESTREAM_EVENT_LOOP=asyncio") from exc
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(settings: Settings) -> None:
    use_event_loop(settings)
    import torch

    from model import ProfileModel

    from .app import create_app
    from .broker import wait_reachable
    from .topics import check_single_hop_partitions, ensure_topics

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(settings.torch_threads)
    # numpy (tags, reasons; model/runtime.py) gets the same thread budget for its BLAS.
    threadpool_limits(settings.torch_threads, user_api="blas")
    wait_reachable(settings, timeout=15.0)
    ensure_topics(settings)
    if settings.single_hop:
        check_single_hop_partitions(settings)
    model = ProfileModel.load(settings.artifact_path, device=settings.device,
                              fused_kernels=settings.cpu_kernel == "fused")
    notes = []
    if settings.ann_min_items and model.n_items >= settings.ann_min_items:
        # built with every core (or loaded from the cache), then searched with the step's thread budget
        index = model.enable_ann(settings.ann_nprobe, cache_dir=settings.cache_dir / "ann")
        import faiss

        faiss.omp_set_num_threads(settings.torch_threads)
        notes.append(f"{model.n_items} items ≥ PROFILESTREAM_ANN_MIN_ITEMS: top-K through a faiss IVF index "
                     f"({index.nlist} lists, {index.nprobe} searched per query), {index.source} in "
                     f"{index.build_seconds:.1f} s ({index.cache_path})")
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, model)
    notes.insert(0, f"worker {settings.app_id}: model {model.model_version} ({model.n_items} items), batch "
                    f"{settings.batch_size} " + (f"within {settings.batch_window_ms:g} ms" if settings.batch_window_ms
                                                      else "as arrived") + ", "
                    f"{'single-hop (events.raw keyed by user)' if settings.single_hop else 'two-hop'}, topics {settings.topic_prefix}*, "
                    f"web :{settings.web_port}")

    watch_gc_pauses(app.metrics)

    @app.task  # type: ignore[untyped-decorator]
    async def announce() -> None:  # runs once the worker has set up logging (before that, INFO goes nowhere)
        import asyncio

        loop = asyncio.get_running_loop()
        notes[0] += f", event loop {type(loop).__module__.split('.')[0]}"
        # where the Kafka consumer runs, read from the running consumer (PROFILESTREAM_CONSUMER_THREAD)
        consumer: Any = app.consumer  # Faust's aiokafka consumer: its _thread is not in ConsumerT
        notes[0] += (", consumer on the worker's event loop" if consumer._thread.thread_loop is loop
                     else ", consumer in Faust's consumer thread")
        for note in notes:
            logging.getLogger("profilestream").info("%s", note)

    worker = _worker_class()(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
