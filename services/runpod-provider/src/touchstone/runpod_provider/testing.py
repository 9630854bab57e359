"""Pytest fixtures and helpers for tests that run the RunPod provider against the local RunPod
(``touchstone.runpod_local``): the fake on 127.0.0.1 and our client of it, pod specs, provider
settings with short periods, a stand-in trainer, and the ledger check every such test ends with.

Imported by the provider's ``conftest.py``, ``tests/test_runpod_flow.py`` and the RunPod bench;
nothing here is used in production, and this is the only module of the provider that imports
the local RunPod (a dev dependency: ``make lint`` checks it). Tests that run a provider also need the ``nc``, ``js`` and
``subjects`` fixtures of ``touchstone.shared.testing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from touchstone.runpod_local import FakeRunpod, PodRecord, RateLimiter, ratelimit
from touchstone.runpod_local.testing import docker_pods_or_skip
from touchstone.shared.objects.grants import GrantSigner
from touchstone.shared.objects.stores import LocalObjectStore
from touchstone.shared.objects.testing import serve_uploads
from touchstone.shared.testing import make_wheel

from .api import Pod, PodSpec, RunpodApiClient
from .config import RunpodProviderSettings

API_KEY = "rpa_TESTKEY_do_not_leak_0123456789"
GPU = "NVIDIA GeForce RTX 4090"
IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
WAIT_S = 90.0
"""Liveness bound of ``wait_for`` (generous: a bound, never a timing check)."""

PROVIDER_DEFAULTS: dict[str, Any] = {
    "poll_interval_s": 0.05,
    "allow_local_sources": True,  # tests stage feature sets from local folders
    "ready_timeout_s": 30.0,
    "launch_timeout_s": 10.0,
    "ssh_connect_timeout_s": 5.0,
    "terminate_timeout_s": 10.0,
    "reconcile_interval_s": 0.2,
    "reap_grace_s": 0.5,
    "balance_interval_s": 0.5,
    "catalog_interval_s": 60.0,
    "heartbeat_interval_s": 1.0,
    "launch_retry_s": 0.2,
    "api_max_retries": 0,
    "api_timeout_s": 10.0,
    "trainer_module": "standin_trainer",
    "log_json": False,
}
"""Provider settings for tests: short periods, no retries at the edge, the stand-in trainer."""

TIME_SCALE = 150
"""How much faster than its defaults ``PROVIDER_DEFAULTS`` runs the provider (its reconcile
period, 30 s → 0.2 s; polls and the balance watch are compressed less)."""


def scaled_rate_limiter() -> RateLimiter:
    """RunPod's example rate-limit policy with its quotas scaled by ``TIME_SCALE``: the budget
    the provider's default periods get, for a provider whose periods are compressed that much."""
    return RateLimiter(quotas=ratelimit.scaled(TIME_SCALE))

