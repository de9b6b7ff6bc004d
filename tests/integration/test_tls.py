"""Transport security pass-through: a second local broker with a TLS listener whose self-signed
certificate this test makes with keytool. The worker (Faust/aiokafka), the replay producer, the
admin client and the output reader (confluent-kafka) are given only the TLS address and the
certificate through Settings, and the stream still matches the offline pass. Clients that do
not trust the certificate, or speak plaintext, are refused, so the traffic really is TLS.
With the broker private to it, the test also stops the broker before the worker and checks that
the worker still exits (shutdown watchdog, stream/worker.py)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from model import ProfileModel
from stream import Settings
from stream.broker import TlsListener, broker_down, broker_up, check_reachable
from stream.process import free_port
from stream.replay import iter_dataset_events, produce_events
from stream.worker import EXIT_SHUTDOWN_TIMEOUT, SHUTDOWN_GRACE_S

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration


def _self_signed(d: Path, password: str) -> tuple[Path, Path]:
    """(PKCS12 keystore with key + self-signed certificate for 127.0.0.1, the certificate as PEM)."""
    keytool = shutil.which("keytool")
    assert keytool, "keytool (Java 17) is needed, as for the broker itself"
    p12, pem = d / "broker.p12", d / "broker.pem"
    subprocess.run([keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
                    "-dname", "CN=localhost", "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-storetype", "PKCS12",
                    "-keystore", str(p12), "-storepass", password, "-keypass", password], check=True,
                   capture_output=True)
    subprocess.run([keytool, "-exportcert", "-rfc", "-alias", "broker", "-keystore", str(p12), "-storepass", password,
                    "-file", str(pem)], check=True, capture_output=True)
    return p12, pem


def _three_free_ports() -> tuple[int, int, int]:
    while True:
        plain = free_port()
        tls = free_port()
        if plain + 1 != tls and tls != plain:  # the controller takes plain + 1
            return plain, plain + 1, tls


def test_worker_and_clients_work_over_tls_only(ml_artifact: Path, tmp_path: Path,
                                               worker_factory: Callable[..., Worker]) -> None:
    password = uuid.uuid4().hex
    p12, pem = _self_signed(tmp_path, password)
    plain, controller, tls_port = _three_free_ports()
    base = Settings.from_env({}, bootstrap_servers=f"127.0.0.1:{plain}", state_dir=tmp_path / "tls-broker")
    broker_up(base, controller_port=controller, tls=TlsListener(tls_port, p12, password), quiet=True)
    try:
        s = base.with_(bootstrap_servers=f"127.0.0.1:{tls_port}", security_protocol="SSL", ssl_cafile=str(pem),
                       topic_prefix=f"tls{uuid.uuid4().hex[:8]}.", state_dir=tmp_path / "state", artifact=ml_artifact,
                       web_port=free_port(), partitions=3, batch_size=32)
        assert check_reachable(s.bootstrap_servers, conf=s.confluent_config())
        # Refused without the certificate as trust anchor, and to plaintext: the port is TLS.
        assert not check_reachable(s.bootstrap_servers, conf=s.with_(ssl_cafile="").confluent_config())
        assert not check_reachable(s.bootstrap_servers, conf=s.with_(security_protocol="PLAINTEXT").confluent_config())

        events = list(iter_dataset_events("ml-100k", s))[:600]
        histories = by_user(events)
        worker = worker_factory(s).start()
        outputs = Outputs(s)
        produce_events(s, events, progress=False)
        wait_for(lambda: caught_up(outputs, {u: len(h) for u, h in histories.items()}), timeout=180,
                 what=f"profiles of {len(histories)} users over TLS", poll=outputs.poll)
        worst = assert_parity(ProfileModel.load(s.artifact_path), outputs, histories, s.top_k)
        assert worst <= 1e-5 and worker.alive()
        outputs.close()
        # This broker is private to the test, so it can also show the shutdown watchdog: stopped
        # after its broker went away, a worker exits within the grace period instead of spinning.
        broker_down(base)
        t0 = time.monotonic()
        code = worker.stop(timeout=SHUTDOWN_GRACE_S + 30)
        assert code in (0, EXIT_SHUTDOWN_TIMEOUT), f"exit {code} after {time.monotonic() - t0:.0f} s"
        assert time.monotonic() - t0 < SHUTDOWN_GRACE_S + 15
    finally:
        broker_down(base)
