"""The local RunPod against RunPod's own published v2 OpenAPI document.

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
- bodies RunPod's schema refuses are refused by the local RunPod (422, RunPod's error body).

What the provider's client sends is checked against the same document in the provider's
``tests/test_client_schema_contract.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from touchstone.runpod_local import FakeRunpod, RateLimiter, ratelimit
from touchstone.runpod_local import schema as fake_schema
from touchstone.runpod_local.testing import GPU, violations

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from schemathesis import GenerationMode, checks  # noqa: E402
from schemathesis.core import NOT_SET  # noqa: E402

pytestmark = pytest.mark.integration  # the local RunPod against RunPod's whole published schema (a minute)

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
KEY = "rpa_SCHEMA_0123456789"
EXAMPLES = 40
"""Cases per operation, generation mode and path id (random / existing)."""


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
async def test_bodies_runpod_refuses_are_refused_by_the_local_runpod(document, fake, body):
    create = {"name": "p", "image": "img", "gpu": {"id": GPU}, "ports": ["22/tcp"], **body}
    async with httpx.AsyncClient() as http:
        answer = await http.post(fake.base_url + "/pods", json=create,
                                 headers={"Authorization": f"Bearer {fake.api_key}"})

    assert violations(document, "CreatePodRequest", create) != []
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert violations(document, "ErrorResponse", answer.json()) == [] and answer.json()["errors"]
    assert fake.ledger() == []
