"""Submit → trainer process started, on a warm on-prem slot, through a real `touchstone up`: the
whole control path (API, events, scheduler, provider, agent), once with the process runtime and
once with the Docker runtime (hardened containers of the local engine; skipped where the engine
or the task image is missing). Then warm vs cold prepare.

Measured from the events' own timestamps: the submission's creation to its validation task's
``TrainingStarted``. Each submission is sent once the previous one has finished, so a slot is
always free and warm. The old design needed about 300 s of 2-minute lifecycle ticks here.

Prepare is ``ContainerReady`` → ``TrainingStarted`` of a feature set with a ``requirements.txt``
(``examples/feature-sets/momentum-toolz``): cold is the first one on a fresh agent (pip installs
the wheels from PyPI into the cache), warm the ones after it (the cache is hit, no pip runs).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from touchstone.shared.natsserver import free_port

from touchstone.bench.harness import percentile

SAMPLES = 12
WARM_PREPARES = 3
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ts_bench_admin_token_0123456789abcdef"
MOMENTUM = ROOT / "examples/feature-sets/momentum"
WITH_REQUIREMENTS = ROOT / "examples/feature-sets/momentum-toolz"
TASK_IMAGE = "touchstone-task:latest"


def _at(body: dict, event: str) -> datetime | None:
    for task in body.get("tasks", []):
        for entry in task.get("timeline", []):
            if entry["type"] == event:
                return datetime.fromisoformat(entry["at"])
    return None


def started_after_created(body: dict) -> float | None:
    started = _at(body, "TrainingStarted")
    return None if started is None else (started - datetime.fromisoformat(body["created_at"])).total_seconds()


def prepare_time(body: dict) -> float | None:
    ready, started = _at(body, "ContainerReady"), _at(body, "TrainingStarted")
    return None if ready is None or started is None else (started - ready).total_seconds()


async def run() -> dict:
    return await asyncio.to_thread(measure)


@contextmanager
def touchstone_up(runtime: str) -> Iterator[httpx.Client]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-onprem-{runtime}-"))
    port = free_port()
    env = {**os.environ, "TOUCHSTONE_ADMIN_TOKEN": TOKEN, "TOUCHSTONE_LOG_LEVEL": "WARNING",
           "TOUCHSTONE_RUNTIME": runtime}
    for key in ("TOUCHSTONE_NATS_URL", "TOUCHSTONE_HOST", "TOUCHSTONE_PORT"):
        env.pop(key, None)
    log = (tmp / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "touchstone.cli", "up", "--data-dir", str(tmp / "data"),
                           "--nats-port", "0", "--api-port", str(port)],
                          stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if api.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("touchstone up did not become ready")
                time.sleep(0.2)
            time.sleep(3)  # the agent's first heartbeat reaches the scheduler
            yield api
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        log.close()


def validate(api: httpx.Client, feature_set: Path, timeout: float = 300) -> dict:
    """Submit ``feature_set`` and wait until its validation settled; the submission's body."""
    sid = api.post("/api/v1/submissions", json={"git_url": str(feature_set), "name": "bench"}).json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/api/v1/submissions/{sid}").json()
        if body["status"] not in ("VALIDATING",):
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sid} did not settle")
        time.sleep(0.2)


def measure_runtime(runtime: str) -> dict[str, Any]:
    latencies: list[float] = []
    prepares: list[float] = []
    failure = None
    with touchstone_up(runtime) as api:
        for _ in range(SAMPLES + 1):  # the first one warms the path and is not counted
            latency = started_after_created(validate(api, MOMENTUM))
            if latency is not None:
                latencies.append(latency)
        for _ in range(1 + WARM_PREPARES):  # cold (first on this agent), then warm
            body = validate(api, WITH_REQUIREMENTS)
            took = prepare_time(body)
            if took is None or body["status"] != "ACCEPTED":
                failure = f"{body['status']}: {[t.get('error') for t in body.get('tasks', [])]}"[:300]
                break
            prepares.append(took)
    return {"latencies": latencies[1:], "prepares": prepares, "failure": failure}


def latency_rows(label: str, latencies: list[float], p50_target: float) -> list[dict[str, Any]]:
    p50 = percentile(latencies, 0.5)
    p99 = percentile(latencies, 0.99)  # with a dozen samples, nearest-rank p99 is the worst one
    return [
        {"metric": f"{label}: submit -> TrainingStarted p50", "value": round(p50, 3), "unit": "s",
         "target": f"<= {p50_target:g}", "met": p50 <= p50_target},
        {"metric": f"{label}: worst of {len(latencies)} (p99 stand-in)", "value": round(p99, 3), "unit": "s",
         "target": "<= 5", "met": p99 <= 5.0},
    ]


def prepare_rows(label: str, prepares: list[float], failure: str | None) -> list[dict[str, Any]]:
    if not prepares:
        return [{"metric": f"{label}: prepare with requirements", "value": "failed", "unit": "",
                 "note": failure or ""}]
    rows = [{"metric": f"{label}: cold prepare (pip from PyPI)", "value": round(prepares[0], 3), "unit": "s"}]
    if len(prepares) > 1:
        rows.append({"metric": f"{label}: warm prepare, p50 of {len(prepares) - 1} (cache hit)",
                     "value": round(percentile(prepares[1:], 0.5), 3), "unit": "s"})
    return rows


def docker_missing() -> str | None:
    from touchstone.agent.docker import docker_usable

    return docker_usable(TASK_IMAGE)


def measure() -> dict:
    runs: dict[str, dict[str, Any]] = {"process": measure_runtime("process")}
    why_not = docker_missing()
    if why_not is None:
        runs["docker"] = measure_runtime("docker")
    rows = latency_rows("process runtime", runs["process"]["latencies"], 1.0)
    if "docker" in runs:
        rows += latency_rows("Docker runtime", runs["docker"]["latencies"], 2.0)
    else:
        rows.append({"metric": "Docker runtime", "value": "skipped", "unit": "", "note": why_not})
    for runtime, label in (("process", "process runtime"), ("docker", "Docker runtime")):
        if runtime in runs:
            rows += prepare_rows(label, runs[runtime]["prepares"], runs[runtime]["failure"])
    rows += [
        {"metric": "old design, lifecycle ticks before training (issue 4)", "value": 300, "unit": "s"},
        {"metric": "samples per runtime", "value": len(runs["process"]["latencies"]), "unit": "runs"},
    ]
    return {
        "name": "on-prem: submit -> trainer started on a warm slot, process and Docker runtimes; warm vs cold "
                "prepare (touchstone up)",
        "rows": rows,
        "samples_s": {runtime: [round(s, 3) for s in run["latencies"]] for runtime, run in runs.items()},
        "prepare_s": {runtime: [round(s, 3) for s in run["prepares"]] for runtime, run in runs.items()},
    }
