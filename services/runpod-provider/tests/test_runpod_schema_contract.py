"""The local RunPod and our client against RunPod's own published v2 OpenAPI document.

RunPod's document is read from ``../shared/reference/runpod-api-v2-openapi.json`` beside the
repository's root (CI has it there; ``TOUCHSTONE_RUNPOD_OPENAPI`` names another place). It is
RunPod's file and is never copied into this repository: where it is absent these tests skip,
saying so.

- schemathesis drives the local RunPod with RunPod's schema, positive and negative data, for
  every pod and catalog operation the provider uses (and the two neighbours the fake serves,
  ``updatePod`` and ``getGpuType``), with no exclusions: no 5xx, status codes, content types,
  headers and bodies as documented, and every invalid request refused. Path ids are random and
  existing ones; creates are also sent "steered" to a GPU type the fake has (only schema-valid
  parts are changed), so that 201 bodies are checked too;
- the fake's own models and ``jsonschema`` with RunPod's schemas judge the same generated
  bodies, valid and invalid, alike;
- every request the client builds (bodies and catalog queries) validates against the schema's
  request schemas (``jsonschema``, Draft 2020-12);
- a client regression (``args`` as a list, ``dataCenterIds`` as a string) fails against the
  local RunPod as it would against RunPod.
"""

from __future__ import annotations

import asyncio
import json
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
from touchstone.runpod_provider.fake import schema as fake_schema
from touchstone.shared.errors import InvalidInputError

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")
jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

from schemathesis import GenerationMode, checks  # noqa: E402
from schemathesis.core import NOT_SET  # noqa: E402

pytestmark = pytest.mark.integration  # the local RunPod against RunPod's whole published schema (a minute)

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
QUERY_ARRAYS = {"include", "product", "countryCodes", "cudaVersions"}
GPU = "NVIDIA GeForce RTX 4090"
KEY = "rpa_SCHEMA_0123456789"
EXAMPLES = 40
"""Cases per operation, generation mode and path id (random / existing)."""


def reference_path() -> Path:
    override = os.environ.get("TOUCHSTONE_RUNPOD_OPENAPI")
    return Path(override) if override else REFERENCE


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    path = reference_path()
    if not path.is_file():
        pytest.skip(f"RunPod's v2 OpenAPI document is not at {path} (../shared/reference/ beside the repository; "
                    "CI has it there, or set TOUCHSTONE_RUNPOD_OPENAPI): the schema contract is not checked here")
    return json.loads(path.read_text())


_VALIDATORS: dict[tuple[int, str], Any] = {}


def validator(document: dict[str, Any], schema_name: str) -> Any:
    """A Draft 2020-12 validator of one ``components.schemas`` entry, refs resolved in the document."""
    key = (id(document), schema_name)
    if key not in _VALIDATORS:
        ref = {"$ref": f"urn:runpod-v2#/components/schemas/{schema_name}"}
        _VALIDATORS[key] = jsonschema.Draft202012Validator(ref, registry=_registry(document),
                                                           format_checker=jsonschema.FormatChecker())
    return _VALIDATORS[key]


def _registry(document: dict[str, Any]) -> Any:
    from referencing.jsonschema import DRAFT202012

    resource = referencing.Resource.from_contents(document, default_specification=DRAFT202012)
    return referencing.Registry().with_resource("urn:runpod-v2", resource)


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


def fuzz(document: dict[str, Any], fake: FakeRunpod, examples: int, counts: dict[str, int]) -> list[str]:
    """Run every case; return the failures as lines (empty: all conform); ``counts`` gets the
    number of cases per operation, generation mode and target."""
    schema = schemathesis.openapi.from_dict(document).include(operation_id=OPERATIONS)
    root = fake.base_url.removesuffix("/v2")
    live = LivePod(fake)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        targets = ("random id", "existing id") if "{id}" in operation.path else ("",)
        if operation.method.upper() == "POST" and operation.path == "/v2/pods":
            targets = ("", "steered")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for target in targets:
                ran = _run(document, operation, mode, target, live, root, examples, failures)
                counts[f"{operation.definition.raw['operationId']} {mode.value} {target}".strip()] = ran
    return failures


