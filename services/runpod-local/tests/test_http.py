"""The fake speaks RunPod v2 exactly: shapes, codes, problem bodies, headers, test controls."""

from __future__ import annotations

import asyncio
import re
import sys

import httpx
import pytest
from touchstone.runpod_local import FakeRunpod

GPU = "NVIDIA GeForce RTX 4090"
BODY = {"name": "p", "image": "img", "gpu": {"id": GPU, "count": 1}, "disk": 20}


def structured(header: str) -> dict[str, dict[str, int]]:
    """A ``RateLimit``/``RateLimit-Policy`` header as RunPod's schema shows it
    (``"minute";r=59;t=42, "hour";...``): window name → its integer parameters."""
    windows = {}
    for item in header.split(","):
        name, *params = item.strip().split(";")
        assert re.fullmatch(r'"[a-z]+"', name), header
        windows[name.strip('"')] = {k: int(v) for k, v in (p.split("=", 1) for p in params)}
    return windows


@pytest.fixture
async def http(fake):
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    root = fake.base_url.removesuffix("/v2")
    async with httpx.AsyncClient(base_url=root, headers=headers) as client:
        yield client


async def test_auth_is_a_bearer_key(http, fake):
    missing = await http.get("/v2/pods", headers={"Authorization": ""})
    wrong = await http.get("/v2/pods", headers={"Authorization": "Bearer nope"})

    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json() == {
        "title": "Unauthorized",
        "status": 401,
        "detail": "missing bearer token",
    }
    assert wrong.json()["detail"] == "invalid token"
    assert "ratelimit" not in missing.headers and "x-request-id" in missing.headers


async def test_authenticated_answers_carry_rate_limit_headers(tmp_path):
    async with FakeRunpod(api_key="k", root=tmp_path, pod_backend="ssh") as fake, httpx.AsyncClient() as http:
        answer = await http.get(fake.base_url + "/pods", headers={"Authorization": "Bearer k"})

    limits = structured(answer.headers["RateLimit"])
    policy = structured(answer.headers["RateLimit-Policy"])
    assert set(limits) == {"minute", "hour", "day"}
    # the schema's example policy by default
    assert {name: (w["q"], w["w"]) for name, w in policy.items()} == {
        "minute": (60, 60), "hour": (3000, 3600), "day": (50000, 86400)}
    assert limits["minute"]["r"] == 59 and limits["hour"]["r"] == 2999
    assert answer.headers["x-request-id"]


async def test_list_is_wrapped_and_ignores_unknown_filters(http):
    await http.post("/v2/pods", json=BODY)

    listed = await http.get("/v2/pods", params={"name": "something-else"})

    assert list(listed.json()) == ["pods"] and len(listed.json()["pods"]) == 1


async def test_create_validates_like_runpod(http):
    unknown = await http.post("/v2/pods", json={**BODY, "gpuTypeIds": [GPU], "imageName": "x"})
    nameless = await http.post("/v2/pods", json={k: v for k, v in BODY.items() if k != "name"})
    both = await http.post("/v2/pods", json={**BODY, "cpu": {"id": "cpu3c", "vcpuCount": 2}})
    nested = await http.post("/v2/pods", json={**BODY, "gpu": {"id": GPU, "minRamPerGpu": 8}})

    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        "$: additional properties 'gpuTypeIds' not allowed",
        "$: additional properties 'imageName' not allowed",
    ]
    assert nameless.status_code == 422 and "$: missing property 'name'" in nameless.json()["errors"]
    assert both.status_code == 400
    assert nested.status_code == 422


async def test_a_created_pod_has_every_required_field(http):
    created = await http.post("/v2/pods", json={**BODY, "ports": ["22/tcp"], "startSsh": True})

    pod = created.json()
    assert created.status_code == 201
    required = {
        "id", "name", "status", "actions", "image", "args", "disk", "mounts", "ports", "env",
        "registry", "cloud", "dataCenterId", "cudaVersion", "ssh", "template", "cost", "locked",
        "runtime", "createdAt", "startedAt", "globalNetworking",
    }  # fmt: skip
    assert required <= set(pod)
    assert pod["status"] == "PROVISIONING" and pod["ssh"]["direct"] is None
    assert pod["cloud"] == "SECURE" and pod["args"] == "" and pod["mounts"] == {}
    assert "startSsh" not in pod and pod["createdAt"].endswith("Z")


async def test_registered_keys_reach_pods_created_with_start_ssh(http):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILXGDN/SclOozk1xsDztpmhGiKkkrfQB9SKoO8dSIQQZ me"
    bad = await http.put("/v2/account/ssh-keys", json={"keys": ["not-a-key"]})
    put = await http.put("/v2/account/ssh-keys", json={"keys": [key]})
    with_ssh = await http.post("/v2/pods", json={**BODY, "startSsh": True})
    own_key = await http.post("/v2/pods", json={**BODY, "startSsh": True, "env": {"PUBLIC_KEY": "x"}})

    assert bad.status_code == 422 and put.json() == {"keys": [key]}
    assert with_ssh.json()["env"]["PUBLIC_KEY"] == key
    assert own_key.json()["env"]["PUBLIC_KEY"] == "x"


