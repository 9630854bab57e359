"""Models and logs leave the GPU host: `touchstone up` with S3 (moto's server over real HTTP)
as the object store and its agent on a data directory of its own. The agent holds no cloud
credentials; it uploads with the grant of each launch. The API and the UI then serve every
model and log from the bucket, and a log stays readable once the logs stream has dropped it."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from test_e2e import SETTLED, submit, task_runtime, wait_status
from touchstone.shared.jetstream import connect
from touchstone.shared.objects.testing import S3_CREDENTIALS, make_bucket, moto_s3
from touchstone.shared.subjects import Subjects

from touchstone.cli.supervisor import available_services

pytestmark = pytest.mark.timeout(900)


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


def test_models_and_logs_reach_s3_from_an_agent_on_its_own_data_directory(make_up, s3, tmp_path: Path) -> None:
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