def _existing(path: str, live: LivePod) -> str:
    return GPU if path.startswith("/v2/catalog/") else live.current()


def _run(document: dict[str, Any], operation: Any, mode: Any, target: str, live: LivePod, root: str, examples: int,
         failures: list[str]) -> int:
    ran = 0

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
    def run(case: Any) -> None:
        nonlocal ran
        ran += 1
        if target == "existing id":
            case.path_parameters = {**(case.path_parameters or {}), "id": _existing(operation.path, live)}
        if target == "steered":
            _steer(document, case.body)
        _unambiguous(case)
        if not _auth_mutated(case):  # the generated bearer token becomes the fake's key
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {KEY}"}
        try:
            case.call_and_validate(base_url=root, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as e:  # schemathesis raises its own failure groups
            text = str(e)
            curl = next((line.strip() for line in text.splitlines() if line.strip().startswith("curl ")), "")
            failures.append(f"{mode.value} {case.method} {case.formatted_path} {target}: {text[:500]}\n  {curl}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # counted: zero cases
    return ran


CUDA = re.compile(r"^[0-9]+\.[0-9]+$")


def _steer(document: dict[str, Any], body: Any) -> None:
    """Point a create at what the fake has (a GPU type, a data center, CUDA versions it offers;
    a GPU pod rather than a CPU one), so that creates succeed and their 201 bodies are checked
    too. Only parts RunPod's schema accepts are replaced or dropped: a negative case stays
    negative for the same reason."""
    if not isinstance(body, dict):
        return
    if "gpu" not in body and "cpu" not in body:
        body["gpu"] = {"id": GPU}
    if "gpu" in body and "cpu" in body and not violations(document, "CreateCpuConfig", body["cpu"]):
        del body["cpu"]
    gpu = body.get("gpu")
    if isinstance(gpu, dict) and isinstance(gpu.get("id"), str):
        gpu["id"] = GPU
        cudas = gpu.get("allowedCudaVersions")
        if isinstance(cudas, list) and cudas and all(isinstance(v, str) and CUDA.match(v) for v in cudas):
            gpu["allowedCudaVersions"] = ["12.8"]
        if isinstance(gpu.get("minCudaVersion"), str) and CUDA.match(gpu["minCudaVersion"]):
            gpu["minCudaVersion"] = "12.4"
    places = body.get("dataCenterIds")
    if isinstance(places, list) and places and all(isinstance(v, str) for v in places):
        body["dataCenterIds"] = ["US-KS-2"]


def _unambiguous(case: Any) -> None:
    """A query array of one empty string and an empty array are the same request on the wire
    (``include=``, form style): RunPod can only read it as the empty, valid one. A negative case
    holding ``[""]`` is sent with ``["-"]``, invalid for the same reason (enum, pattern)."""
    if case.meta is not None and case.meta.generation.mode.is_negative and case.query:
        case.query = {k: ["-"] if k in QUERY_ARRAYS and v in ([""], "") else v for k, v in case.query.items()}


def _auth_mutated(case: Any) -> bool:
    """Whether a negative case broke the Authorization header on purpose (left as generated: 401)."""
    mutations = getattr(case.meta.phase.data, "mutations", None) or [] if case.meta else []
    return any(m.parameter == "Authorization" for m in mutations)


@pytest.fixture
async def roomy_fake(tmp_path: Path) -> Any:
    """The local RunPod with the example policy times 1000, so that fuzzing meets no 429."""
    limiter = RateLimiter(quotas=ratelimit.scaled(1000))
    async with FakeRunpod(api_key=KEY, root=tmp_path / "pods", pod_backend="ssh", rate_limiter=limiter) as fake:
        yield fake


async def test_the_local_runpod_conforms_to_runpods_schema(document, roomy_fake):
    counts: dict[str, int] = {}
    failures = await asyncio.to_thread(fuzz, document, roomy_fake, EXAMPLES, counts)

    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(set(failures))[:25])
    assert {name.split()[0] for name in counts} == set(OPERATIONS)  # none missing from RunPod's document
    assert all(n > 0 for name, n in counts.items() if " positive" in name), counts
    assert sum(counts.values()) >= 800, counts


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
    check = jsonschema.Draft202012Validator(_rebase(schema), registry=_registry(document))
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


# --- the fake's models against RunPod's schemas, case by case --------------------------------

BODIES = {"createPod": ("CreatePodRequest", fake_schema.CreatePodRequest),
          "updatePod": ("UpdatePodRequest", fake_schema.UpdatePodRequest),
          "podAction": ("PodActionRequest", fake_schema.PodActionRequest)}


def disagreements(document: dict[str, Any], examples: int) -> tuple[list[str], int]:
    """Request bodies schemathesis makes (valid and invalid) on which ``jsonschema`` with RunPod's
    schema and the fake's strict models disagree about validity; and how many were compared."""
    schema = schemathesis.openapi.from_dict(document).include(operation_id=list(BODIES))
    found: list[str] = []
    compared = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        name, model = BODIES[operation.definition.raw["operationId"]]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _compare(document, operation.as_strategy(generation_mode=mode), name, model, examples, found, compared)
    return found, compared[0]


def _compare(document: dict[str, Any], cases: Any, name: str, model: Any, examples: int, found: list[str],
             compared: list[int]) -> None:
    @hypothesis.given(case=cases)
    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
    def compare(case: Any) -> None:
        if case.body is NOT_SET:
            return
        compared[0] += 1
        theirs = violations(document, name, case.body)
        ours = fake_schema.errors(model, case.body)
        if name == "CreatePodRequest" and isinstance(case.body, dict) \
                and "image" not in case.body and "templateId" not in case.body:
            ours.append("$: missing property 'image'")
        if bool(theirs) != bool(ours):
            found.append(f"{name} {json.dumps(case.body)[:300]}: RunPod's schema {theirs[:2]}, fake {ours[:2]}")

    compare()


def test_the_fakes_models_agree_with_runpods_request_schemas(document):
    found, compared = disagreements(document, 100)

    assert not found, f"{len(found)} of {compared} bodies judged differently:\n" + "\n".join(found[:15])
    assert compared >= 400


@pytest.mark.parametrize("body", [
    {"args": 1}, {"registry": {}}, {"registry": 3}, {"startSsh": "yes"}, {"globalNetworking": "true"},
    {"gpu": {"id": GPU, "count": True}}, {"disk": True}, {"mounts": {"network": [{"volumeId": "v"}]}},
    {"mounts": {"network": [{"volumeId": "v", "path": "/a"}, {"volumeId": "w", "path": "/b"}]}},
    {"mounts": {"persistent": {"size": 10, "path": "/w", "extra": 1}}}, {"dataCenterIds": "US-KS-2"},
    {"templateId": ""}, {"mounts": []}, {"mounts": "x"}, {"gpu": {"id": GPU, "allowedCudaVersions": "12.8"}},
    {"args": ["--serve"]}, {"name": ""}, {"image": None}, {"cloud": "PRIVATE"}, {"env": {"A": 1}},
])
async def test_bodies_runpod_refuses_are_refused_by_the_local_runpod(document, api, fake, body):
    create = {"name": "p", "image": "img", "gpu": {"id": GPU}, "ports": ["22/tcp"], **body}
    async with httpx.AsyncClient() as http:
        answer = await http.post(fake.base_url + "/pods", json=create,
                                 headers={"Authorization": f"Bearer {fake.api_key}"})

    assert violations(document, "CreatePodRequest", create) != []
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert violations(document, "ErrorResponse", answer.json()) == [] and answer.json()["errors"]
    assert fake.ledger() == []
