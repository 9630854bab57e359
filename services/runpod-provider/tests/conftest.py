"""Fixtures: a real fake RunPod on 127.0.0.1 and a real client of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest
from touchstone.runpod_provider.api import Pod, PodSpec, RunpodApiClient
from touchstone.runpod_provider.fake import FakeRunpod

API_KEY = "rpa_TESTKEY_do_not_leak_0123456789"
GPU = "NVIDIA GeForce RTX 4090"


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeRunpod]:
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods") as server:
        yield server


@pytest.fixture
async def api(fake: FakeRunpod) -> AsyncIterator[RunpodApiClient]:
    async with RunpodApiClient(
        fake.base_url, API_KEY, graphql_url=fake.graphql_url, timeout=5, max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="session")
def ssh_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def spec(ssh_key: asyncssh.SSHKey) -> Callable[..., PodSpec]:
    """A pod spec with our public key; keyword arguments override fields."""

    def make(**overrides: object) -> PodSpec:
        fields: dict[str, object] = {
            "name": "touchstone-s1-t1-1",
            "image": "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
            "gpu_type_id": GPU,
            "public_key": ssh_key.export_public_key().decode(),
            "env": {"HF_TOKEN": "hf_secret_value"},
        }
        fields.update(overrides)
        return PodSpec.model_validate(fields)

    return make


@pytest.fixture
def until_ready(api: RunpodApiClient) -> Callable[[str], Awaitable[Pod]]:
    """Poll a pod until it is running with ``ssh.direct`` (what a provider would do)."""

    async def wait(pod_id: str, within: float = 5.0) -> Pod:
        async with asyncio.timeout(within):
            while True:
                pod = await api.get_pod(pod_id)
                assert pod is not None
                if pod.ssh_ready:
                    return pod
                await asyncio.sleep(0.02)

    return wait


# --- the provider against the fake ------------------------------------------------------------

@pytest.fixture
def provider_defaults() -> dict[str, object]:
    """Provider settings for tests: short periods, no retries at the edge."""
    return dict(PROVIDER_DEFAULTS)


PROVIDER_DEFAULTS: dict[str, object] = {
    "poll_interval_s": 0.05,
    "ready_timeout_s": 20.0,
    "capacity_wait_s": 5.0,
    "ssh_connect_timeout_s": 5.0,
    "terminate_timeout_s": 10.0,
    "reconcile_interval_s": 0.2,
    "reap_grace_s": 0.5,
    "balance_interval_s": 0.5,
    "catalog_interval_s": 60.0,
    "heartbeat_interval_s": 1.0,
    "launch_retry_s": 0.2,
    "api_max_retries": 0,
    "api_timeout_s": 5.0,
    "trainer_module": "standin_trainer",
    "log_json": False,
}


@pytest.fixture
def trainer_src(tmp_path: Path) -> Path:
    """A trainer source folder holding the stand-in trainer as ``standin_trainer``."""
    src = tmp_path / "trainer-src"
    package = src / "standin_trainer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text((Path(__file__).parent / "standin_trainer.py").read_text())
    return src
