"""Our client against RunPod's own published v2 OpenAPI document.

RunPod's document is read from ``../shared/reference/runpod-api-v2-openapi.json`` beside the
repository's root (``touchstone.runpod_local.testing.document``; ``TOUCHSTONE_RUNPOD_OPENAPI``
names another place); where it is absent these tests skip, saying so.

- every request the client builds (bodies and catalog queries) validates against the schema's
  request schemas (``jsonschema``, Draft 2020-12);
- a client regression (``args`` as a list, ``dataCenterIds`` as a string) fails against the
  local RunPod as it would against RunPod.

The local RunPod itself is held to the same document by ``services/runpod-local/tests/
test_schema_contract.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from touchstone.runpod_local.testing import registry, violations
from touchstone.runpod_provider.api import Cloud, PodSpec, RunpodApiClient, parse
from touchstone.shared.errors import InvalidInputError

jsonschema = pytest.importorskip("jsonschema")

pytestmark = pytest.mark.integration  # against RunPod's published schema

GPU = "NVIDIA GeForce RTX 4090"


# --- what the client sends ----------------------------------------------------------------


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the fake and keeps (method, path, query, JSON body) of each."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        query = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        self.sent.append((request.method, request.url.path, query, body))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def specs() -> Iterator[PodSpec]:
    base = {"name": "touchstone-s1-t1-1", "image": "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
            "gpu_type_id": GPU}
    yield PodSpec.model_validate(base)
    yield PodSpec.model_validate({**base, "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me", "args": "--serve",
                                  "env": {"A": "1"}, "data_center_ids": ("US-KS-2",), "min_cuda_version": "12.4",
                                  "gpu_count": 2, "disk_gb": 50, "registry_id": "reg_1"})
    yield PodSpec.model_validate({**base, "cloud": Cloud.COMMUNITY, "ports": ("22/tcp", "8888/http")})


def _query_violations(document: dict[str, Any], query: dict[str, str]) -> list[str]:
    """Each ``listGpuTypes`` query value against its parameter's schema (form style, not exploded:
    arrays are comma-separated)."""
    refs = document["paths"]["/v2/catalog/gpus"]["get"]["parameters"]
    parameters = [document["components"]["parameters"][r["$ref"].rsplit("/", 1)[-1]] for r in refs]
    schemas = {p["name"]: p["schema"] for p in parameters}
    found = []
    for name, raw in query.items():
        kind = schemas[name].get("type")
        value: Any = raw.split(",") if kind == "array" else int(raw) if kind == "integer" and raw.isdigit() else raw
        found += [f"{name}: {message}" for message in _inline_violations(document, schemas[name], value)]
    return found


def _inline_violations(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    """``value`` against a schema written inline in the document (its ``#/...`` refs rebased)."""
    check = jsonschema.Draft202012Validator(_rebase(schema), registry=registry(document))
    return [e.message for e in check.iter_errors(value)]


def _rebase(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: "urn:runpod-v2" + v if k == "$ref" and v.startswith("#") else _rebase(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


async def test_every_request_the_client_builds_validates_against_runpods_schema(document, fake):
    recorder = Recorder()
    async with RunpodApiClient(fake.base_url, fake.api_key, graphql_url=fake.graphql_url, timeout=10,
                               max_retries=0, transport=recorder) as api:
        for spec in specs():
            pod = await api.create_pod(spec)
            await api.get_pod(pod.id)
            await api.stop_pod(pod.id)
            await api.get_pod(pod.id)
            await api.start_pod(pod.id)
            await api.terminate_pod(pod.id)
        await api.list_pods()
        for cloud in Cloud:
            await api.list_gpu_types(cloud=cloud, count=2)

    schema_of = {("POST", "/v2/pods"): "CreatePodRequest", ("PATCH", "/v2/pods/{id}"): "UpdatePodRequest",
                 ("POST", "/v2/pods/{id}/action"): "PodActionRequest"}
    checked = 0
    for method, path, query, body in recorder.sent:
        route = (method, re.sub(r"^/v2/pods/[^/]+", "/v2/pods/{id}", path))
        if route in schema_of:
            assert violations(document, schema_of[route], body) == [], (method, path, body)
            checked += 1
        else:
            assert body is None, (method, path, body)
        if path == "/v2/catalog/gpus":
            assert _query_violations(document, query) == [], query
    assert checked == 3 * len(list(specs()))


# --- a client regression fails against the local RunPod ---------------------------------------

REGRESSIONS = {
    "args as a list": lambda body: {**body, "args": ["--serve"]},
    "dataCenterIds as a string": lambda body: {**body, "dataCenterIds": "US-KS-2"},
    "startSsh as a string": lambda body: {**body, "startSsh": "yes"},
    "gpu.count as a boolean": lambda body: {**body, "gpu": {**body["gpu"], "count": True}},
    "a v1 field": lambda body: {**body, "gpuTypeIds": [body["gpu"]["id"]]},
}


@pytest.mark.parametrize("regression", list(REGRESSIONS))
async def test_a_client_regression_fails_against_the_local_runpod(document, api, fake, spec, monkeypatch, regression):
    good = parse.create_body
    monkeypatch.setattr(parse, "create_body", lambda s: REGRESSIONS[regression](good(s)))

    with pytest.raises(InvalidInputError, match="422"):
        await api.create_pod(spec())

    assert fake.ledger() == []
    assert violations(document, "CreatePodRequest", parse.create_body(spec())) != []  # RunPod refuses it too
