"""Pods through RunPod's API: create-or-adopt, wait until SSH works, terminate and confirm.

Rules: one pod per attempt name (the name is looked up before every create, and a create that
may have made the pod is followed by a lookup, never a blind retry); ready means ``ssh.direct``
plus a handshake that succeeds; terminate is silent when the pod is already gone and returns
only once RunPod no longer has it (or gives up, leaving it to the reaper).
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncssh
from touchstone.shared.errors import AuthError, NoCapacityError, PermanentError, RateLimitedError, UnavailableError

from . import ssh
from .api import (
    CreateUncertainError,
    ForbiddenError,
    PaymentRequiredError,
    Pod,
    PodSpec,
    PodStatus,
    RunpodApiClient,
)
from .config import RunpodProviderSettings

log = logging.getLogger(__name__)

CREATE_TRIES = 5


class InfraFailure(Exception):
    """The pod, SSH, RunPod or the feature set's source failed the attempt."""


class LaunchBlocked(Exception):
    """No pod can be had yet (no stock, a balance RunPod refuses): the launch goes back to the
    queue (``LaunchDeferred``) and burns no attempt."""


class Hooks:
    """What pod control tells the service (``RunpodProvider`` overrides these)."""

    async def on_key_rejected(self, message: str) -> None: ...

    async def on_payment_required(self, message: str) -> None: ...


class PodControl:
    def __init__(self, settings: RunpodProviderSettings, api: RunpodApiClient, key: asyncssh.SSHKey,
                 hooks: Hooks) -> None:
        self.settings = settings
        self.api = api
        self.key = key
        self.hooks = hooks

    def spec(self, name: str, gpu_type: str) -> PodSpec:
        s = self.settings
        return PodSpec(name=name, image=s.image, gpu_type_id=gpu_type, cloud=s.cloud, disk_gb=s.disk_gb,
                       ports=("22/tcp",), public_key=self.key.export_public_key().decode().strip())

    async def find(self, name: str) -> list[Pod]:
        """Live pods with exactly this name."""
        return [p for p in await self.api.list_pods(name_prefix=name) if p.name == name]

    async def create_or_adopt(self, spec: PodSpec, launch_by: float) -> Pod:
        """The one pod named ``spec.name``: adopted when listed, else created. No stock is
        retried until ``launch_by`` (``time.monotonic``), then ``LaunchBlocked``, as is a
        balance RunPod refuses; a 429 waits as told; anything permanent fails the attempt."""
        deadline = launch_by
        troubles = 0
        while True:
            try:
                return await self._adopt(spec.name) or await self.api.create_pod(spec)
            except CreateUncertainError as e:
                troubles += 1
                log.warning("%s: %s; looking the name up", spec.name, e)
                if troubles >= CREATE_TRIES:
                    raise InfraFailure(f"RunPod create kept failing: {e}") from e
            except NoCapacityError as e:
                if time.monotonic() >= deadline:
                    raise LaunchBlocked(f"no RunPod stock of {spec.gpu_type_id}") from e
            except RateLimitedError as e:
                await asyncio.sleep(e.retry_after or self.settings.poll_interval_s)
                continue
            except PaymentRequiredError as e:
                await self.hooks.on_payment_required(str(e))
                raise LaunchBlocked(f"RunPod refused a pod for the balance: {e}") from e
            except AuthError as e:
                if not isinstance(e, ForbiddenError):
                    await self.hooks.on_key_rejected(str(e))
                raise InfraFailure(str(e)) from e
            except PermanentError as e:
                raise InfraFailure(f"RunPod refused the pod: {e}") from e
            except UnavailableError as e:
                troubles += 1
                if troubles >= CREATE_TRIES:
                    raise InfraFailure(f"RunPod unavailable: {e}") from e
            await asyncio.sleep(self.settings.poll_interval_s)

    async def _adopt(self, name: str) -> Pod | None:
        found = await self.find(name)
        if not found:
            return None
        log.info("%s: adopting pod %s", name, found[0].id)
        for extra in found[1:]:
            log.error("%s: a second pod %s has its name; terminating it", name, extra.id)
            await self.api.terminate_pod(extra.id)
        return found[0]

    async def wait_ready(self, pod_id: str) -> tuple[asyncssh.SSHClientConnection, Pod]:
        """An SSH connection to the pod once it is RUNNING with ``ssh.direct`` and the handshake
        succeeds (a pod reports RUNNING while its image still pulls), and the pod as last seen."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        last = "the pod never showed an SSH endpoint"
        while True:
            pod = await self._get(pod_id)
            if pod.status in (PodStatus.FAILED, PodStatus.STOPPED):
                raise InfraFailure(f"pod {pod.id} went {pod.status.value} while starting")
            if pod.ssh_ready and pod.ssh is not None:
                try:
                    return await ssh.connect(pod.ssh, self.key, self.settings.ssh_connect_timeout_s), pod
                except ssh.SshFailed as e:
                    last = str(e)
            if time.monotonic() >= deadline:
                raise InfraFailure(f"pod {pod_id} not reachable over SSH within "
                                   f"{self.settings.ready_timeout_s:.0f}s: {last}")
            await asyncio.sleep(self.settings.poll_interval_s)

    async def _get(self, pod_id: str) -> Pod:
        """The pod. Gone fails the attempt; RunPod being briefly unavailable is not the pod's fault."""
        try:
            pod = await self.api.get_pod(pod_id)
        except UnavailableError as e:
            log.warning("pod %s: %s", pod_id, e)
            return Pod(id=pod_id, name="", status=PodStatus.UNKNOWN)
        if pod is None:
            raise InfraFailure(f"pod {pod_id} disappeared")
        return pod

    async def why_lost(self, pod_id: str) -> str:
        """Why a trainer ended without an exit status (its pod went away, or its shell in the
        pod was killed), in the pod's terms."""
        try:
            pod = await self.api.get_pod(pod_id)
        except UnavailableError:
            return f"lost the trainer on pod {pod_id} mid-run"
        state = "gone" if pod is None else pod.status.value
        return f"lost the trainer on pod {pod_id} mid-run, without an exit status (pod {state})"

    async def terminate(self, pod_id: str) -> bool:
        """``DELETE`` the pod and wait until RunPod no longer has it; False if it still does."""
        deadline = time.monotonic() + self.settings.terminate_timeout_s
        while True:
            try:
                await self.api.terminate_pod(pod_id)
                if await self.api.get_pod(pod_id) is None:
                    return True
            except (UnavailableError, RateLimitedError) as e:
                log.warning("terminate of pod %s: %s", pod_id, e)
            except PermanentError as e:
                log.error("terminate of pod %s refused: %s (the reaper will retry)", pod_id, e)
                return False
            if time.monotonic() >= deadline:
                log.error("pod %s still there after %.0fs (the reaper will retry)", pod_id,
                          self.settings.terminate_timeout_s)
                return False
            await asyncio.sleep(self.settings.poll_interval_s)

