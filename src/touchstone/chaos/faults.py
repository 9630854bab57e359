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
from touchstone.chaos.system import NAMESPACE, System

HOLD_S = 3.0
"""How long the local RunPod holds its answer to a create during scenario 6: the pod exists,
its creator has not heard yet. Shorter than the providers' command ack wait (10 s), so a create
by the peer is recorded before a redelivered launch could be."""

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


async def kill_runpod_provider_mid_create(system: System, tries: int = 6, within_s: float = 240.0) -> str:
    """Scenario 6: SIGKILL ``runpod-a`` after RunPod made a pod and before the provider recorded
    it. RunPod holds each create's answer ``HOLD_S``; at the first new pod the harness kills
    ``runpod-a``. Which replica asked is known only afterwards: the peer records its own pods
    as soon as the answer comes, so a pod still unrecorded ``HOLD_S`` + 2 s later was
    ``runpod-a``'s (a hit); otherwise ``runpod-a`` is restarted and the next create is tried.
    The killed replica is restarted afterwards, as its supervisor would."""
    victim = system.procs["runpod-a"]
    nc, js = await _services_js(system)
    publisher = EventPublisher(js, Subjects(NAMESPACE))
    hit: dict | None = None
    tried = 0
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(base_url=system.runpod_url, timeout=5) as fake:
        seen = {p["id"] for p in (await fake.get("/_fake/ledger")).json()["pods"]}
        (await fake.post("/_fake/faults", json={"create_answer_delay_s": HOLD_S})).raise_for_status()
        try:
            while hit is None and tried < tries:
                pod = await _next_create(fake, seen, deadline)
                if pod is None:
                    break
                tried += 1
                victim.signal(signal.SIGKILL)
                killed_at = time.monotonic()
                await asyncio.sleep(HOLD_S + 2.0)
                if not await _launch_recorded(publisher, pod["name"], pod["id"]):
                    hit = {**pod, "killed_at": killed_at}
                    break
                victim.start()  # the peer made that one: bring runpod-a back and try the next
        finally:
            (await fake.post("/_fake/faults", json={"create_answer_delay_s": 0})).raise_for_status()
    if hit is not None:  # the orphan's launch comes back to a provider, which adopts the pod
        recorded = None
        while time.monotonic() < deadline and recorded is None:
            if await _launch_recorded(publisher, hit["name"], hit["id"]):
                recorded = round(time.monotonic() - hit["killed_at"], 1)
            else:
                await asyncio.sleep(0.5)
        system.notes.update(orphan=hit["name"], orphan_recorded_after_s=recorded)
    await nc.close()
    if not victim.alive():
        victim.start()
    system.notes.update(hit=hit is not None, tries=tried)
    if hit is None:
        return f"runpod-a never caught between create and record in {tried} tries"
    return (f"runpod-a SIGKILLed after RunPod made {hit['name']} and before it was recorded "
            f"(try {tried}); restarted")


async def fill_logs(system: System, within_s: float = 240.0, after_s: float = 5.0) -> str:
    """Scenario 7: the load includes a noisy task (``workload.noisy_feature_set``) whose console fills the
    logs stream (``LOGS``: discard old) while everyone trains. Meanwhile a probe appends events
    in a namespace of its own on the same nodes (same account, servers and disks): its longest
    pause in acknowledgements is the figure of "event writes keep going". The fault is over once
    the logs stream has discarded lines (it is full) and ``after_s`` more."""
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
