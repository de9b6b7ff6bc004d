"""All configuration in one frozen object, from environment variables and CLI flags.

Resolved once at start-up (`Settings.from_env(**cli_overrides)`) and passed down; nothing
below reads `os.environ`. Several isolated deployments can share one broker by giving each
its own topic prefix, state directory and web port.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from .errors import ConfigError

__all__ = ["Settings"]


def _env(name: str, doc: str, **kw: Any) -> Any:
    return field(metadata={"env": name, "doc": doc}, **kw)


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "profilestream"


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = _env("PROFILESTREAM_BOOTSTRAP_SERVERS", "Kafka bootstrap servers, comma separated",
                                  default="127.0.0.1:9092")
    topic_prefix: str = _env("PROFILESTREAM_TOPIC_PREFIX", "prefix of every topic and of the consumer group",
                             default="profilestream.")
    partitions: int = _env("PROFILESTREAM_PARTITIONS", "partitions of the topics profilestream creates", default=4)
    replication_factor: int = _env("PROFILESTREAM_REPLICATION_FACTOR", "replication factor of created topics",
                                   default=1)
    state_dir: Path = _env("PROFILESTREAM_STATE_DIR", "local broker data, worker RocksDB state, logs",
                           default=Path(".profilestream"))
    cache_dir: Path = _env("PROFILESTREAM_CACHE_DIR",
                           "downloaded datasets, Kafka jars, text-feature cache, ANN index cache",
                           default_factory=_default_cache)
    artifact: Path | None = _env("PROFILESTREAM_ARTIFACT", "model artifact directory (default STATE_DIR/model)",
                                 default=None)
    web_port: int = _env("PROFILESTREAM_WEB_PORT", "worker web port (/metrics, /ready)", default=6066)
    web_bind: str = _env("PROFILESTREAM_WEB_BIND", "address the worker web server binds (0.0.0.0 in containers)",
                         default="127.0.0.1")
    top_k: int = _env("PROFILESTREAM_TOP_K", "recommendations per user", default=10)
    ann_min_items: int = _env("PROFILESTREAM_ANN_MIN_ITEMS",
                              "catalogues this big rank through a faiss IVF index (approximate); 0 = never",
                              default=100_000)
    ann_nprobe: int = _env("PROFILESTREAM_ANN_NPROBE", "IVF lists searched per query (more = better recall, slower)",
                           default=16)
    batch_size: int = _env("PROFILESTREAM_BATCH_SIZE", "max events per micro-batch; 1 = strictly per event",
                           default=256)
    batch_window_ms: float = _env(
        "PROFILESTREAM_BATCH_WINDOW_MS",
        "0 = no wait: a micro-batch is what has arrived (stream/take.py); > 0 = Faust's take_events, "
        "waiting up to this long to fill one",
        default=0.0)
    single_hop: bool = _env("PROFILESTREAM_SINGLE_HOP",
                            "1 = validate and apply in one agent straight from events.raw, which must then be keyed "
                            "by user_id (mis-keyed events go to the DLQ); 0 = re-key through the events topic",
                            default=False)
    device: Literal["cpu", "cuda"] = _env("PROFILESTREAM_DEVICE", "torch device of the model step", default="cpu")
    cpu_kernel: Literal["fused", "torch"] = _env(
        "PROFILESTREAM_CPU_KERNEL", "CPU model step: fused = compiled numba loops (model/fused.py), torch = torch ops",
        default="fused")
    torch_threads: int = _env("PROFILESTREAM_TORCH_THREADS", "torch intra-op threads (and numpy BLAS threads) in a worker",
                              default=1)
    max_event_bytes: int = _env("PROFILESTREAM_MAX_EVENT_BYTES", "larger raw events go to the DLQ",
                                default=64 * 1024)
    commit_interval_s: float = _env("PROFILESTREAM_COMMIT_INTERVAL_S", "consumer offset commit interval",
                                    default=1.0)
    session_timeout_s: float = _env("PROFILESTREAM_SESSION_TIMEOUT_S",
                                    "consumer-group session timeout (dead-worker detection)", default=10.0)
    stall_exit_s: float = _env("PROFILESTREAM_STALL_EXIT_S",
                               "exit with status 75 when the agents saw no event for this long while their partitions "
                               "hold unread records and the broker answers (a stuck consumer), or when the stable "
                               "consumer group has left source partitions to no member this long; a supervisor "
                               "restarts the worker; 0 = off", default=20.0)
    producer_linger_ms: float = _env("PROFILESTREAM_PRODUCER_LINGER_MS",
                                     "producer batching delay: 0 = lowest latency, a few ms = fewer, larger requests",
                                     default=0.0)
    output_client: Literal["faust", "faust-topic", "librdkafka"] = _env(
        "PROFILESTREAM_OUTPUT_CLIENT",
        "producer of the agents' outputs: faust = Faust's aiokafka producer, records handed to it directly, in "
        "the worker's Python thread; faust-topic = the same producer through Faust's Topic.send (yields to the "
        "event loop three times per record; the path before 2026-12-06, for comparison); librdkafka = "
        "confluent-kafka, sending in its own threads (stream/output.py; not yet safe across broker restarts, "
        "docs/operations.md 'Output producer')",
        default="faust")
    output_stuck_s: float = _env(
        "PROFILESTREAM_OUTPUT_STUCK_S",
        "with the librdkafka output producer: when a flush has waited this long for its records (or its queue "
        "stayed full this long) although the broker answers and leads their partitions, the worker exits with "
        "status 74 (a stuck producer; a supervisor restarts it); 0 = off", default=60.0)
    event_loop: Literal["asyncio", "uvloop"] = _env(
        "PROFILESTREAM_EVENT_LOOP",
        "event loop of the worker (and of the bench's Faust echo floor): asyncio = the standard library's, "
        "uvloop = libuv's (docs/operations.md 'Event loop')", default="asyncio")
    record_handoff: Literal["direct", "wait_first"] = _env(
        "PROFILESTREAM_RECORD_HANDOFF",
        "how the fetch loop hands each record to the agents' queues: direct = in its own task when there is "
        "room, wait_first = through Faust's wait_first, four tasks per record (the default until 2026-12-07; "
        "for comparisons; docs/operations.md 'Handing records to the agents')", default="direct")
    consumer_thread: bool = _env(
        "PROFILESTREAM_CONSUMER_THREAD",
        "0 = the Kafka consumer runs on the worker's event loop; 1 = in Faust's consumer thread, with its own "
        "event loop and a hand-over between the threads per fetch (the default until 2026-12-07; for "
        "comparisons; docs/operations.md 'Consumer thread')",
        default=False)
    standby_replicas: int = _env("PROFILESTREAM_STANDBY_REPLICAS", "standby replicas of the state table", default=1)
    log_level: str = _env("PROFILESTREAM_LOG_LEVEL", "worker log level", default="info")
    pseudonym_key: str = _env("PROFILESTREAM_PSEUDONYM_KEY",
                              "secret for HMAC-SHA256 pseudonymisation of user ids at the edge (empty = off)",
                              default="")
    # Transport security, passed through to Faust/aiokafka and confluent-kafka alike.
    security_protocol: str = _env("PROFILESTREAM_SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                                  default="PLAINTEXT")
    sasl_mechanism: str = _env("PROFILESTREAM_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                               default="PLAIN")
    sasl_username: str = _env("PROFILESTREAM_SASL_USERNAME", "SASL user name", default="")
    sasl_password: str = _env("PROFILESTREAM_SASL_PASSWORD", "SASL password", default="")
    ssl_cafile: str = _env("PROFILESTREAM_SSL_CAFILE", "CA bundle that signed the brokers' certificates", default="")
    ssl_certfile: str = _env("PROFILESTREAM_SSL_CERTFILE", "client certificate (mutual TLS)", default="")
    ssl_keyfile: str = _env("PROFILESTREAM_SSL_KEYFILE", "client private key (mutual TLS)", default="")

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError("partitions must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1 (1 = no micro-batching)")
        if self.batch_window_ms < 0:
            raise ConfigError("batch_window_ms must be >= 0 (0 = take the events that have arrived, no waiting)")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"PROFILESTREAM_DEVICE must be cpu or cuda, got {self.device!r}")
        if self.cpu_kernel not in ("fused", "torch"):
            raise ConfigError(f"PROFILESTREAM_CPU_KERNEL must be fused or torch, got {self.cpu_kernel!r}")
        if self.output_client not in ("faust", "faust-topic", "librdkafka"):
            raise ConfigError("PROFILESTREAM_OUTPUT_CLIENT must be faust, faust-topic or librdkafka, got "
                              f"{self.output_client!r}")
        if self.event_loop not in ("asyncio", "uvloop"):
            raise ConfigError(f"PROFILESTREAM_EVENT_LOOP must be asyncio or uvloop, got {self.event_loop!r}")
        if self.record_handoff not in ("direct", "wait_first"):
            raise ConfigError(f"PROFILESTREAM_RECORD_HANDOFF must be direct or wait_first, got {self.record_handoff!r}")
        if self.output_stuck_s < 0:
            raise ConfigError("PROFILESTREAM_OUTPUT_STUCK_S must be >= 0 (0 = off)")
        if self.top_k < 1:
            raise ConfigError("top_k must be >= 1")
        if self.ann_min_items < 0 or self.ann_nprobe < 1:
            raise ConfigError("ann_min_items must be >= 0 (0 = never) and ann_nprobe >= 1")
        if self.security_protocol.upper() not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(f"unknown security protocol {self.security_protocol!r}")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults < environment variables < explicit overrides (CLI flags); None overrides are ignored."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                kwargs[f.name] = _coerce(f.metadata["env"], f.type, raw)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        for k in ("state_dir", "cache_dir", "artifact"):
            if isinstance(kwargs.get(k), str):
                kwargs[k] = Path(kwargs[k])
        return cls(**kwargs)

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @staticmethod
    def describe() -> list[tuple[str, str, str]]:
        """(env var, default, doc) per setting, for --help and the README."""
        out = []
        for f in fields(Settings):
            default = f.default if f.default is not MISSING else "(computed)"
            shown = str(int(default)) if isinstance(default, bool) else str(default)
            out.append((f.metadata["env"], shown, f.metadata["doc"]))
        return out

    # ----------------------------------------------------------------- derived names
    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def app_id(self) -> str:
        """Faust app id = consumer group id; a new prefix means a new group."""
        return f"{self.topic_prefix}worker"

    @property
    def artifact_path(self) -> Path:
        return self.artifact if self.artifact is not None else self.state_dir / "model"

    @property
    def worker_dir(self) -> Path:
        return self.state_dir / "worker"

    # ----------------------------------------------------------------- client configs
    def confluent_config(self) -> dict[str, Any]:
        """librdkafka settings for confluent-kafka clients (replay, tail, admin, bench). Their log
        lines go through `stream.kafkalog.kafka_logger()`, repeats held back, not one per reconnect."""
        from .kafkalog import kafka_logger

        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers,
                                "security.protocol": self.security_protocol.upper(), "logger": kafka_logger()}
        if self.security_protocol.upper().startswith("SASL"):
            conf.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                         "sasl.password": self.sasl_password})
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = self.ssl_certfile
        if self.ssl_keyfile:
            conf["ssl.key.location"] = self.ssl_keyfile
        return conf

    def faust_broker_url(self) -> str:
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(",") if h.strip())


def _coerce(name: str, typ: Any, raw: str) -> Any:
    t = str(typ)
    if t in ("bool", "<class 'bool'>"):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"setting {name}: {raw!r} is not a yes/no value (use 1 or 0)")
    try:
        if t in ("int", "<class 'int'>"):
            return int(raw)
        if t in ("float", "<class 'float'>"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"setting {name}: {raw!r} is not a number") from None
    return raw