async def test_actions_and_delete_follow_the_status_table(http):
    pod_id = (await http.post("/v2/pods", json=BODY)).json()["id"]
    action = f"/v2/pods/{pod_id}/action"

    reset = await http.post(action, json={"action": "reset"})
    stop = await http.post(action, json={"action": "stop"})
    stopped = await http.get(f"/v2/pods/{pod_id}")
    restart = await http.post(action, json={"action": "restart"})
    deleted = await http.delete(f"/v2/pods/{pod_id}")
    again = await http.delete(f"/v2/pods/{pod_id}")
    gone = await http.get(f"/v2/pods/{pod_id}")

    assert reset.status_code == 422
    assert stop.status_code == 200 and stop.json()["status"] == "PROVISIONING"  # stopping: not yet EXITED
    assert stopped.json()["status"] == "EXITED" and stopped.json()["actions"] == ["start", "terminate"]
    assert restart.status_code == 409
    assert restart.json()["detail"] == "action restart is not valid for pod in status EXITED"
    assert deleted.status_code == 204 and deleted.content == b""
    assert again.status_code == 404 and gone.json()["detail"] == "pod not found"


async def test_a_locked_pod_cannot_be_stopped(http):
    pod_id = (await http.post("/v2/pods", json=BODY)).json()["id"]

    patched = await http.patch(f"/v2/pods/{pod_id}", json={"locked": True, "name": "renamed"})
    stop = await http.post(f"/v2/pods/{pod_id}/action", json={"action": "stop"})
    no_gpu_patch = await http.patch(f"/v2/pods/{pod_id}", json={"gpu": {"id": "NVIDIA A40"}})

    assert patched.json()["name"] == "renamed" and patched.json()["locked"] is True
    assert stop.status_code == 409
    assert no_gpu_patch.status_code == 422


async def test_catalog_query_rules(http):
    plain = await http.get("/v2/catalog/gpus")
    product_only = await http.get("/v2/catalog/gpus", params={"product": "POD"})
    include_only = await http.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"})
    unknown = await http.get("/v2/catalog/gpus/NVIDIA%20Imaginary")

    assert "availability" not in plain.json()["gpus"][0]
    assert product_only.status_code == 400 and include_only.status_code == 400
    assert unknown.status_code == 404


async def test_unknown_routes_and_methods(http):
    missing = await http.get("/v2/networkvolumes")
    method = await http.put("/v2/pods")

    assert missing.status_code == 404
    assert method.status_code == 405 and method.headers["allow"] == "GET, POST"


async def test_graphql_balance_shapes(http, fake):
    query = {"query": "query { myself { clientBalance currentSpendPerHr } }"}
    good = await http.post("/graphql", json=query)
    wrong = await http.post("/graphql", json=query, headers={"Authorization": "Bearer nope"})
    unknown = await http.post("/graphql", json={"query": "query { myself { secrets } }"})

    assert good.json() == {"data": {"myself": {"clientBalance": 100.0, "currentSpendPerHr": 0.0}}}
    assert wrong.status_code == 200 and wrong.json() == {"data": {"myself": None}}
    assert unknown.status_code == 400 and "secrets" in unknown.json()["errors"][0]["message"]


async def test_faults_over_http(http, fake):
    set_faults = await http.post(
        "/_fake/faults",
        json={"no_capacity": [GPU], "inject": [{"status": 503, "path": "/v2/catalog"}]},
    )
    no_capacity = await http.post("/v2/pods", json=BODY)
    injected = await http.get("/v2/catalog/gpus")
    bad = await http.post("/_fake/faults", json={"no_such_fault": True})
    await http.post("/_fake/faults", json={"no_capacity": []})
    created = await http.post("/v2/pods", json=BODY)
    ledger = await http.get("/_fake/ledger")

    assert set_faults.json()["no_capacity"] == [GPU]
    assert no_capacity.status_code == 400 and "no longer any instances" in no_capacity.text
    assert injected.status_code == 503 and bad.status_code == 422
    assert [p["id"] for p in ledger.json()["pods"]] == [created.json()["id"]]


async def test_the_command_line_serves_the_fake(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "touchstone.runpod_local",
        "--port", "0", "--api-key", "cli-key", "--root", str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        base_url = line.rsplit(" ", 1)[-1].strip()
        async with httpx.AsyncClient() as client:
            answer = await client.get(base_url + "/pods", headers={"Authorization": "Bearer cli-key"})
        assert answer.json() == {"pods": []}
    finally:
        process.terminate()
        await process.wait()
