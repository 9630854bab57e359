"""System settings, the GPU catalog, API tokens, health and the OpenAPI document."""

from __future__ import annotations

import json

from touchstone.shared.jetstream import system_bucket
from touchstone.shared.system import GPU_TYPES_KEY, RunPodStatus, read_system
from touchstone.submission.auth import digest

SERVER = {"name": "gpu1", "num_slots": 2, "gpus": ["A100", "A100"], "labels": {"room": "b"}}


async def test_system_patch_changes_the_kv_with_optimistic_revisions(api) -> None:
    kv = await system_bucket(api.deps.js, api.deps.subjects)
    r = await api.admin.get("/api/v1/system")
    assert r.json() == {"runpod_max_running_tasks": 0, "servers": [], "scheduler_paused": False, "revision": 0}
    r = await api.admin.patch(
        "/api/v1/system", json={"runpod_max_running_tasks": 4, "servers": [SERVER], "revision": 0}
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["runpod_max_running_tasks"] == 4 and first["servers"][0]["num_slots"] == 2
    stored, revision = await read_system(kv)
    assert stored.runpod_max_running_tasks == 4 and stored.servers[0].name == "gpu1"
    assert revision == first["revision"]
    # a change made by someone else since: 409, nothing written
    r = await api.admin.patch("/api/v1/system", json={"scheduler_paused": True, "revision": 0})
    assert r.status_code == 409
    # without a revision it applies on top of the latest, keeping the other fields
    r = await api.admin.patch("/api/v1/system", json={"scheduler_paused": True})
    assert r.json()["scheduler_paused"] is True and r.json()["runpod_max_running_tasks"] == 4
    stored, _ = await read_system(kv)
    assert stored.scheduler_paused and stored.servers[0].gpus == ["A100", "A100"]
    for bad in (
        {"runpod_max_running_tasks": -1},
        {"servers": [{"name": "bad.name"}]},
        {"servers": [{**SERVER, "extra": 1}]},
        {"paused": True},
        {"revision": "x"},
    ):
        r = await api.admin.patch("/api/v1/system", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await read_system(kv))[0] == stored


async def test_gpu_types_come_from_the_providers_kv_key(api) -> None:
    assert (await api.admin.get("/api/v1/gpu-types")).json() == []
    kv = await system_bucket(api.deps.js, api.deps.subjects)
    catalog = [{"id": "NVIDIA A100 80GB PCIe", "price_per_hour": 1.64, "stock": "High"}]
    await kv.put(GPU_TYPES_KEY, json.dumps(catalog).encode())
    assert (await api.admin.get("/api/v1/gpu-types")).json() == catalog


async def test_runpod_status_is_what_the_provider_wrote_admins_only(api) -> None:
    r = await api.admin.get("/api/v1/system/runpod")
    assert r.status_code == 200 and r.json() == {"reporting": False, "age_s": None, "status": None}
    status = await api.runpod_reported()
    body = (await api.admin.get("/api/v1/system/runpod")).json()
    assert body["reporting"] is True and 19 <= body["age_s"] < 60
    assert RunPodStatus.model_validate(body["status"]) == status
    for client, code in ((api.alice, 403), (api.anon, 401)):
        denied = await client.get("/api/v1/system/runpod")
        assert denied.status_code == code and "balance" not in denied.text


async def test_tokens_create_list_revoke(api) -> None:
    r = await api.admin.post("/api/v1/tokens", json={"user": "carol", "role": "admin", "description": "ci"})
    assert r.status_code == 201
    created = r.json()
    secret = created.pop("secret")
    assert secret.startswith("tst_") and "." not in secret
    carol = api.client(secret)
    assert (await carol.get("/api/v1/system")).status_code == 200
    listed = (await api.admin.get("/api/v1/tokens")).json()
    assert {t["user"] for t in listed} == {"alice", "bob", "carol"}
    assert created in listed and all("secret" not in t for t in listed)
    # only the secret's hash is stored
    kv = api.deps.tokens.kv
    raw = b"".join([(await kv.get(k)).value or b"" for k in await kv.keys()])
    assert secret.encode() not in raw
    r = await api.admin.delete(f"/api/v1/tokens/{created['id']}")
    assert r.status_code == 200 and r.json()["id"] == created["id"]
    assert (await carol.get("/api/v1/system")).status_code == 401
    assert (await api.admin.delete(f"/api/v1/tokens/{created['id']}")).status_code == 404
    assert {t["user"] for t in (await api.admin.get("/api/v1/tokens")).json()} == {"alice", "bob"}
    for bad in ({"user": "carol", "role": "root"}, {"user": "has space"}, {"user": "x", "extra": 1}, {}):
        assert (await api.admin.post("/api/v1/tokens", json=bad)).status_code == 422


async def test_a_token_revoked_by_another_process_stops_working_here(api) -> None:
    r = await api.admin.post("/api/v1/tokens", json={"user": "dave"})
    dave = api.client(r.json()["secret"])
    assert (await dave.get("/api/v1/submissions")).status_code == 200  # now cached
    await api.deps.tokens.kv.purge(digest(r.json()["secret"]))  # as another API process would

    async def refused() -> bool:
        return (await dave.get("/api/v1/submissions")).status_code == 401

    await api.until(refused, timeout=5)


async def test_health_metrics_and_schema(api) -> None:
    assert (await api.anon.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = (await api.anon.get("/readyz")).json()
    assert ready["status"] == "ok" and ready["checks"]["nats"] is True and ready["checks"]["store"] is True
    await api.alice.get("/api/v1/submissions")
    metrics = (await api.anon.get("/metrics")).text
    assert 'touchstone_http_request_seconds_count{method="GET",route="/api/v1/submissions",status="200"}' in metrics
    schema = (await api.anon.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/submissions",
        "/api/v1/submissions/{submission_id}",
        "/api/v1/submissions/{submission_id}/schedule",
        "/api/v1/tasks",
        "/api/v1/system",
        "/api/v1/gpu-types",
        "/api/v1/tokens",
        "/api/v1/events",
    ):
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    create = schema["components"]["schemas"]["SubmissionCreate"]
    assert create.get("additionalProperties") is False


async def test_readyz_reports_a_stopped_loop(api) -> None:
    task = api.deps.tasks["Projector.run"]
    task.cancel()
    r = await api.anon.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["Projector.run"] is False
