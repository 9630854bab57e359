"""The local RunPod and our client against RunPod's own published v2 OpenAPI document.

RunPod's document is read from ``../shared/reference/runpod-api-v2-openapi.json`` beside the
repository's root (CI has it there; ``TOUCHSTONE_RUNPOD_OPENAPI`` names another place). It is
RunPod's file and is never copied into this repository: where it is absent these tests skip,
saying so.

- schemathesis drives the local RunPod with RunPod's schema, positive and negative data, for
  every pod and catalog operation the provider uses (and the two neighbours the fake serves,
  ``updatePod`` and ``getGpuType``), with no exclusions: no 5xx, status codes, content types,
  headers and bodies as documented, and every invalid request refused;
- every request the client builds (bodies and catalog queries) validates against the schema's
  request schemas (``jsonschema``, Draft 2020-12);
- a client regression (``args`` as a list, ``dataCenterIds`` as a string) fails against the
  local RunPod as it would against RunPod.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from touchstone.runpod_provider.api import Cloud, PodSpec, RunpodApiClient, parse
from touchstone.runpod_provider.fake import FakeRunpod, RateLimiter, ratelimit
from touchstone.shared.errors import InvalidInputError

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")
jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

from schemathesis import GenerationMode, checks  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "runpod-api-v2-openapi.json"
OPERATIONS = ["listPods", "createPod", "getPod", "updatePod", "deletePod", "podAction", "listGpuTypes", "getGpuType"]
"""The provider's operations (all but the last two, which the fake serves as well)."""
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
GPU = "NVIDIA GeForce RTX 4090"
KEY = "rpa_SCHEMA_0123456789"
EXAMPLES = 60
"""Cases per operation, generation mode and pod (random id / live pod)."""


def reference_path() -> Path:
    override = os.environ.get("TOUCHSTONE_RUNPOD_OPENAPI")
    return Path(override) if override else REFERENCE


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    import json

    path = reference_path()
    if not path.is_file():
        pytest.skip(f"RunPod's v2 OpenAPI document is not at {path} (../shared/reference/ beside the repository; "
                    "CI has it there, or set TOUCHSTONE_RUNPOD_OPENAPI): the schema contract is not checked here")
    return json.loads(path.read_text())


def validator(document: dict[str, Any], schema_name: str) -> Any:
    """A Draft 2020-12 validator of one ``components.schemas`` entry, refs resolved in the document."""
    from referencing.jsonschema import DRAFT202012

    resource = referencing.Resource.from_contents(document, default_specification=DRAFT202012)
    registry = referencing.Registry().with_resource("urn:runpod-v2", resource)
    ref = {"$ref": f"urn:runpod-v2#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(ref, registry=registry, format_checker=jsonschema.FormatChecker())


def violations(document: dict[str, Any], schema_name: str, instance: Any) -> list[str]:
    return sorted(e.message for e in validator(document, schema_name).iter_errors(instance))


# --- schemathesis against the local RunPod -------------------------------------------------


class LivePod:
    """A pod of the fake that schemathesis's cases can act on, made again when one deletes it."""

    def __init__(self, fake: FakeRunpod) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.pod_id: str | None = None

    def current(self) -> str:
        with self.lock:
            if self.pod_id is None or self.pod_id not in self.fake.live_pods():
                body = {"name": "schema-live", "image": "img", "gpu": {"id": GPU}, "ports": ["22/tcp"]}
                answer = httpx.post(self.fake.base_url + "/pods", json=body,
                                    headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
                assert answer.status_code == 201, answer.text
                self.pod_id = answer.json()["id"]
            return self.pod_id


def fuzz(document: dict[str, Any], fake: FakeRunpod, examples: int) -> list[str]:
    """Run every case; return the failures as lines (empty: all conform)."""
    schema = schemathesis.openapi.from_dict(document).include(operation_id=OPERATIONS)
    root = fake.base_url.removesuffix("/v2")
    live = LivePod(fake)
    failures: list[str] = []
    seen: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        seen.add(operation.definition.raw["operationId"])
        on_pods = ("random id", "live pod") if "{id}" in operation.path else ("",)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for target in on_pods:
                failures += _run(operation, mode, target, live, root, examples)
    missing = set(OPERATIONS) - seen
    return failures + [f"operation {name} not in RunPod's document" for name in sorted(missing)]


def _run(operation: Any, mode: Any, target: str, live: LivePod, root: str, examples: int) -> list[str]:
    failures: list[str] = []

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
    def run(case: Any) -> None:
        if target == "live pod":
            case.path_parameters = {**(case.path_parameters or {}), "id": live.current()}
        try:
            case.call_and_validate(base_url=root, headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)
        except Exception as e:  # schemathesis raises its own failure groups
            failures.append(f"{mode.value} {case.method} {case.formatted_path} {target}: {str(e)[:600]}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # no negative case exists for an operation whose inputs are all plain strings
    return failures


@pytest.fixture
async def roomy_fake(tmp_path: Path) -> Any:
    """The local RunPod with the example policy times 1000, so that fuzzing meets no 429."""
    limiter = RateLimiter(quotas=ratelimit.scaled(1000))
    async with FakeRunpod(api_key=KEY, root=tmp_path / "pods", pod_backend="ssh", rate_limiter=limiter) as fake:
        yield fake


async def test_the_local_runpod_conforms_to_runpods_schema(document, roomy_fake):
    failures = await asyncio.to_thread(fuzz, document, roomy_fake, EXAMPLES)

    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(set(failures))[:25])


# --- what the client sends ----------------------------------------------------------------


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the fake and keeps (method, path, query, JSON body) of each."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import json

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
    from referencing.jsonschema import DRAFT202012

    resource = referencing.Resource.from_contents(document, default_specification=DRAFT202012)
    registry = referencing.Registry().with_resource("urn:runpod-v2", resource)
    check = jsonschema.Draft202012Validator(_rebase(schema), registry=registry)
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
