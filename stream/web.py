"""Worker web pages: /metrics (Prometheus) and /ready."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from .app import ProfilestreamApp

__all__ = ["declare"]


def declare(app: "ProfilestreamApp") -> None:
    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(app.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        assigned = len(app.consumer.assignment()) if app.consumer is not None else 0
        ok = assigned > 0 and not app.rebalancing
        return web.json({"ready": ok, "assigned_partitions": assigned, "model_version": app.model.model_version},
                        status=200 if ok else 503)
