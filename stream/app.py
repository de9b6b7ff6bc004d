"""The one Faust app of a worker. `create_app(settings, model)` builds it, then the topic,
table and agent modules declare themselves on it.

Latency-relevant settings, and why (see docs/operations.md):
- commit interval 1 s instead of 2.8 s: less re-delivery after a crash (state skips it anyway).
- session timeout 10 s / heartbeat 1 s: a dead worker's partitions move in ~10 s, not 60 s.
- aiokafka fetch_max_wait_ms: Faust hard-codes 1500 ms; we lower it to 50 ms (see `_LowLatencyConsumer`)
  so an idle partition in the same fetch never holds up a busy one for 1.5 s.
- stream_wait_empty off: a rebalance does not wait for every buffered event to drain. Turned on for
  a while on 2026-11-28; one of two full broker-restart chaos runs then hung after the second
  restart (worker idle, nothing consumed), so it is off again (docs/operations.md). A stop still
  finishes the current batch (`_to_completion` in agents.py).
- Faust resumes the stream partitions before it seeks them after a rebalance, and a worker can
  skip records in between (issue 5's open rebalance bug; docs/operations.md, "Rebalances and
  Faust"). Swapping the two calls was tried and made warm failovers lose records; not applied.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from model import ProfileModel

from .metrics import WorkerMetrics
from .settings import Settings

__all__ = ["create_app", "create_app_shell", "ProfilestreamApp"]

#: ms a fetch may wait on the broker for data; Faust's driver hard-codes 1500.
FETCH_MAX_WAIT_MS = 50


class _LowLatencyConsumer(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when it builds its Fetcher in start(), after this call.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _LowLatencyConsumer(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class ProfilestreamApp(faust.App):
    """faust.App plus what the agents need: settings, the model, metrics."""

    ps_settings: Settings
    model: ProfileModel
    metrics: WorkerMetrics

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def _credentials(s: Settings) -> Any:
    proto = s.security_protocol.upper()
    if proto == "PLAINTEXT":
        return None
    ctx = None
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=s.ssl_cafile or None)
        if s.ssl_certfile:
            ctx.load_cert_chain(s.ssl_certfile, s.ssl_keyfile or None)
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                 ssl_context=ctx, mechanism=s.sasl_mechanism)


def create_app_shell(settings: Settings, model: ProfileModel | None) -> ProfilestreamApp:
    """The configured app with no topics, tables or agents (the bench's echo floor uses it bare)."""
    app = ProfilestreamApp(
        settings.app_id,
        broker=settings.faust_broker_url(),
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.worker_dir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=max(30.0, settings.session_timeout_s * 3),
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        stream_recovery_delay=0.0,
        producer_linger_ms=settings.producer_linger_ms,
        producer_acks=-1,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host="127.0.0.1",
    )
    app.ps_settings = settings
    app.model = model  # type: ignore[assignment]
    app.metrics = WorkerMetrics()
    return app


def create_app(settings: Settings, model: ProfileModel) -> ProfilestreamApp:
    app = create_app_shell(settings, model)
    from . import agents, tables, topics_decl, web

    topics_decl.declare(app)
    tables.declare(app)
    agents.declare(app)
    web.declare(app)
    return app
