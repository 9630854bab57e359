"""Pytest fixtures and helpers for tests that speak to the local RunPod on its own wire: the
fake on 127.0.0.1 (asyncssh or Docker pods), pods created and polled as plain JSON, and
RunPod's own published v2 document as the judge of shapes.

Used by this distribution's tests and by the provider's (``docker_pods_or_skip``, the
document); nothing here is used by the fake itself. Its tests speak JSON rather than the
provider's client on purpose: they check what RunPod's API shows, not our reading of it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from . import ratelimit
from .container import DEFAULT_POD_IMAGE, why_not_docker
from .ratelimit import RateLimiter
from .server import FakeRunpod

API_KEY = "rpa_LOCAL_TESTKEY_0123456789"
GPU = "NVIDIA GeForce RTX 4090"
RATE_SCALE = 150
"""Quotas of the tests' fake: RunPod's example policy times this, so that polling a pod every
few milliseconds meets no 429 (the rate-limit tests build a fake with the default policy)."""


# --- the fake -------------------------------------------------------------------------------


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeRunpod]:
    """The local RunPod; its pods are asyncssh servers (fast; no engine needed)."""
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods", pod_backend="ssh",
                          rate_limiter=RateLimiter(quotas=ratelimit.scaled(RATE_SCALE))) as server:
        yield server


async def docker_pods_or_skip(image: str = DEFAULT_POD_IMAGE) -> None:
    """Skip the test, saying why, when the fake cannot run pods as containers with sshd here;
    with ``TOUCHSTONE_REQUIRE_DOCKER=1`` (CI, which has the engine and the image) fail instead."""
    why = await why_not_docker(image)
    if why is None:
        return
    if os.environ.get("TOUCHSTONE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"fake RunPod Docker pods required here (TOUCHSTONE_REQUIRE_DOCKER=1): {why}")
    pytest.skip(f"fake RunPod Docker pods unavailable: {why}")


@pytest.fixture
async def docker_fake(tmp_path: Path) -> AsyncIterator[FakeRunpod]:
    """The local RunPod with pods as Docker containers running sshd (skipped where impossible)."""
    await docker_pods_or_skip()
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods", pod_backend="docker",
                          rate_limiter=RateLimiter(quotas=ratelimit.scaled(RATE_SCALE))) as server:
        yield server


@pytest.fixture(scope="session")
def ssh_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


# --- pods as RunPod shows them --------------------------------------------------------------


class Pods:
    """RunPod v2's pod routes as plain JSON (create, get, delete, poll until SSH shows), over
    one authenticated HTTP client: ``async with Pods(fake) as pods``."""

    def __init__(self, fake: FakeRunpod) -> None:
        self.fake = fake
        self.http = httpx.AsyncClient(headers={"Authorization": f"Bearer {fake.api_key}"}, timeout=30)

    async def __aenter__(self) -> Pods:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def create(self, public_key: str, **body: Any) -> dict[str, Any]:
        """A created pod (201) with ``ports: ["22/tcp"]``, the key as ``env.PUBLIC_KEY`` and a
        secret beside it; ``body`` overrides fields of the request."""
        request = {"name": "touchstone-s1-t1-1", "image": "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
                   "gpu": {"id": GPU}, "ports": ["22/tcp"],
                   "env": {"PUBLIC_KEY": public_key, "HF_TOKEN": "hf_secret_value"}, **body}
        answer = await self.http.post(f"{self.fake.base_url}/pods", json=request)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def get(self, pod_id: str) -> dict[str, Any] | None:
        """The pod, or None once RunPod no longer has it (404)."""
        answer = await self.http.get(f"{self.fake.base_url}/pods/{pod_id}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return dict(answer.json())

    async def delete(self, pod_id: str) -> None:
        (await self.http.delete(f"{self.fake.base_url}/pods/{pod_id}")).raise_for_status()

    async def until_ready(self, pod_id: str, within: float = 5.0) -> dict[str, Any]:
        """Poll the pod until it is RUNNING with ``ssh.direct`` (what a provider waits for)."""
        async with asyncio.timeout(within):
            while True:
                pod = await self.get(pod_id)
                assert pod is not None, f"pod {pod_id} is gone"
                if ssh_port(pod) is not None:
                    return pod
                await asyncio.sleep(0.02)


def ssh_port(pod: dict[str, Any]) -> int | None:
    """The port of the pod's ``ssh.direct`` while it is RUNNING, else None."""
    direct = (pod.get("ssh") or {}).get("direct")
    return int(direct["port"]) if pod.get("status") == "RUNNING" and direct else None


@pytest.fixture
async def pods(fake: FakeRunpod) -> AsyncIterator[Pods]:
    async with Pods(fake) as wire:
        yield wire


# --- RunPod's published document ------------------------------------------------------------

REFERENCE = Path(__file__).resolve().parents[5].parent / "shared" / "reference" / "runpod-api-v2-openapi.json"
"""``../shared/reference/`` beside the workspace's root (this module lives in the workspace:
``services/runpod-local/src/touchstone/runpod_local/``)."""


def reference_path() -> Path:
    """Where RunPod's v2 OpenAPI document is read: ``TOUCHSTONE_RUNPOD_OPENAPI`` or ``REFERENCE``."""
    override = os.environ.get("TOUCHSTONE_RUNPOD_OPENAPI")
    return Path(override) if override else REFERENCE


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """RunPod's v2 OpenAPI document. It is RunPod's file and never copied into this repository:
    where it is absent the test is skipped, saying so."""
    path = reference_path()
    if not path.is_file():
        pytest.skip(f"RunPod's v2 OpenAPI document is not at {path} (../shared/reference/ beside the repository; "
                    "CI has it there, or set TOUCHSTONE_RUNPOD_OPENAPI): the schema contract is not checked here")
    return dict(json.loads(path.read_text()))


_VALIDATORS: dict[tuple[int, str], Any] = {}


def registry(document: dict[str, Any]) -> Any:
    """A ``referencing`` registry holding ``document`` as ``urn:runpod-v2``."""
    referencing = pytest.importorskip("referencing")
    from referencing.jsonschema import DRAFT202012

    resource = referencing.Resource.from_contents(document, default_specification=DRAFT202012)
    return referencing.Registry().with_resource("urn:runpod-v2", resource)


def validator(document: dict[str, Any], schema_name: str) -> Any:
    """A Draft 2020-12 validator of one ``components.schemas`` entry, refs resolved in the document."""
    jsonschema = pytest.importorskip("jsonschema")
    key = (id(document), schema_name)
    if key not in _VALIDATORS:
        ref = {"$ref": f"urn:runpod-v2#/components/schemas/{schema_name}"}
        _VALIDATORS[key] = jsonschema.Draft202012Validator(ref, registry=registry(document),
                                                           format_checker=jsonschema.FormatChecker())
    return _VALIDATORS[key]


def violations(document: dict[str, Any], schema_name: str, instance: Any) -> list[str]:
    """What RunPod's schema ``schema_name`` finds wrong with ``instance`` (empty: valid)."""
    return sorted(e.message for e in validator(document, schema_name).iter_errors(instance))
