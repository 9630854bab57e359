"""Every service process without an HTTP API answers ``/healthz``, ``/readyz`` and ``/metrics``
on the address its settings name, as an orchestrator's probes and Prometheus see them: each
service is started as its own process (``python -m touchstone.<service>``) against a real
nats-server, which is then stopped under them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from touchstone.shared.natsserver import NatsServer, free_port

SERVICES = {
    "scheduler": "touchstone.scheduler",
    "onprem-provider": "touchstone.onprem_provider",
    "runpod-provider": "touchstone.runpod_provider",
    "results": "touchstone.results",
    "agent": "touchstone.agent",
}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def processes(own_nats_server: NatsServer, tmp_path: Path) -> Iterator[dict[str, tuple[str, subprocess.Popen[bytes]]]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTONE_")}
    started: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for name, module in SERVICES.items():
        port = free_port()
        env = {**base, "TOUCHSTONE_NATS_URL": own_nats_server.url, "TOUCHSTONE_NAMESPACE": f"h{os.getpid()}",
               "TOUCHSTONE_DATA_DIR": str(tmp_path / name), "TOUCHSTONE_METRICS_PORT": str(port),
               "TOUCHSTONE_METRICS_HOST": "127.0.0.1", "TOUCHSTONE_HOST": "gpu-h", "TOUCHSTONE_RUNTIME": "process",
               "TOUCHSTONE_MLFLOW_TRACKING_URI": ""}
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=log)
        started[name] = (f"http://127.0.0.1:{port}", proc)
    yield started
    for _, proc in started.values():
        proc.terminate()
    for name, (_, proc) in started.items():
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name} did not stop on SIGTERM")


def test_every_service_answers_health_readiness_and_metrics(processes, own_nats_server: NatsServer, tmp_path) -> None:
    for name, (url, proc) in processes.items():
        wait_for(lambda url=url, proc=proc: proc.poll() is not None or httpx.get(f"{url}/readyz").status_code == 200,
                 f"{name} ready")
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["status"] == "ok"
        assert ready["checks"]["nats"] is True
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "checks": {"event_loop": True}}
        exposition = httpx.get(f"{url}/metrics")
        assert exposition.headers["content-type"].startswith("text/plain")
        list(text_string_to_metric_families(exposition.text))  # the text format, whatever families exist
        assert httpx.get(f"{url}/nope").status_code == 404
        assert httpx.post(f"{url}/readyz").status_code == 405
    # the listener binds the configured address only (here loopback), not every interface
    port = int(processes["scheduler"][0].rsplit(":", 1)[1])
    for address in _other_addresses():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{address}:{port}/healthz", timeout=2)
    # consumers count as running: the results service's and the providers' command consumers
    for name in ("results", "onprem-provider"):
        checks = httpx.get(f"{processes[name][0]}/readyz").json()["checks"]
        assert any(k.startswith("loop:consumer:") and v is True for k, v in checks.items()), checks

    own_nats_server.kill()  # NATS gone: not ready (no traffic is sent their way), yet alive
    for name, (url, _) in processes.items():
        wait_for(lambda url=url: httpx.get(f"{url}/readyz").status_code == 503, f"{name} unready")
        assert httpx.get(f"{url}/readyz").json()["checks"]["nats"] == "not connected"
        assert httpx.get(f"{url}/healthz").status_code == 200

    own_nats_server.restart()  # back: ready again without a restart
    for name, (url, _) in processes.items():
        wait_for(lambda url=url: httpx.get(f"{url}/readyz").status_code == 200, f"{name} ready again")



def _other_addresses() -> set[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return set()
    return {str(info[4][0]) for info in infos} - {"127.0.0.1"}
