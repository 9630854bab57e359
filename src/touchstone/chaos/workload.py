"""Faults of the whole system while submissions are validated and trained across GPU hosts.

The load goes through both API replicas in turn, as users would: submit an example feature
set, wait until it is accepted, schedule it on several intervals, on-prem and on RunPod in turn. A fault starts once
training is under way; afterwards every submission must settle and the record must keep the
promise (``invariants.check``), and the projections rebuilt from the stream must equal what
both API replicas serve.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from touchstone.shared import events as ev
from touchstone.shared.jetstream import LogLimits, connect
from touchstone.shared.projector import Projector
from touchstone.shared.store import open_store
from touchstone.shared.subjects import Subjects

from touchstone.chaos import invariants
from touchstone.chaos.cluster import SERVICES_USER
from touchstone.chaos.system import EXAMPLES, NAMESPACE, RUNPOD_FAST, System

SETTLED = {"COMPLETED", "ERROR", "CANCELLED"}
FAST = {  # retries and stuck detection on a test's clock, as the e2e tests set them
    "TOUCHSTONE_RETRY_BASE_DELAY_S": "0.5", "TOUCHSTONE_RETRY_FACTOR": "2",
    "TOUCHSTONE_LEASE_S": "8", "TOUCHSTONE_HEARTBEAT_TIMEOUT_S": "10",
    "TOUCHSTONE_SWEEP_INTERVAL_S": "1", "TOUCHSTONE_LEASE_TTL_S": "6",
}

# a pod no attempt owns is terminated within one reconcile period plus the reap grace
REAP_BOUND_S = float(RUNPOD_FAST["TOUCHSTONE_RECONCILE_INTERVAL_S"]) + float(RUNPOD_FAST["TOUCHSTONE_REAP_GRACE_S"])


@dataclass
class Load:
    submissions: int = 3
    intervals: tuple[int, ...] = (15, 60)
    example: str = "momentum"
    platforms: tuple[str, ...] = ("onprem", "runpod")  # submission i is scheduled on platforms[i % n]
    noisy_lines: int = 0  # > 0: one more submission whose every run prints this many console lines
    logs: LogLimits | None = None  # the logs stream's budget (default: the shipped one)


@dataclass
class SystemFigures:
    scenario: str
    submissions: int
    tasks: int
    unfinished: int
    double_runs: int
    overlapping: int
    attempts_burned: int
    projections_equal: bool
    seconds: float
    pods_created: int = 0
    pods_leaked: int = 0
    pods_doubled: int = 0
    pods_settled_s: float = 0.0
    objects_checked: int = 0  # keys that finished attempts named (console logs, artifacts)
    objects_missing: int = 0  # of those, not in the bucket
    fault: dict[str, object] = field(default_factory=dict)  # what the fault measured (``System.notes``)
    failures: list[str] = field(default_factory=list)  # every failed attempt and its reason
    detail: str = ""
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


Fault = Callable[[System], Awaitable[str]]
"""Starts once training is under way; one marked ``early = True`` starts with the load instead
(it waits for its own moment, which may come before any training starts)."""


async def no_fault(system: System) -> str:
    return "no fault (baseline)"


async def cut_gpu_host(system: System, outage_s: float = 20.0) -> str:
    """Scenario 2: one GPU host off the network for longer than the agent's lease, then healed."""
    host = system.gpus[0].name
    system.network.cut(host)
    await asyncio.sleep(outage_s)
    system.network.heal(host)
    return f"{host} cut off for {outage_s:.0f}s (agent lease 8s), then healed"


async def rolling_restart(system: System) -> str:
    """Scenario 4: every service and agent restarted (SIGTERM, start), one replica at a time."""
    for proc in system.procs.values():
        await asyncio.to_thread(proc.stop)
        proc.start()
        if proc.module == "touchstone.submission":
            await system.wait_api()
        await asyncio.sleep(2)
    return f"rolling restart of {len(system.procs)} processes"


async def pause_provider(system: System, pause_s: float = 20.0) -> str:
    """Scenario 5: SIGSTOP one on-prem provider replica, then SIGCONT."""
    proc = system.procs["onprem-a"]
    proc.signal(signal.SIGSTOP)
    await asyncio.sleep(pause_s)
    proc.signal(signal.SIGCONT)
    return f"onprem-a stopped (SIGSTOP) for {pause_s:.0f}s"


