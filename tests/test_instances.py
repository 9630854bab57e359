"""Instances from the command line, as an operator types it: ``touchstone nats init --instance
dev`` makes a dev instance that starts paused and ``touchstone status`` says so; a prod instance
runs; a namespace keeps its kind."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path


def touchstone(nats_url: str, namespace: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TOUCHSTONE_NATS_URL": nats_url, "TOUCHSTONE_NAMESPACE": namespace,
           "HOME": str(cwd), "TOUCHSTONE_CONFIG": str(cwd / "none.toml")}
    return subprocess.run([sys.executable, "-m", "touchstone.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def test_a_dev_instance_starts_paused_and_status_says_so(nats_server, tmp_path) -> None:
    ns = f"dev{uuid.uuid4().hex[:8]}"
    done = touchstone(nats_server.url, ns, tmp_path, "nats", "init", "--instance", "dev")
    assert done.returncode == 0, done.stderr
    assert f"recorded dev instance {ns}" in done.stdout and "paused it" in done.stdout

    status = touchstone(nats_server.url, ns, tmp_path, "status", "--json")
    body = json.loads(status.stdout)
    assert body["instance"] == {"namespace": ns, "kind": "dev"}
    assert body["paused"] is True and "RunPod cap 0" in body["paused_reasons"]
    table = touchstone(nats_server.url, ns, tmp_path, "status").stdout
    assert "dev" in table and "PAUSED" in table

    # init again (an upgrade re-runs it): same kind, still paused, no change of kind allowed
    again = touchstone(nats_server.url, ns, tmp_path, "nats", "init")
    assert again.returncode == 0 and "already recorded" in again.stdout
    refused = touchstone(nats_server.url, ns, tmp_path, "nats", "init", "--instance", "prod")
    assert refused.returncode == 1 and "already a dev instance" in refused.stdout
    assert json.loads(touchstone(nats_server.url, ns, tmp_path, "status", "--json").stdout)["paused"] is True


def test_a_prod_instance_is_not_paused(nats_server, tmp_path) -> None:
    ns = f"prod{uuid.uuid4().hex[:8]}"
    done = touchstone(nats_server.url, ns, tmp_path, "nats", "init", "--instance", "prod")
    assert done.returncode == 0, done.stderr
    body = json.loads(touchstone(nats_server.url, ns, tmp_path, "status", "--json").stdout)
    assert body["instance"]["kind"] == "prod" and body["paused"] is False
    assert "PAUSED" not in touchstone(nats_server.url, ns, tmp_path, "status").stdout


def test_an_embedded_dev_instance_starts_paused_and_says_so_until_resumed(make_up) -> None:
    """`touchstone up --instance dev`: every service running, the lifecycle paused, and the
    operator told so by status and by the pages (placement while paused:
    services/scheduler/tests/test_instance.py)."""
    from touchstone.cli.supervisor import available_services

    up = make_up("--instance", "dev")
    up.start()
    try:
        status = up.wait_healthy(len(available_services()))
        assert status["instance"]["kind"] == "dev" and status["paused"] is True
        assert "recorded dev instance" in up.tail() and "paused it" in up.tail()
        with up.api() as api:
            page = api.get("/ui/sign-in")
            assert 'id="instance-banner"' in page.text and "PAUSED" in page.text
            system = api.get("/api/v1/system").json()
            assert system["scheduler_paused"] is True and system["runpod_max_running_tasks"] == 0
            # the local agent stays declared: resuming is one switch
            assert [s["name"] for s in system["servers"]] == ["local"]
            assert api.patch("/api/v1/system", json={"scheduler_paused": False}).status_code == 200
        code, after = up.status()
        assert code == 0, after
        assert after["paused"] is False and after["instance"]["kind"] == "dev"
    finally:
        assert up.stop() == 0
