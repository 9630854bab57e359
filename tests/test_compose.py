"""deploy/compose: the walk-through of deploy/README.md, line for line, against the compose file
brought up with the Docker engine (Debian's docker-compose): the 3-node NATS cluster with TLS,
every service twice, MLflow, the stand-in agent. An example feature set is submitted and
validated, one interval is trained and recorded in MLflow, and the README's last line brings
it all down again.

CI runs it with the demo override (compose.demo.yml), which replaces MongoDB (its image cannot
be pulled there) with SQLite on a shared volume and S3 with a local volume; everything else is
the production file. Skipped only where Docker is missing, unless TOUCHSTONE_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "deploy" / "README.md"
IMAGE = "touchstone-service:latest"
SERVICES = {"submission": 2, "scheduler": 2, "onprem-provider": 2, "runpod-provider": 2, "results": 2,
            "nats-1": 1, "nats-2": 1, "nats-3": 1, "mlflow": 1, "agent": 1}


def _docker_problem() -> str | None:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        return "docker or docker-compose is not installed (apt-get install docker.io docker-compose)"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "the Docker engine does not answer"
    # the image of this checkout: rebuilt when any service changed (skipped in well under a
    # second when up to date), so the test never runs yesterday's code
    build = subprocess.run(["bash", str(ROOT / "images" / "service.sh")], capture_output=True, text=True, timeout=900)
    if build.returncode != 0:
        return f"{IMAGE} could not be built (make images):\n{build.stdout[-2000:]}{build.stderr[-2000:]}"
    return None


@pytest.fixture(scope="module")
def docker() -> None:
    problem = _docker_problem()
    if problem:
        if os.environ.get("TOUCHSTONE_REQUIRE_DOCKER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


def walkthrough() -> list[str]:
    """The lines of the README's compose walk-through (the sh block after its marker)."""
    text = README.read_text()
    marker = text.index("<!-- walkthrough:compose")
    block = re.search(r"```sh\n(.*?)```", text[marker:], re.S)
    assert block, "no sh block after the walk-through marker"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on loopback."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            held = []
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return first
    raise RuntimeError("no free consecutive ports")


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The deploy kit and the examples in a folder of their own (the walk-through writes its
    secrets beside the compose file), the repository's environment linked in, and a project
    name and ports no one else uses; everything is brought down afterwards, whatever happened."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("secrets"))
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    api, mlflow = _free_ports(2), _free_ports(1)
    project = f"tscompose{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOUCHSTONE_", "COMPOSE_"))}
    env.update(COMPOSE_PROJECT_NAME=project, TOUCHSTONE_API_PORTS=f"127.0.0.1:{api}-{api + 1}",
               TOUCHSTONE_URL=f"http://127.0.0.1:{api}", MLFLOW_PORT=f"127.0.0.1:{mlflow}",
               MLFLOW_URL=f"http://127.0.0.1:{mlflow}")
    yield tmp_path, env
    compose = tmp_path / "deploy" / "compose"
    subprocess.run(["docker-compose", "-f", "compose.yml", "-f", "compose.demo.yml", "down", "-v",
                    "--remove-orphans", "-t", "5"], cwd=compose, env=env, capture_output=True, timeout=120)


def _containers(project: str) -> dict[str, str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                          "--format", "{{.Names}}\t{{.Status}}"], capture_output=True, text=True, check=True)
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if line)


JSZ = "http://127.0.0.1:8222/jsz?accounts=true&streams=true&config=true"


def _stream(project: str, name: str) -> dict[str, Any]:
    """One stream as a node of the cluster reports it (its monitoring port is not published)."""
    seen: list[str] = []
    for _ in range(20):
        for node in ("nats-1", "nats-2", "nats-3"):
            answer = subprocess.run(["docker", "exec", f"{project}_{node}_1", "python3", "-c",
                                     f"import urllib.request as u; print(u.urlopen({JSZ!r}).read().decode())"],
                                    capture_output=True, text=True, timeout=30)
            if answer.returncode != 0:
                continue
            for account in json.loads(answer.stdout).get("account_details", []):
                for stream in account.get("stream_detail", []):
                    seen.append(stream["name"])
                    if stream["name"] == name:
                        return dict(stream)
        time.sleep(1)
    raise AssertionError(f"no stream {name} on the cluster (seen: {sorted(set(seen))})")