async def run(fault: Fault, name: str, root: Path, load: Load, timeout: float = 600) -> SystemFigures:
    system = System(root / name, settings=dict(FAST), runpod="runpod" in load.platforms, logs=load.logs)
    started = time.monotonic()
    try:
        await system.start()
        headers = {"Authorization": f"Bearer {system.admin_token}"}
        apis = [httpx.AsyncClient(base_url=u, headers=headers, timeout=10) for u in system.api_urls()]
        early = asyncio.create_task(fault(system)) if getattr(fault, "early", False) else None
        acknowledged = await _submit_and_schedule(apis, load, system.root)
        await _until_training(apis[0], acknowledged)
        detail = await (early or fault(system))
        await _until_settled(apis, acknowledged, started + timeout)
        verdict, equal, objects = await _check(system, apis, acknowledged)
        pods = invariants.PodVerdict()
        if system.runpod:
            pods = await invariants.pods_settled(system.runpod_ledger, REAP_BOUND_S)
        for api in apis:
            await api.aclose()
        problems = (verdict.unfinished + verdict.double_assigned + verdict.too_many_attempts
                    + verdict.overlapping + [f"missing {s}" for s in verdict.missing_submissions]
                    + [f"pod {n} not terminated {REAP_BOUND_S:.0f}s after the load settled" for n in pods.leaked]
                    + [f"two pods for {n}" for n in pods.doubled] + objects.missing)
        return SystemFigures(
            scenario=name, submissions=len(acknowledged), tasks=verdict.tasks, unfinished=len(verdict.unfinished),
            double_runs=len(verdict.double_assigned) + len(verdict.overlapping), overlapping=len(verdict.overlapping),
            attempts_burned=verdict.attempts_burned, projections_equal=equal,
            seconds=round(time.monotonic() - started, 1), detail=detail, problems=problems[:20],
            pods_created=pods.created, pods_leaked=len(pods.leaked), pods_doubled=len(pods.doubled),
            pods_settled_s=pods.settled_s, objects_checked=objects.checked, objects_missing=len(objects.missing),
            fault=dict(system.notes), failures=verdict.failures[:20])
    finally:
        system.close()


async def _submit_and_schedule(apis: list[httpx.AsyncClient], load: Load, root: Path) -> list[str]:
    sources = [(str(EXAMPLES / load.example), f"{load.example}-{i}") for i in range(load.submissions)]
    if load.noisy_lines:  # first, so that its noise overlaps everyone's work
        sources.insert(0, (str(noisy_feature_set(root, EXAMPLES / load.example, load.noisy_lines)), "noisy"))
    ids = []
    for i, (url, label) in enumerate(sources):
        r = await apis[i % len(apis)].post("/api/v1/submissions", json={"git_url": url, "name": label})
        r.raise_for_status()
        ids.append(str(r.json()["id"]))
    for i, sid in enumerate(ids):
        await _wait(apis[i % len(apis)], sid, {"ACCEPTED", "REJECTED"}, time.monotonic() + 300)
        r = await apis[(i + 1) % len(apis)].post(f"/api/v1/submissions/{sid}/schedule", json={
            "prediction_intervals": list(load.intervals), "platform": load.platforms[i % len(load.platforms)]})
        r.raise_for_status()
    return ids


def noisy_feature_set(root: Path, example: Path, lines: int) -> Path:
    """A copy of ``example`` that prints ``lines`` console lines whenever it is loaded (by
    validation and by every training): a noisy task."""
    folder = root / "noisy"
    folder.mkdir(parents=True, exist_ok=True)
    source = (example / "feature_set.py").read_text()
    noise = (f"\nimport sys as _sys\nfor _i in range({lines}):\n"
             f"    print(f'noise {{_i:07d}} ' + 'x' * 64)\n_sys.stdout.flush()\n")
    (folder / "feature_set.py").write_text(source + noise)
    return folder


async def _wait(api: httpx.AsyncClient, sid: str, wanted: set[str], deadline: float) -> dict:
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            body = (await api.get(f"/api/v1/submissions/{sid}")).json()
        except httpx.HTTPError:
            body = {}
        if body.get("status") in wanted:
            return body
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{sid} stuck in {body.get('status')}")


async def _until_training(api: httpx.AsyncClient, ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [(await api.get(f"/api/v1/submissions/{sid}")).json().get("status") for sid in ids]
        if any(s in {"RUNNING", *SETTLED} for s in statuses):
            return
        await asyncio.sleep(0.5)


async def _until_settled(apis: list[httpx.AsyncClient], ids: list[str], deadline: float) -> None:
    for sid in ids:
        with_error = None
        for api in apis:
            try:
                await _wait(api, sid, SETTLED, deadline)
            except TimeoutError as e:
                with_error = e
        if with_error:
            raise with_error


@dataclass
class Objects:
    checked: int = 0
    missing: list[str] = field(default_factory=list)


async def _check(system: System, apis: list[httpx.AsyncClient], ids: list[str],
                 ) -> tuple[invariants.Verdict, bool, Objects]:
    subjects = Subjects(NAMESPACE)
    nc = await connect(system.cluster.url, "chaos-check", user=SERVICES_USER, password=system.cluster.password,
                       tls=system.cluster.client_tls())
    try:
        js = nc.jetstream(timeout=10)
        record = await invariants.read_record(js, subjects)
        verdict = invariants.check(record, ids)
        finished = [e for e in record if isinstance(e, ev.TrainingFinished)]
        objects = Objects(checked=sum(1 + len(e.artifacts) for e in finished),
                          missing=invariants.objects_missing(finished, await asyncio.to_thread(system.bucket_keys)))
        with tempfile.TemporaryDirectory() as tmp:
            store = await open_store(f"sqlite:///{Path(tmp) / 'rebuilt.db'}")
            try:
                await Projector(js, subjects, store).rebuild()
                equal = True
                for sid in ids:
                    rebuilt = await store.get_submission(sid)
                    for api in apis:
                        live = (await api.get(f"/api/v1/submissions/{sid}")).json()
                        if rebuilt is None or (live.get("status"), live.get("tasks_done")) != (
                                rebuilt.status.value, rebuilt.tasks_done):
                            equal = False
            finally:
                await store.close()
    finally:
        await nc.close()
    return verdict, equal, objects
