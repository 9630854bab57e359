"""Faults of the whole system that need more than a signal: a RunPod provider killed between a
pod's create and its record (scenario 6), and a noisy task filling the logs stream (scenario 7).

Each is a ``workload.Fault``: it runs once training is under way, returns what it did in words,
and leaves what it measured in ``system.notes`` for the figures.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
from touchstone.runpod_provider.domain import split_pod_name
from touchstone.shared.jetstream import LogLimits, connect, provision
from touchstone.shared.publisher import EventPublisher, task_events
from touchstone.shared.subjects import Subjects

from touchstone.chaos.appends import AppendLoad
from touchstone.chaos.cluster import SERVICES_USER
from touchstone.chaos.system import NAMESPACE, RUNPOD_KEY, System

HOLD_S = 3.0
"""How long the local RunPod holds its answer to a create during scenario 6: the pod exists,
its creator has not heard yet (the window in which the harness kills the creator)."""

NOISE_LINES = 60_000
"""Console lines each run of the noisy feature set prints (about 5 MB; see
``workload.noisy_feature_set``)."""

LOGS = LogLimits(max_bytes=2 * 1024**2)
"""The logs stream's budget in scenario 7: small, so that the noise fills it many times over."""


async def _services_js(system: System):
    nc = await connect(system.cluster.url, "chaos-fault", user=SERVICES_USER, password=system.cluster.password,
                       tls=system.cluster.client_tls())
    return nc, nc.jetstream(timeout=10)


async def _launch_recorded(publisher: EventPublisher, name: str, pod_id: str) -> bool:
    """Whether the task's events hold ``ContainerLaunched`` of this pod (its creator recorded it)."""
    split = split_pod_name(name)
    if split is None:
        return False
    history = task_events(await publisher.load("task", split[0]))
    return any(getattr(e, "deployment_id", None) == pod_id and e.event_type == "ContainerLaunched"
               for e in history)


async def _next_create(fake: httpx.AsyncClient, seen: set[str], deadline: float) -> dict | None:
    """The first ``touchstone-`` pod the local RunPod creates that is not in ``seen``."""
    while time.monotonic() < deadline:
        for pod in (await fake.get("/_fake/ledger")).json()["pods"]:
            if pod["id"] not in seen and str(pod["name"]).startswith("touchstone-"):
                seen.add(pod["id"])
                return dict(pod)
        await asyncio.sleep(0.05)
    return None


async def creator(fake: httpx.AsyncClient, pod_id: str) -> str | None:
    """The provider replica that created the pod: the comment of the key in its ``PUBLIC_KEY``."""
    answer = await fake.get(f"/v2/pods/{pod_id}", headers={"Authorization": f"Bearer {RUNPOD_KEY}"})
    if answer.status_code != 200:
        return None
    words = str(answer.json().get("env", {}).get("PUBLIC_KEY", "")).split()
    return words[2] if len(words) > 2 else None


async def kill_runpod_provider_mid_create(system: System, within_s: float = 300.0) -> str:
    """Scenario 6: SIGKILL the RunPod provider that asked for a pod after RunPod made it and
    before the provider recorded it. RunPod holds each create's answer ``HOLD_S``; at the first
    new pod the harness reads which replica asked (its key's comment) and kills that one while
    its create is still unanswered. The launch was never acked: it comes back to a provider,
    which must adopt the pod (no second pod, no leaked one, no second run). The killed replica
    is restarted afterwards, as its supervisor would."""
    nc, js = await _services_js(system)
    publisher = EventPublisher(js, Subjects(NAMESPACE))
    deadline = time.monotonic() + within_s
    pod: dict | None = None
    victim = None
    async with httpx.AsyncClient(base_url=system.runpod_url, timeout=5) as fake:
        seen = {p["id"] for p in (await fake.get("/_fake/ledger")).json()["pods"]}
        (await fake.post("/_fake/faults", json={"create_answer_delay_s": HOLD_S})).raise_for_status()
        try:
            while victim is None:
                pod = await _next_create(fake, seen, deadline)
                if pod is None:
                    break
                victim = system.procs.get(await creator(fake, pod["id"]) or "")
            if victim is not None and pod is not None:
                victim.signal(signal.SIGKILL)
                killed_at = time.monotonic()
                unrecorded = not await _launch_recorded(publisher, pod["name"], pod["id"])
        finally:
            (await fake.post("/_fake/faults", json={"create_answer_delay_s": 0})).raise_for_status()
    if victim is None or pod is None:
        await nc.close()
        system.notes.update(hit=False)
        return f"no pod was created within {within_s:.0f}s"
    recorded = None  # the orphan's launch comes back to a provider, which adopts the pod
    while time.monotonic() < deadline and recorded is None:
        if await _launch_recorded(publisher, pod["name"], pod["id"]):
            recorded = round(time.monotonic() - killed_at, 1)
        else:
            await asyncio.sleep(0.5)
    await nc.close()
    await asyncio.sleep(5)
    victim.start()
    system.notes.update(hit=unrecorded, victim=victim.name, orphan=pod["name"], orphan_recorded_after_s=recorded)
    return (f"{victim.name} SIGKILLed after RunPod made {pod['name']} and before it was recorded; "
            f"restarted 5s later")


kill_runpod_provider_mid_create.early = True  # type: ignore[attr-defined]  # from the first create on


async def fill_logs(system: System, within_s: float = 240.0, after_s: float = 10.0) -> str:
    """Scenario 7: the load includes a noisy task (``workload.noisy_feature_set``) whose console fills the
    logs stream (``LOGS``: discard old) while everyone trains. Meanwhile a probe appends events
    in a namespace of its own on the same nodes (same account, servers and disks): its longest
    pause in acknowledgements is the figure of "event writes keep going". It starts with the
    load (the noise starts with the noisy task's validation) and is over once the logs stream has
    discarded lines (it is full) and ``after_s`` more."""
    nc, js = await _services_js(system)
    subjects = Subjects(NAMESPACE)
    probe_subjects = Subjects("probe")
    await provision(js, probe_subjects, replicas=3)
    probe = AppendLoad(js, probe_subjects, writers=1)
    started = time.monotonic()
    probe.start()
    full_at = None
    state = None
    try:
        while time.monotonic() - started < within_s:
            state = (await js.stream_info(subjects.logs_stream)).state
            if state.first_seq > 1:
                full_at = time.monotonic()
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(after_s)
        state = (await js.stream_info(subjects.logs_stream)).state
    finally:
        await probe.stop()
        await nc.close()
    system.notes.update(
        logs_full=full_at is not None, logs_full_after_s=None if full_at is None else round(full_at - started, 1),
        logs_bytes=state.bytes if state else None, logs_max_bytes=LOGS.max_bytes,
        logs_discarded=(state.first_seq - 1) if state else None,
        probe_acked=len(probe.acked), probe_refused=probe.failed,
        writes_pause_s=round(probe.longest_pause_after(started, time.monotonic() - started), 3))
    if full_at is None:
        return f"the logs stream did not fill within {within_s:.0f}s"
    return (f"a noisy task filled the logs stream ({LOGS.max_bytes // 1024**2} MiB, discard old) "
            f"{full_at - started:.0f}s into the fault")


fill_logs.early = True  # type: ignore[attr-defined]  # the probe covers the noise from its start
