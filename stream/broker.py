"""Lifecycle of the local single-node Apache Kafka broker (KRaft, combined broker+controller).

`up` resolves the Kafka jars once with Maven (cached under CACHE_DIR/kafka-<version>/),
formats the storage on first start, starts the JVM in the background with data and logs
under STATE_DIR/kafka/, and waits until the broker answers a metadata request.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import BrokerError
from .process import exit_words
from .settings import Settings

__all__ = ["BrokerInfo", "TlsListener", "broker_up", "broker_down", "broker_status", "wait_reachable", "check_reachable"]

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kafka"
KAFKA_VERSION = re.search(r"<kafka.version>([^<]+)</kafka.version>", (DEPLOY_DIR / "pom.xml").read_text()).group(1)  # type: ignore[union-attr]


@dataclass(frozen=True)
class BrokerInfo:
    """Where a broker runs. `pid` -1: not managed by this state dir. `started_by_us`: this call of
    `broker_up` started it (so the caller stops it when done); False when it was already running."""

    pid: int
    port: int
    controller_port: int
    bootstrap: str
    data_dir: str
    log_file: str
    started_by_us: bool = True


@dataclass(frozen=True)
class TlsListener:
    """An extra SSL listener on 127.0.0.1:`port` serving the key and certificate of a PKCS12
    keystore (for trying TLS locally and for the test of the clients' TLS settings; the
    plaintext listener stays, the controller and inter-broker traffic use it)."""

    port: int
    keystore: Path
    password: str

    def properties(self, props: str) -> str:
        for key in ("listeners", "advertised.listeners"):
            props = re.sub(rf"^{re.escape(key)}=(.*)$", lambda m: f"{key}={m.group(1)},SSL://127.0.0.1:{self.port}",
                           props, count=1, flags=re.M)
        props = re.sub(r"^listener.security.protocol.map=(.*)$", lambda m: f"{m.group(0)},SSL:SSL", props,
                       count=1, flags=re.M)
        return props + (f"\n# TLS listener (profilestream broker up --tls-port)\nssl.keystore.type=PKCS12\n"
                        f"ssl.keystore.location={Path(self.keystore).resolve()}\nssl.keystore.password={self.password}\n"
                        f"ssl.key.password={self.password}\nssl.client.auth=none\n")


def _kafka_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka"


def _record_path(settings: Settings) -> Path:
    return _kafka_dir(settings) / "broker.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_record(settings: Settings) -> BrokerInfo | None:
    p = _record_path(settings)
    if not p.is_file():
        return None
    try:
        return BrokerInfo(**json.loads(p.read_text()))
    except (json.JSONDecodeError, TypeError):
        return None


def _require_tools() -> tuple[str, str]:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java not found on PATH — install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)', out)
    if m and int(m.group(1)) < 17:
        raise BrokerError(f"Kafka {KAFKA_VERSION} needs Java 17+, found {m.group(1)} — install Java 17 and put it first on PATH")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn not found on PATH — install Maven (e.g. `apt-get install maven`); it fetches the Kafka jars once")
    return java, mvn


def _jars(settings: Settings, mvn: str, *, quiet: bool) -> Path:
    jar_dir = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "jars"
    marker = jar_dir / ".complete"
    if marker.is_file():
        return jar_dir
    jar_dir.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven (once; cached in {jar_dir}) …", file=sys.stderr, flush=True)
    proc = subprocess.run([mvn, "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"), "dependency:copy-dependencies",
                           "-DincludeScope=runtime", f"-DoutputDirectory={jar_dir}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError(f"Maven could not resolve the Kafka jars (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-1500:]}\n"
                          "Check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml).")
    marker.write_text(KAFKA_VERSION)
    return jar_dir


def check_reachable(bootstrap: str, *, timeout: float = 3.0, conf: dict[str, Any] | None = None) -> bool:
    """True when a broker at `bootstrap` answers a metadata request within `timeout` seconds."""
    from confluent_kafka.admin import AdminClient

    c: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000), "log_level": 0}
    c.update(conf or {})
    c["bootstrap.servers"] = bootstrap
    c["logger"] = _silent_logger()  # "not reachable" is this function's answer, not news to print
    try:
        AdminClient(c).list_topics(timeout=timeout)
        return True
    except Exception:  # KafkaException on timeout / transport failure: "not reachable" is the answer
        return False


def _silent_logger() -> object:
    import logging

    lg = logging.getLogger("profilestream.rdkafka")
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


def wait_reachable(settings: Settings, *, timeout: float = 30.0) -> None:
    """Raise `BrokerError` with the fix unless the configured brokers answer within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if check_reachable(settings.bootstrap_servers, timeout=min(3.0, max(0.5, deadline - time.monotonic())),
                           conf=settings.confluent_config()):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(f"Kafka not reachable at {settings.bootstrap_servers} — run `profilestream broker up`, "
                              "or set PROFILESTREAM_BOOTSTRAP_SERVERS to your cluster")
        time.sleep(0.2)


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes in URL-safe base64, 22 characters. Like Kafka's
    own `Uuid.randomUuid()`, it never starts with '-': `kafka-storage format -t -x…` reads such an
    id as an option and fails ("argument --cluster-id/-t: expected one argument"), which made one
    fresh broker start in 64 fail."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _port_of(bootstrap: str) -> int:
    host_port = bootstrap.split(",")[0].strip()
    return int(host_port.rsplit(":", 1)[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def broker_status(settings: Settings) -> tuple[BrokerInfo | None, bool]:
    """(our recorded broker if its process is alive, whether the configured bootstrap answers)."""
    rec = _read_record(settings)
    if rec is not None and not _pid_alive(rec.pid):
        rec = None
    return rec, check_reachable(settings.bootstrap_servers, timeout=2.0, conf=settings.confluent_config())


def broker_up(settings: Settings, *, controller_port: int | None = None, heap: str = "768m",
              timeout: float = 90.0, quiet: bool = False, tls: TlsListener | None = None) -> BrokerInfo:
    """Start the local broker for `settings.bootstrap_servers` (idempotent) and return where it
    runs; with `tls`, it also listens for TLS clients on `tls.port`."""
    port = _port_of(settings.bootstrap_servers)
    cport = controller_port or port + 1
    kdir = _kafka_dir(settings).resolve()
    rec = _read_record(settings)
    if rec is not None and _pid_alive(rec.pid):
        wait_reachable(settings.with_(bootstrap_servers=rec.bootstrap), timeout=timeout)
        # This state dir's broker, started by an earlier `broker up`: this caller did not start it,
        # so it must not stop it either (a demo or bench run leaves a broker up as it found it).
        return replace(rec, started_by_us=False)
    if check_reachable(settings.bootstrap_servers, timeout=2.0):
        # Something else (a broker of another state dir, docker compose) already serves it: use it.
        return BrokerInfo(pid=-1, port=port, controller_port=cport, bootstrap=settings.bootstrap_servers,
                          data_dir="(not managed by this state dir)", log_file="", started_by_us=False)
    for p in (port, cport) + ((tls.port,) if tls else ()):
        if not _wait_port_free(p, timeout=15.0):  # a broker stopped a moment ago may still hold it
            raise BrokerError(f"port {p} on 127.0.0.1 is taken by another program — stop it, or choose other ports "
                              f"with --bootstrap-servers 127.0.0.1:PORT (the controller uses PORT+1)")
    java, mvn = _require_tools()
    jars = _jars(settings, mvn, quiet=quiet)
    data_dir, log_dir = kdir / "data", kdir / "logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    props = (DEPLOY_DIR / "server.properties").read_text()
    props = props.replace("${port}", str(port)).replace("${controller_port}", str(cport)).replace("${data_dir}", str(data_dir))
    if tls is not None:
        if not Path(tls.keystore).is_file():
            raise BrokerError(f"TLS keystore {tls.keystore} not found — give a PKCS12 file with the broker's key and "
                              f"certificate (keytool -genkeypair -storetype PKCS12 ...)")
        props = tls.properties(props)
    cfg = kdir / "server.properties"
    formatted = (data_dir / "meta.properties").is_file()
    if formatted and cfg.is_file() and cfg.read_text() != props:
        raise BrokerError(f"{kdir} was formatted for other ports; run `profilestream broker up` with the ports it had, "
                          f"or delete {kdir} to start over (its topics are lost)")
    cfg.write_text(props)
    jvm = [java, "-Xms256m", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.yaml'}", f"-Dkafka.logs.dir={log_dir}",
           "-cp", f"{jars}/*"]
    if not formatted:
        cluster_id = new_cluster_id()
        proc = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(cfg)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"formatting Kafka storage in {data_dir} failed:\n{(proc.stdout + proc.stderr)[-1500:]}")
    info = BrokerInfo(pid=-1, port=port, controller_port=cport, bootstrap=f"127.0.0.1:{port}",
                      data_dir=str(data_dir), log_file=str(log_dir / "server.log"))
    for attempt in range(1, _BIND_ATTEMPTS + 1):
        info = _start_jvm(settings, jvm + ["kafka.Kafka", str(cfg)], info, kdir, log_dir, timeout,
                          last_attempt=attempt == _BIND_ATTEMPTS)
        if info.pid > 0:
            return info
        time.sleep(2.0)  # the port was still being released (BindException): try again
    raise AssertionError("unreachable")


#: Start attempts when the JVM fails to bind its port (a just-stopped broker releasing it).
_BIND_ATTEMPTS = 5


def _start_jvm(settings: Settings, cmd: list[str], info: BrokerInfo, kdir: Path, log_dir: Path, timeout: float,
               *, last_attempt: bool) -> BrokerInfo:
    """Start the broker JVM and wait for a metadata answer. Returns `info` with pid -1 when it
    died of a BindException and another attempt is allowed; raises on any other failure."""
    console_path = log_dir / "console.log"
    offset = console_path.stat().st_size if console_path.exists() else 0
    with open(console_path, "ab") as console:
        proc_b = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, cwd=kdir)
    info = BrokerInfo(**{**info.__dict__, "pid": proc_b.pid})
    _record_path(settings).write_text(json.dumps(info.__dict__))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_b.poll() is not None:
            _record_path(settings).unlink(missing_ok=True)
            with open(console_path, "rb") as f:
                f.seek(offset)
                out = f.read().decode(errors="replace")
            if "Address already in use" in out and not last_attempt:
                return BrokerInfo(**{**info.__dict__, "pid": -1})
            raise BrokerError(f"the Kafka broker exited with code {proc_b.returncode} during start-up:\n{out[-2000:]}")
        if check_reachable(info.bootstrap, timeout=1.0):
            return info
        time.sleep(0.2)
    raise BrokerError(f"the Kafka broker did not answer within {timeout:.0f} s; see {info.log_file}")


