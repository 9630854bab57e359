"""The local RunPod varies as RunPod may (schema-valid shapes the client must read) and refuses
what RunPod refuses, with RunPod's codes, never a 500."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

GPU = "NVIDIA GeForce RTX 4090"
A6000 = "NVIDIA RTX A6000"
H100 = "NVIDIA H100 80GB HBM3"
BODY = {"name": "p", "image": "img", "gpu": {"id": GPU}, "ports": ["22/tcp"]}


@pytest.fixture
async def http(fake):
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with httpx.AsyncClient(base_url=fake.base_url + "/", headers=headers) as client:
        yield client


async def availability(http, gpu: str | None = None, **params: str) -> dict:
    query = {"include": "AVAILABILITY", "product": "POD", **params}
    if gpu is not None:
        return (await http.get(f"catalog/gpus/{gpu}", params=query)).json()
    return {g["id"]: g for g in (await http.get("catalog/gpus", params=query)).json()["gpus"]}


async def test_a_pod_has_no_proxy_or_runtime_until_placed_and_times_carry_fractions(http):
    created = (await http.post("pods", json=BODY)).json()
    starting = (await http.get(f"pods/{created['id']}")).json()
    running = (await http.get(f"pods/{created['id']}")).json()

    assert created["status"] == "PROVISIONING"
    assert created["ssh"] == {"proxy": None, "direct": None} and created["runtime"] is None
    assert starting["status"] == "STARTING" and starting["ssh"]["proxy"]["host"] == "ssh.runpod.io"
    assert starting["runtime"] == {}
    assert running["status"] == "RUNNING" and running["runtime"]["gpus"] == [{"util": 0, "memoryUtil": 0}]
    for stamp in (running["createdAt"], running["startedAt"]):
        assert stamp.endswith("Z") and datetime.fromisoformat(stamp).tzinfo is not None
    assert "." in running["createdAt"] or running["createdAt"].count(":") == 2  # Go's RFC3339Nano


async def test_each_gpu_type_has_its_own_cuda_versions(http):
    rtx = (await http.post("pods", json=BODY)).json()
    a6000 = (await http.post("pods", json={**BODY, "gpu": {"id": A6000}})).json()
    pinned = (await http.post("pods", json={**BODY, "gpu": {"id": GPU, "allowedCudaVersions": ["12.6"]}})).json()
    too_new = await http.post("pods", json={**BODY, "gpu": {"id": A6000, "minCudaVersion": "12.8"}})
    catalog = await availability(http)

    assert (rtx["cudaVersion"], a6000["cudaVersion"], pinned["cudaVersion"]) == ("12.8", "12.4", "12.6")
    assert too_new.status_code == 400 and "no longer any instances" in too_new.json()["detail"]
    versions = {gpu: [v["version"] for v in catalog[gpu]["cudaVersions"]] for gpu in (GPU, A6000)}
    assert versions == {GPU: ["12.8", "12.6", "12.4"], A6000: ["12.4", "12.2", "11.8"]}


async def test_availability_depends_on_count_product_country_and_cuda(http):
    one, four = await availability(http), await availability(http, count="4")
    clusters = await availability(http, product="CLUSTER")
    romania = await availability(http, countryCodes="RO")
    a6000_in_romania = await availability(http, A6000, countryCodes="RO")
    old_cuda = await availability(http, cudaVersions="11.8")

    rtx_places = {d["id"]: d["availability"] for d in one[GPU]["dataCenters"]}
    assert rtx_places == {"US-KS-2": "HIGH", "EU-RO-1": "LOW"}
    assert {d["id"] for d in four[GPU]["dataCenters"]} == {"US-KS-2"}  # 2 free GPUs in Romania
    assert one[A6000]["availability"] == "HIGH" and four[A6000]["dataCenters"][0]["availability"] == "LOW"
    assert one[H100]["availability"] == "LOW" and clusters[H100]["availability"] == "HIGH"
    assert clusters[GPU]["availability"] == "NONE"
    assert set(romania) == {GPU} and romania[GPU]["dataCenters"] == [
        {"id": "EU-RO-1", "name": "EU Romania 1", "availability": "LOW"}]
    assert a6000_in_romania["availability"] == "NONE" and "dataCenters" not in a6000_in_romania
    assert old_cuda[A6000]["cudaVersions"] == [{"version": "11.8", "available": True}]
    assert old_cuda[GPU]["availability"] == "NONE"


async def test_a_create_places_only_where_the_count_fits(http):
    small = await http.post("pods", json={**BODY, "dataCenterIds": ["EU-RO-1"], "gpu": {"id": GPU, "count": 2}})
    big = await http.post("pods", json={**BODY, "dataCenterIds": ["EU-RO-1"], "gpu": {"id": GPU, "count": 4}})

    assert small.status_code == 201 and small.json()["dataCenterId"] == "EU-RO-1"
    assert small.json()["gpu"] == {"id": GPU, "count": 2} and small.json()["cost"] == pytest.approx(0.88)
    assert big.status_code == 400 and "no longer any instances" in big.json()["detail"]


@pytest.mark.parametrize(("body", "status"), [
    ({**BODY, "mounts": []}, 422),
    ({**BODY, "mounts": "x"}, 422),
    ({**BODY, "gpu": {"id": GPU, "allowedCudaVersions": "12.8"}}, 422),
    ({**BODY, "dataCenterIds": "US-KS-2"}, 422),
    ({**BODY, "templateId": ""}, 422),
    ({**BODY, "templateId": "tpl_unknown"}, 404),
    ({**BODY, "disk": 20.0}, 201),
    ({**BODY, "ports": ["anything goes"]}, 201),
    ({**BODY, "cpu": {"id": "cpu3c", "vcpuCount": 2}}, 400),
    ({**BODY, "gpu": {"id": GPU, "allowedCudaVersions": ["12.8"], "minCudaVersion": "12.4"}}, 400),
    ({**BODY, "gpu": {"id": GPU, "allowedCudaVersions": [], "minCudaVersion": "12.4"}}, 201),
    ({**BODY, "mounts": {"persistent": {"size": 10, "path": "/w"}, "network": [{"volumeId": "v", "path": "/n"}]}}, 400),
])
async def test_create_answers_with_runpods_codes(http, body, status):
    answer = await http.post("pods", json=body)

    assert answer.status_code == status, answer.text
    if status >= 400:
        assert answer.headers["content-type"] == "application/problem+json"
        assert set(answer.json()) >= {"title", "status", "detail"}


@pytest.mark.parametrize("raw", [b"{", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"null", b"[]"])
async def test_malformed_bodies_are_client_errors(http, raw):
    answer = await http.post("pods", content=raw, headers={"content-type": "application/json"})

    assert 400 <= answer.status_code < 500 and answer.json()["status"] == answer.status_code


async def test_query_parameters_are_checked(http):
    cluster_pods = await http.get("pods", params={"includeClusterPods": "2"})
    fine = await http.get("pods", params={"includeClusterPods": "true"})
    empty_include = await http.get("catalog/gpus", params={"include": ""})
    two_includes = await http.get("catalog/gpus", params={"include": "AVAILABILITY,AVAILABILITY", "product": "POD"})
    country = await http.get("catalog/gpus", params={"include": "AVAILABILITY", "product": "POD", "countryCodes": "ro"})
    both_cuda = await http.get("catalog/gpus", params={"include": "AVAILABILITY", "product": "POD",
                                                      "cudaVersions": "12.8", "minCudaVersion": "12"})

    assert cluster_pods.status_code == 422 and fine.status_code == 200
    assert empty_include.status_code == 200 and "availability" not in empty_include.json()["gpus"][0]
    assert two_includes.status_code == 422 and country.status_code == 422 and both_cuda.status_code == 400


async def test_patch_checks_like_create_and_keeps_mount_kinds(http):
    pod = (await http.post("pods", json={**BODY, "mounts": {"persistent": {"size": 20, "path": "/w"}}})).json()
    path = f"pods/{pod['id']}"

    listed_args = await http.patch(path, json={"args": ["--serve"]})
    network = await http.patch(path, json={"mounts": {"network": [{"volumeId": "v", "path": "/n"}]}})
    moved = await http.patch(path, json={"mounts": {"persistent": {"size": 30, "path": "/data"}}, "args": "--x"})
    unchanged = await http.patch(path, json={"mounts": {}})

    assert listed_args.status_code == 422 and network.status_code == 400
    assert moved.json()["mounts"] == {"persistent": {"size": 30, "path": "/data"}} and moved.json()["args"] == "--x"
    assert unchanged.json()["mounts"] == moved.json()["mounts"]
