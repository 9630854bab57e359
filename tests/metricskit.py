"""Run a service as an operator does (``python -m touchstone.<service>``) and read its /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from touchstone.shared.natsserver import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class ServiceProcess:
    module: str
    env: dict[str, str]
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.port = free_port()
        env = {**os.environ, **self.env, "TOUCHSTONE_METRICS_PORT": str(self.port)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def scrape(self) -> Samples:
        response = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        response.raise_for_status()
        out: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out

    async def until(self, check: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
        """Scrape until ``check`` holds (the service acts on its own time); fails with the log."""
        deadline = time.monotonic() + timeout
        last: Samples = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.module} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                last = await asyncio.to_thread(self.scrape)
                if check(last):
                    return last
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"metrics never matched; {self.module} log:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (a counter never touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def service_env(nats_url: str, namespace: str, data_dir: Path) -> dict[str, str]:
    return {"TOUCHSTONE_NATS_URL": nats_url, "TOUCHSTONE_NAMESPACE": namespace, "TOUCHSTONE_DATA_DIR": str(data_dir),
            "TOUCHSTONE_LOG_JSON": "true", "TOUCHSTONE_MLFLOW_TRACKING_URI": ""}