STANDIN_TRAINER = '''\
"""A tiny stand-in for the trainer (DESIGN §6 contract), copied into fake pods by the tests.

The feature set steers it: a file ``SLEEP`` holding seconds makes it sleep (printing a line
first), a file ``EXIT`` holding a status makes it exit with that status, a file ``IMPORT``
holding a module name makes it import that module and print its ``VALUE``. A ``VERSION`` in
the package's ``__init__.py`` is printed.
"""

import importlib
import json
import os
import sys
import time


def main(argv):
    command, args = argv[0], dict(zip(argv[1::2], argv[2::2], strict=False))
    feature_set = args["--feature-set"]
    print(f"stand-in trainer: {command} {feature_set}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    version = getattr(sys.modules.get(__package__ or ""), "VERSION", None)
    if version:
        print(f"stand-in trainer version {version}", flush=True)
    wanted = os.path.join(feature_set, "IMPORT")
    if os.path.exists(wanted):
        module = importlib.import_module(open(wanted).read().strip())
        print(f"imported {module.__name__}: {module.VALUE}", flush=True)
    sleep = os.path.join(feature_set, "SLEEP")
    if os.path.exists(sleep):
        print("sleeping", flush=True)
        time.sleep(float(open(sleep).read()))
    fail = os.path.join(feature_set, "EXIT")
    if os.path.exists(fail):
        print("failing on purpose", flush=True)
        return int(open(fail).read())
    if command == "validate":
        with open(args["--report"], "w") as f:
            json.dump({"passed": True, "checks": [{"name": "shape", "passed": True, "detail": "ok"}],
                       "duration_s": 0.1}, f)
        return 0
    out = args["--output"]
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    for side in ("long", "short"):
        with open(os.path.join(out, "models", f"{side}.bin"), "wb") as f:
            f.write(side.encode())
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"long": {"auc": 0.61}, "short": {"auc": 0.58}}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def write_standin_trainer(src: Path, version: str = "") -> Path:
    """A trainer source folder holding the stand-in trainer as the package ``standin_trainer``
    (for ``trainer_module="standin_trainer"``), printing ``version`` when given; returns ``src``."""
    package = src / "standin_trainer"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"VERSION = {version!r}\n" if version else "")
    (package / "__main__.py").write_text(STANDIN_TRAINER)
    return src


def write_feature_set(root: Path, **files: str) -> Path:
    """A fresh feature set folder under ``root``: ``feature_set.py`` plus ``files`` (name, text)."""
    folder = root / f"fs-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "feature_set.py").write_text("NAME = 'x'\n")
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd`` with a fixed identity and no user configuration; its stdout."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_trainer_repo(root: Path) -> Path:
    """A git repository of stand-in trainers under ``trainer/`` (``src/`` and ``configs/``):
    tag ``v1`` prints version ``v1``, branch ``main`` (later) prints ``v2``. Returns ``root``."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "trainer" / "configs").mkdir(parents=True)
    (root / "trainer" / "configs" / "default.toml").write_text("seed = 1\n")
    for version in ("v1", "v2"):
        write_standin_trainer(root / "trainer" / "src", version)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"stand-in trainer {version}")
        if version == "v1":
            git(root, "tag", "v1")
    return root


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], within: float = WAIT_S) -> None:
    """Poll until ``condition`` holds (a liveness bound, not a timing check)."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


def pod_spec(name: str = "touchstone-s1-t1-1", **overrides: Any) -> PodSpec:
    """A pod spec as the provider would send it; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "name": name,
        "image": IMAGE,
        "gpu_type_id": GPU,
        "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA test",
    }
    fields.update(overrides)
    return PodSpec.model_validate(fields)


GRANT_KEY = "runpod-tests-upload-grant-key-0123456789"


def control_plane_objects(root: Path) -> contextlib.AbstractContextManager[LocalObjectStore]:
    """The control plane's embedded store at ``root``, taking uploads on a real port."""
    return serve_uploads(root, GrantSigner(GRANT_KEY.encode()))


def store_settings(objects: LocalObjectStore) -> dict[str, Any]:
    """The settings that make a provider put outputs into ``objects`` (through its endpoint)."""
    return {"objects_dir": objects.root, "objects_url": objects.url, "upload_grant_key": GRANT_KEY}


def provider_settings(fake: FakeRunpod, *, namespace: str, data_dir: Path, trainer_src: Path | None,
                      **overrides: Any) -> RunpodProviderSettings:
    """Settings of a provider that uses ``fake``, with ``PROVIDER_DEFAULTS`` and ``overrides``.
    ``trainer_src`` is a fixed trainer folder (None: ``trainer_repo`` from ``overrides``, or this
    checkout). The pod's interpreter is this one for asyncssh pods and ``python3`` for container
    pods."""
    values: dict[str, Any] = {
        "default_gpu_type": GPU,
        "python": "python3" if fake.pod_backend == "docker" else sys.executable,
        **PROVIDER_DEFAULTS,
        **overrides,
    }
    return RunpodProviderSettings(
        namespace=namespace,
        data_dir=data_dir,
        runpod_api_key=fake.api_key,
        runpod_base_url=fake.base_url,
        runpod_graphql_url=fake.graphql_url,
        trainer_src_dir=trainer_src,
        **values,
    )


def unaccounted(ledger: Iterable[PodRecord], live: Iterable[str]) -> list[PodRecord]:
    """``touchstone-`` pods of the ledger neither terminated nor owned by a live attempt."""
    owned = set(live)
    return [r for r in ledger if r.name.startswith("touchstone-") and not r.terminated and r.name not in owned]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeRunpod]:
    """The local RunPod; its pods are asyncssh servers (fast; no engine needed)."""
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods", pod_backend="ssh",
                          rate_limiter=scaled_rate_limiter()) as server:
        yield server


@pytest.fixture
async def docker_fake(tmp_path: Path) -> AsyncIterator[FakeRunpod]:
    """The local RunPod with pods as Docker containers running sshd (skipped where impossible)."""
    await docker_pods_or_skip()
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods", pod_backend="docker",
                          rate_limiter=scaled_rate_limiter()) as server:
        yield server


@pytest.fixture
async def api(fake: FakeRunpod) -> AsyncIterator[RunpodApiClient]:
    async with RunpodApiClient(fake.base_url, fake.api_key, graphql_url=fake.graphql_url, timeout=10,
                               max_retries=0) as client:
        yield client


@pytest.fixture(scope="session")
def ssh_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def spec(ssh_key: asyncssh.SSHKey) -> Callable[..., PodSpec]:
    """A pod spec with our public key and a secret in its env; keyword arguments override."""

    def make(**overrides: object) -> PodSpec:
        fields: dict[str, Any] = {"public_key": ssh_key.export_public_key().decode(),
                                  "env": {"HF_TOKEN": "hf_secret_value"}}
        fields.update(overrides)
        return pod_spec(**fields)

    return make


@pytest.fixture
def until_ready(api: RunpodApiClient) -> Callable[..., Awaitable[Pod]]:
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


@pytest.fixture
def provider_defaults() -> dict[str, Any]:
    return dict(PROVIDER_DEFAULTS)


@pytest.fixture
def trainer_src(tmp_path: Path) -> Path:
    """A trainer source folder holding the stand-in trainer as ``standin_trainer``."""
    return write_standin_trainer(tmp_path / "trainer-src")


@pytest.fixture
def trainer_repo(tmp_path: Path) -> Path:
    """A git repository of stand-in trainers (``make_trainer_repo``): ``v1`` and ``main`` (v2)."""
    return make_trainer_repo(tmp_path / "trainer-repo")


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """A folder for ``pip_find_links`` holding the wheel ``tsdemo-helper`` 1.0."""
    folder = tmp_path / "wheels"
    make_wheel(folder, "tsdemo-helper", "1.0")
    return folder