def _logs(folder: Path, env: dict[str, str], *services: str) -> str:
    logs = subprocess.run(["docker-compose", "logs", "--no-color", "--tail=40", *services],
                          env={**env, "COMPOSE_FILE": "compose.yml:compose.demo.yml"},
                          cwd=folder / "deploy" / "compose", capture_output=True, text=True, timeout=60).stdout
    return logs[-8000:]


@pytest.mark.timeout(900)  # a cold image build (about 70 s on 2 cores) and the walk-through
def test_the_readme_walkthrough_runs_against_the_compose_file(docker, checkout) -> None:
    folder, env = checkout
    lines = walkthrough()
    assert lines[-1].startswith("docker-compose down"), "the walk-through ends by bringing it down"
    script = "set -euo pipefail\n" + "\n".join(lines[:-1]) + "\n"
    run = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=360)
    output = run.stdout + run.stderr
    project = env["COMPOSE_PROJECT_NAME"]
    if run.returncode != 0:
        pytest.fail(f"the walk-through failed ({run.returncode}):\n{output[-4000:]}\n{_logs(folder, env)}")

    # the example was validated, then trained, as an operator reads it in the CLI's output
    assert re.search(r"status\s+ACCEPTED", output), output[-3000:]
    assert re.search(r"validation\s+passed", output), output[-3000:]
    assert re.search(r"pi-15\s+.*SUCCEE", output), output[-3000:]

    # every service with its replica count, each healthy by its own /readyz (health checks run
    # every few seconds: a container may still be between two); MongoDB not started
    deadline = time.monotonic() + 90
    while True:
        containers = _containers(project)
        unhealthy = {n: s for n, s in containers.items() if "(healthy)" not in s and "_nats-init_" not in n}
        if not unhealthy or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert not unhealthy, (unhealthy, _logs(folder, env, *{n.split("_")[1] for n in unhealthy}))
    for service, replicas in SERVICES.items():
        mine = [n for n in containers if re.fullmatch(rf"{project}_{service}_\d+", n)]
        assert len(mine) == replicas, (service, containers)
    assert not [n for n in containers if "_mongo_" in n]
    assert "Exited (0)" in containers[f"{project}_nats-init_1"]

    # the streams are replicated on all three nodes of the TLS cluster
    events = _stream(project, "TOUCHSTONE_EVENTS")
    assert events["config"]["num_replicas"] == 3
    assert len(events["cluster"]["replicas"]) == 2, events["cluster"]  # two followers beside the leader

    # the attempt is a run in the compose file's MLflow server
    # (the results service records it as it reads the outcome, just after the CLI saw it)
    deadline, runs = time.monotonic() + 60, []
    while not any(r["info"]["run_name"].endswith("/pi-15/attempt-1") for r in runs):
        assert time.monotonic() < deadline, (runs, _logs(folder, env, "results", "mlflow"))
        time.sleep(2)
        runs = httpx.post(f"{env['MLFLOW_URL']}/api/2.0/mlflow/runs/search",
                          json={"experiment_ids": ["1"], "max_results": 10}, timeout=10).json().get("runs", [])

    # the README's last line brings everything down, data included
    down = subprocess.run(["bash", "-c", lines[-1]], cwd=folder / "deploy" / "compose", capture_output=True,
                          env={**env, "COMPOSE_FILE": "compose.yml:compose.demo.yml"}, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert _containers(project) == {}
    label = f"label=com.docker.compose.project={project}"
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", label],
                             capture_output=True, text=True, check=True).stdout.split()
    assert volumes == []
