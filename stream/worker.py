"""Run one Faust worker process."""

from __future__ import annotations

import logging

from .settings import Settings

__all__ = ["run_worker"]


def run_worker(settings: Settings) -> None:
    import faust
    import torch

    from model import ProfileModel

    from .app import create_app
    from .broker import wait_reachable
    from .topics import ensure_topics

    torch.set_num_threads(settings.torch_threads)
    wait_reachable(settings, timeout=15.0)
    ensure_topics(settings)
    model = ProfileModel.load(settings.artifact_path, device=settings.device)
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, model)
    logging.getLogger("profilestream").info(
        "worker %s: model %s (%d items), batch %d/%.1f ms, topics %s*, web :%d",
        settings.app_id, model.model_version, model.n_items, settings.batch_size, settings.batch_window_ms,
        settings.topic_prefix, settings.web_port)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