def _wait_port_free(port: int, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _port_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def broker_ended(info: BrokerInfo) -> str | None:
    """None while the broker `info` names runs (or is not managed here: pid -1); once it has ended,
    how, in words: "was killed by SIGKILL", "exited with status 1", or "ended" when
    this process is not its parent and cannot know more. For a caller that started the broker and
    watches it (the demo); reaps it when this process is its parent."""
    if info.pid <= 0:
        return None
    try:
        pid, status = os.waitpid(info.pid, os.WNOHANG)
    except ChildProcessError:
        return None if _pid_alive(info.pid) else "ended"
    if pid == 0:
        return None
    return exit_words(os.waitstatus_to_exitcode(status))


def broker_down(settings: Settings, *, timeout: float = 30.0) -> BrokerInfo | None:
    """Stop the broker this state dir started (SIGTERM, then SIGKILL after `timeout`)."""
    rec = _read_record(settings)
    if rec is None or not _pid_alive(rec.pid):
        _record_path(settings).unlink(missing_ok=True)
        return None
    os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(rec.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(rec.pid):
        os.kill(rec.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15.0  # return only once its ports are released
        while _pid_alive(rec.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    try:  # reap it when we are its parent (tests, demo)
        os.waitpid(rec.pid, os.WNOHANG)
    except ChildProcessError:
        pass
    _record_path(settings).unlink(missing_ok=True)
    return rec
