"""The whole path, end to end, against `touchstone up` with its local agent: submit → validate
→ ACCEPTED or REJECTED; schedule two intervals → both models trained, published, an MLflow run
each → COMPLETED; a trainer that fails every time → three attempts, then ERROR with the log
snippet. Tasks run in hardened Docker containers where the engine and the task image are
there (CI builds both), as plain processes elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from touchstone.agent.docker import docker_usable
from touchstone.agent.testing import TASK_IMAGE
from touchstone.shared.jetstream import connect
from touchstone.shared.natsserver import free_port
from touchstone.shared.objects.testing import S3_CREDENTIALS, make_bucket, moto_s3
from touchstone.shared.subjects import Subjects

from touchstone.cli.supervisor import available_services

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "feature-sets"
SETTLED = {"ACCEPTED", "REJECTED", "COMPLETED", "ERROR", "CANCELLED", "RETRACTED"}


def wait_status(api: httpx.Client, sid: str, wanted: set[str], up, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/submissions/{sid}").json()
        if body.get("status") in wanted:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{sid} stuck in {body.get('status')}: {body}\n--- up log ---\n{up.tail()}")


def task_runtime() -> str:
    """Docker where it can run (required in CI), the process runtime elsewhere."""
    why_not = docker_usable(TASK_IMAGE)
    if why_not and os.environ.get("TOUCHSTONE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"Docker runtime required here: {why_not}")
    return "process" if why_not else "docker"


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` (sqlite backend) for the results service to log runs to."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if mlflow is None:
        pytest.skip("mlflow is not installed (it is in the dev dependencies)")
    port = free_port()
    root = tmp_path / "mlflow"
    root.mkdir()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "art")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def wait_mlflow(url: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("mlflow server did not answer /health")


def submit(api: httpx.Client, example: str) -> str:
    r = api.post("/api/v1/submissions", json={"git_url": str(EXAMPLES / example), "name": example})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "VALIDATING"
    return str(r.json()["id"])


def test_submit_validate_schedule_train_complete(make_up, mlflow_server) -> None:
    runtime = task_runtime()
    up = make_up(TOUCHSTONE_RETRY_BASE_DELAY_S="0.2", TOUCHSTONE_RETRY_FACTOR="2",
                 TOUCHSTONE_RUNTIME=runtime, TOUCHSTONE_MLFLOW_TRACKING_URI=mlflow_server)
    up.start()
    up.wait_healthy(len(available_services()))
    wait_mlflow(mlflow_server)
    with up.api() as api:
        good = submit(api, "momentum")
        faulty = submit(api, "lookahead")

        accepted = wait_status(api, good, SETTLED, up)
        assert accepted["status"] == "ACCEPTED", accepted
        assert accepted["validation_report"]["passed"] is True

        rejected = wait_status(api, faulty, SETTLED, up)
        assert rejected["status"] == "REJECTED"
        failed_checks = [c["name"] for c in rejected["validation_report"]["checks"]
                         if not c["passed"] and not c.get("skipped")]
        assert failed_checks == ["no_lookahead"], failed_checks

        r = api.post(f"/api/v1/submissions/{good}/schedule",
                     json={"prediction_intervals": [15, 60], "platform": "onprem"})
        assert r.status_code == 202, r.text
        done = wait_status(api, good, SETTLED - {"ACCEPTED"}, up, timeout=300)
        assert done["status"] == "COMPLETED", done
        training = {t["task_id"]: t for t in done["tasks"] if t["task_id"] != "validation"}
        assert set(training) == {"pi-15", "pi-60"}
        for task in training.values():
            assert task["status"] == "SUCCEEDED"
            assert task["platform"] == "onprem" and task["placement"].startswith("local/")
            for side in ("long", "short"):
                metrics = task["metrics"][side]
                assert 0.0 <= metrics["roc_auc"] <= 1.0 and "sharpe" in str(metrics)
            for name in ("long.json", "short.json", "metrics.json"):
                assert name in task["artifacts"]
                got = api.get(f"/api/v1/submissions/{good}/tasks/{task['task_id']}/artifacts/{name}")
                assert got.status_code == 200 and got.content
            log = api.get(f"/api/v1/submissions/{good}/tasks/{task['task_id']}/logs")
            assert log.status_code == 200 and log.text.strip()
        # the results service publishes each attempt: artifacts in the store, one MLflow run each
        runs: dict[str, str] = {}
        deadline = time.monotonic() + 90
        while len(runs) < 2 and time.monotonic() < deadline:
            detail = api.get(f"/api/v1/submissions/{good}").json()
            runs = {t["task_id"]: t["mlflow_run_url"] for t in detail["tasks"]
                    if t["task_id"] != "validation" and t.get("mlflow_run_url")
                    and t["artifacts"].get("long.json", "").startswith("attempts/")}
            time.sleep(0.3)
        assert set(runs) == {"pi-15", "pi-60"}, detail["tasks"]
        for task_id in runs:
            got = api.get(f"/api/v1/submissions/{good}/tasks/{task_id}/artifacts/long.json")
            assert got.status_code == 200 and got.content
        for run_url in runs.values():
            run_id = run_url.rstrip("/").rsplit("/", 1)[-1]
            got = httpx.get(f"{mlflow_server}/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()
            metric_keys = {m["key"] for m in got["run"]["data"]["metrics"]}
            assert {"long.roc_auc", "short.roc_auc"} <= metric_keys, metric_keys

        # a trainer that fails every time: an unknown config key is the trainer's own error
        doomed = submit(api, "momentum")
        assert wait_status(api, doomed, SETTLED, up)["status"] == "ACCEPTED"
        r = api.post(f"/api/v1/submissions/{doomed}/schedule",
                     json={"prediction_intervals": [15], "platform": "onprem",
                           "passthrough_args": ["--config_override", "no_such.key=1"]})
        assert r.status_code == 202, r.text
        errored = wait_status(api, doomed, SETTLED - {"ACCEPTED"}, up, timeout=300)
        assert errored["status"] == "ERROR", errored
        (task,) = [t for t in errored["tasks"] if t["task_id"] == "pi-15"]
        assert task["status"] == "ERROR" and task["attempt"] == 3
        assert "no_such.key" in (task.get("log_snippet") or ""), task
    ran_in = "DockerRuntime" if runtime == "docker" else "ProcessRuntime"
    assert f"GPUs, {ran_in}" in up.tail(10_000_000), f"the agent did not use the {runtime} runtime"
    assert up.stop() == 0


def test_the_runpod_demo_trains_on_a_local_fake_runpod(make_up) -> None:
    """`touchstone up --runpod-demo`: a task scheduled on RunPod runs in a pod of the local
    fake (a real SSH endpoint), is collected, costed, and its pod terminated; with the
    embedded defaults its MLflow run lands in the data directory's MLflow store."""
    up = make_up("--runpod-demo", TOUCHSTONE_MLFLOW_TRACKING_URI=None)
    up.start()
    up.wait_healthy(len(available_services()))
    with up.api() as api:
        sid = submit(api, "momentum")
        assert wait_status(api, sid, SETTLED, up)["status"] == "ACCEPTED"
        r = api.post(f"/api/v1/submissions/{sid}/schedule", json={"prediction_intervals": [15], "platform": "runpod"})
        assert r.status_code == 202, r.text
        done = wait_status(api, sid, SETTLED - {"ACCEPTED"}, up, timeout=300)
        assert done["status"] == "COMPLETED", done
        (task,) = [t for t in done["tasks"] if t["task_id"] == "pi-15"]
        assert task["platform"] == "runpod" and task["cost_usd"] > 0
        assert done["cost_usd"] == task["cost_usd"]
        assert {"long", "short"} <= set(task["metrics"])
        run_id = None
        for _ in range(240):  # the results service records the run beside the completion, not before it
            (task,) = [t for t in api.get(f"/api/v1/submissions/{sid}").json()["tasks"] if t["task_id"] == "pi-15"]
            if run_id := task.get("mlflow_run_id"):
                break
            time.sleep(0.5)
        assert run_id, f"no MLflow run recorded: {task}"
    assert up.stop() == 0
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{up.data / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED"
    assert any(k.startswith("long") for k in run.data.metrics) and any(k.startswith("short") for k in run.data.metrics)


def test_the_readme_walk_through_with_the_cli(make_up) -> None:
    """The README's CLI walk-through, command by command, from the repository's root: verdicts
    that name the failed check, training with both models' figures, the log, and a
    `--trainer-ref` the trainer repository lacks failing at once."""
    up = make_up()
    up.start()
    up.wait_healthy(len(available_services()))
    env = {**os.environ, "TOUCHSTONE_URL": f"http://127.0.0.1:{up.api_port}",
           "TOUCHSTONE_TOKEN": up.env["TOUCHSTONE_ADMIN_TOKEN"], "COLUMNS": "200", "NO_COLOR": "1"}
    root = EXAMPLES.parents[1]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "touchstone.cli", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)

    def submitted(example: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        done = cli("submit", f"examples/feature-sets/{example}", "--name", example, "--wait")
        sid = next(word for line in done.stdout.splitlines() if line.startswith("id") for word in line.split()[1:])
        return sid, done

    good, accepted = submitted("momentum")
    assert accepted.returncode == 0 and "ACCEPTED" in accepted.stdout, accepted.stdout + accepted.stderr
    assert "passed all 11 checks (" in accepted.stdout
    faulty, rejected = submitted("lookahead")
    assert rejected.returncode == 1 and "REJECTED" in rejected.stdout
    assert any("✗ no_lookahead " in line for line in rejected.stdout.splitlines()), rejected.stdout
    listed = cli("list")
    assert listed.returncode == 0 and good in listed.stdout and faulty in listed.stdout

    trained = cli("schedule", good, "-i", "15", "--platform", "onprem", "--wait")
    assert trained.returncode == 0 and "COMPLETED" in trained.stdout, trained.stdout + trained.stderr
    assert "long: auc " in trained.stdout and "short: auc " in trained.stdout
    log = cli("logs", good, "pi-15")
    assert log.returncode == 0 and "[trainer]" in log.stdout
    # the results service wrote one evaluation row per side; the leaderboard ranks them
    deadline = time.monotonic() + 60  # the results service writes them just after the task finishes
    while True:
        rows = json.loads(cli("evaluations", "-i", "15", "--json").stdout)["items"]
        sides = sorted(r["side"] for r in rows if r["submission_id"] == good)
        if sides == ["long", "short"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sides == ["long", "short"], rows
    board = cli("leaderboard", "-i", "15")
    assert board.returncode == 0 and "momentum" in board.stdout, board.stdout + board.stderr

    other, _ = submitted("momentum")
    wrong_ref = cli("schedule", other, "-i", "15", "--platform", "onprem", "--trainer-ref", "no-such-ref", "--wait")
    assert "ERROR" in wrong_ref.stdout and "'no-such-ref' is not a branch, tag or commit" in wrong_ref.stdout
    assert "1/3" in wrong_ref.stdout  # one attempt: retrying cannot help
    assert up.stop() == 0


# --- models and logs leave the GPU host ----------------------------------------------------


@pytest.fixture
def s3() -> tuple[str, str]:
    with moto_s3() as endpoint:
        bucket = f"touchstone-{uuid.uuid4().hex[:8]}"
        make_bucket(endpoint, bucket)
        yield endpoint, bucket


def _objects(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **S3_CREDENTIALS)
    found = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"].removeprefix(prefix): client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in found}


async def _drop_logs(nats_url: str, password: str, namespace: str) -> None:
    """What the logs stream's retention does, all at once."""
    nc = await connect(nats_url, "test", user="touchstone-operator", password=password)
    try:
        await nc.jetstream().purge_stream(Subjects(namespace).logs_stream)
    finally:
        await nc.close()


@pytest.mark.timeout(900)
def test_models_and_logs_reach_s3_from_an_agent_on_its_own_data_directory(make_up, s3, tmp_path: Path) -> None:
    """`touchstone up` with S3 (moto's server over real HTTP) as the object store and its agent
    on a data directory of its own, holding no cloud credentials: it uploads with the grant of
    each launch. The API and the UI serve every model and log from the bucket, and a log stays
    readable once the logs stream has dropped it."""
    endpoint, bucket = s3
    gpu_host = tmp_path / "gpu-host"
    up = make_up(TOUCHSTONE_RUNTIME=task_runtime(), TOUCHSTONE_RETRY_BASE_DELAY_S="0.2",
                 TOUCHSTONE_ARTIFACT_STORE="s3", TOUCHSTONE_S3_BUCKET=bucket, TOUCHSTONE_S3_PREFIX="e2e/",
                 TOUCHSTONE_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                 AWS_DEFAULT_REGION="us-east-1", TOUCHSTONE_AGENT_DATA_DIR=str(gpu_host))
    up.start()
    up.wait_healthy(len(available_services()))
    with up.api() as api:
        sid = submit(api, "momentum")
        assert wait_status(api, sid, SETTLED, up)["status"] == "ACCEPTED"
        r = api.post(f"/api/v1/submissions/{sid}/schedule",
                     json={"prediction_intervals": [15, 60], "platform": "onprem"})
        assert r.status_code == 202, r.text
        done = wait_status(api, sid, SETTLED - {"ACCEPTED"}, up, timeout=600)
        assert done["status"] == "COMPLETED", done

        stored = _objects(endpoint, bucket, "e2e/")
        tasks = {t["task_id"]: t for t in done["tasks"]}
        assert set(tasks) == {"validation", "pi-15", "pi-60"}
        served_logs: dict[str, str] = {}
        for task_id, task in tasks.items():
            prefix = f"attempts/{sid}/{task_id}/attempt-1/"
            wanted = {"report.json"} if task_id == "validation" else {"long.json", "short.json", "metrics.json"}
            assert wanted <= set(task["artifacts"]), task
            for name, key in task["artifacts"].items():
                assert key.startswith(prefix), (name, key)  # an object key, never a host path or URL
                got = api.get(f"/api/v1/submissions/{sid}/tasks/{task_id}/artifacts/{name}")
                assert got.status_code == 200 and got.content == stored[key], (task_id, name)
            log = api.get(f"/api/v1/submissions/{sid}/tasks/{task_id}/logs")
            assert log.status_code == 200 and log.text == stored[f"{prefix}console.log"].decode(), task_id
            served_logs[task_id] = log.text
        assert "[agent] trainer" in served_logs["pi-15"]

        # the results service found every object in the bucket and says so by key (ResultsPublished)
        deadline = time.monotonic() + 120
        published: list[dict] = []
        while len(published) < 3 and time.monotonic() < deadline:
            detail = api.get(f"/api/v1/submissions/{sid}").json()
            published = [t for t in detail["tasks"] if any(e["type"] == "ResultsPublished" for e in t["timeline"])]
            time.sleep(0.5)
        assert len(published) == 3, detail["tasks"]
        for task in published:
            assert task["artifacts"] == tasks[task["task_id"]]["artifacts"]

        # the logs stream's retention passes: every log is still served, in full, from the bucket
        asyncio.run(_drop_logs(up.nats_url, up.nats_password(), "touchstone"))
        for task_id, text in served_logs.items():
            assert api.get(f"/api/v1/submissions/{sid}/tasks/{task_id}/logs").text == text

        # the UI serves the same bytes
        ui = httpx.Client(base_url=str(api.base_url), timeout=30)
        r = ui.post("/ui/sign-in", data={"token": api.headers["Authorization"].removeprefix("Bearer "),
                                         "next": "/ui/submissions"})
        browser = {"Cookie": r.headers["set-cookie"].split(";")[0]}
        model = ui.get(f"/ui/submissions/{sid}/tasks/pi-60/artifacts/long.json", headers=browser)
        assert model.status_code == 200 and model.content == stored[tasks["pi-60"]["artifacts"]["long.json"]]
        page = ui.get(f"/ui/submissions/{sid}/tasks/pi-60/log", headers=browser)
        assert page.status_code == 200 and "[agent] trainer" in page.text

    # nothing crossed a filesystem: the control plane holds no outputs, the agent kept none
    assert not (up.data / "objects").exists()
    assert not [p for p in (gpu_host / "artifacts").rglob("*") if p.is_file()]
    assert not re.search(r"file://", str(done["tasks"]))
    assert up.stop() == 0
