"""RunPod cost safety and orchestration overhead, against the local RunPod (``FakeRunpod``).

The scheduler and the RunPod provider run in this process against a real nats-server and the
fake (real HTTP, pods that are real SSH endpoints), with the stand-in trainer. Both parts run at
the same time, with the provider's DEFAULT settings (reconcile every 30 s, 15 s grace, 2 s polls):

- rogue-pod exposure: ``touchstone-`` pods created behind Touchstone's back (orphaned from
  birth), staggered across one reconcile period so they land at every phase of the sweep;
  exposure = create → the fake's ``DELETE``. Target p99 ≤ 60 s. Few samples (the default period
  makes each one take 30-60 s), so p99 is the worst sample.
- orchestration attributable to Touchstone on a RunPod task: ``TaskQueued`` → ``TrainingStarted``
  (the events' own timestamps) minus the time the fake kept the pod from being usable (from the
  create to the moment its sshd accepts: the simulated boot, counted in our own polls, plus the
  simulated image pull). What remains: placement, the create call, noticing the pod is ready
  (poll granularity), the SSH handshake, fetching and copying the feature set and trainer, and
  the events in between. Target p50 ≤ 3 s. Also reported: the literal ``TaskQueued`` →
  ``TrainingStarted`` minus the pull, which still holds the fake's poll-counted boot.
- RunPod API calls per minute with 10 pods live: 10 tasks launched at once (their trainers
  sleep), then every call the fake receives during a 2-minute window once all 10 train, beside
  the schema's example rate-limit policy (60/min per user), which the fake enforces for this part;
  also the busiest 60 s of the launch and the 429s the provider met. The two parts above keep the
  example policy x10 they were first measured under.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.runpod_local import FakeRunpod, RateLimiter, ratelimit
from touchstone.runpod_provider.api import PodSpec, RunpodApiClient
from touchstone.runpod_provider.config import RunpodProviderSettings
from touchstone.runpod_provider.service import RunpodProvider
from touchstone.runpod_provider.testing import control_plane_objects, store_settings, write_standin_trainer
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.service import Scheduler
from touchstone.shared import events as ev
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import SystemSettings, write_system

from touchstone.bench.harness import broker, percentile

API_KEY = "rpa_BENCH_0123456789"
GPU = "NVIDIA GeForce RTX 4090"
PERIOD_S = RunpodProviderSettings.model_fields["reconcile_interval_s"].default
GRACE_S = RunpodProviderSettings.model_fields["reap_grace_s"].default
N_ROGUE = 10
N_TASKS = 10
N_LIVE = 10
WINDOW_S = 120.0
"""How long the provider's calls are counted once all N_LIVE pods are live."""
LIVE_SLEEP_S = 3600.0
"""The live pods' trainers sleep past the window; the bench ends them."""
EXAMPLE_POLICY = ratelimit.EXAMPLE_POLICY
PULL_S = 3.0
TASK = "pi-60"


def stamp(when: Any) -> float:
    return float(when.timestamp())


class Instrumented:
    """Wall-clock moments the fake sees: pod created, pod RUNNING (sshd accepts PULL_S later), pod deleted."""

    def __init__(self, fake: FakeRunpod) -> None:
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        create, observe, terminate = fake.create, fake.observe, fake.terminate

        async def on_create(body: dict[str, Any]):
            pod = await create(body)
            self.created[pod.id] = time.time()
            return pod

        async def on_observe(pod):
            await observe(pod)
            if pod.status == "RUNNING":
                self.running.setdefault(pod.id, time.time())

        async def on_terminate(pod):
            await terminate(pod)
            self.deleted.setdefault(pod.id, time.time())

        fake.create, fake.observe, fake.terminate = on_create, on_observe, on_terminate  # type: ignore[method-assign]


async def rogues(api: RunpodApiClient, seen: Instrumented) -> list[float]:
    """Exposure of N_ROGUE orphaned pods created across one reconcile period."""
    born: dict[str, float] = {}
    for i in range(N_ROGUE):
        if i:
            await asyncio.sleep(PERIOD_S / N_ROGUE)
        t = time.time()
        pod = await api.create_pod(PodSpec.model_validate({
            "name": f"touchstone-rogue{i}-{TASK}-1", "image": "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
            "gpu_type_id": GPU, "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA bench"}))
        born[pod.id] = t
    async with asyncio.timeout(2 * PERIOD_S + GRACE_S + 60):
        while not set(born) <= set(seen.deleted):
            await asyncio.sleep(0.2)
    return [seen.deleted[pod_id] - t for pod_id, t in born.items()]


async def tasks(publisher: EventPublisher, tmp: Path, seen: Instrumented) -> dict[str, list[float]]:
    """N_TASKS RunPod training tasks, one submitted as the previous one starts training."""
    sids = []
    for _ in range(N_TASKS):
        sid = await submit(publisher, tmp)
        await until_types(publisher, sid, {"TrainingStarted"})
        sids.append(sid)
    out: dict[str, list[float]] = {k: [] for k in ("touchstone", "literal", "place", "create", "notice", "prepare")}
    for sid in sids:
        events = await until_types(publisher, sid, {"TrainingFinished"})
        at = {e.event_type: stamp(e.occurred_at) for e in events}
        pod_id = next(e.deployment_id for e in events if e.event_type == "ContainerLaunched")
        usable = seen.running[pod_id] + PULL_S  # the moment the fake's sshd starts accepting
        not_ready = usable - seen.created[pod_id]
        total = at["TrainingStarted"] - at["TaskQueued"]
        out["touchstone"].append(total - not_ready)
        out["literal"].append(total - PULL_S)
        out["place"].append(at["TaskAssigned"] - at["TaskQueued"])
        out["create"].append(at["ContainerLaunched"] - at["TaskAssigned"])
        out["notice"].append(at["ContainerReady"] - usable)
        out["prepare"].append(at["TrainingStarted"] - at["ContainerReady"])
    return out


async def submit(publisher: EventPublisher, tmp: Path, sleep_s: float | None = None) -> str:
    """One scheduled RunPod submission of one task; its stand-in trainer sleeps ``sleep_s``."""
    folder = tmp / f"fs-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "feature_set.py").write_text("NAME = 'x'\n")
    if sleep_s is not None:
        (folder / "SLEEP").write_text(str(sleep_s))
    sid = f"b{uuid.uuid4().hex[:8]}"
    await publisher.append(ev.SubmissionCreated(aggregate_id=sid, correlation_id=sid, owner="bench",
                                                name="bench", git_url=str(folder)))
    await publisher.append(ev.SubmissionValidated(aggregate_id=sid, correlation_id=sid, passed=True, commit="c"))
    schedule = ev.Schedule(prediction_intervals=(60,), platform="runpod", gpu_type=GPU)
    await publisher.append(ev.SubmissionScheduled(aggregate_id=sid, correlation_id=sid, schedule=schedule))
    return sid


class CallLog:
    """Every authenticated call the fake receives from now on: (wall time, method, path, answered 429)."""

    def __init__(self, fake: FakeRunpod) -> None:
        self.calls: list[tuple[float, str, str]] = []
        self.refused: list[float] = []
        take_injection, limiter = fake.take_injection, fake.rate_limiter
        take = limiter.take

        def on_call(method: str, path: str):
            self.calls.append((time.time(), method, path))
            return take_injection(method, path)

        def on_take():
            wait = take()
            if wait is not None:
                self.refused.append(time.time())
            return wait

        fake.take_injection = on_call  # type: ignore[method-assign]
        limiter.take = on_take  # type: ignore[method-assign]

    def rest(self, start: float, end: float) -> list[tuple[float, str, str]]:
        return [c for c in self.calls if start <= c[0] < end and c[2].startswith("/v2/")]

    def peak_minute(self, start: float, end: float) -> int:
        """Most REST calls in any 60 s window between ``start`` and ``end``."""
        times = [c[0] for c in self.rest(start, end)]
        return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


def route(method: str, path: str) -> str:
    if path.startswith("/v2/pods/"):
        return f"{method} /v2/pods/{{id}}" + ("/action" if path.endswith("/action") else "")
    return f"{method} {path.split('?')[0]}"


async def live_load(publisher: EventPublisher, tmp: Path, fake: FakeRunpod) -> dict[str, Any]:
    """N_LIVE tasks launched at once, then WINDOW_S with all N_LIVE pods live (trainers sleeping),
    under the schema's example rate-limit policy: the provider's RunPod calls per minute. The
    scheduler may also run a validation task on RunPod for some of these submissions (it sees
    ``SubmissionCreated`` before ``SubmissionValidated``); those pods sleep too and are counted."""
    fake.rate_limiter = RateLimiter()  # the schema's example policy (60/min), the fake's default
    log = CallLog(fake)
    started = time.time()
    sids = [await submit(publisher, tmp, sleep_s=LIVE_SLEEP_S) for _ in range(N_LIVE)]
    async with asyncio.timeout(600):
        for sid in sids:
            await until_types(publisher, sid, {"TrainingStarted"}, within=600)
    all_live = time.time()
    await asyncio.sleep(WINDOW_S)
    end = time.time()
    names = [fake.find(p).name for p in fake.live_pods()]
    live = [n for n in names if any(n.startswith(f"touchstone-{sid}-") for sid in sids)]
    window = log.rest(all_live, end)
    graphql = [c for c in log.calls if all_live <= c[0] < end and c[2] == "/graphql"]
    by_route: dict[str, int] = {}
    for _, method, path in window:
        by_route[route(method, path)] = by_route.get(route(method, path), 0) + 1
    return {
        "live": len(live), "validation": sum(1 for n in live if "-validation-" in n),
        "others": sorted(set(names) - set(live)),
        "ramp_s": all_live - started, "per_min": 60 * len(window) / (end - all_live),
        "graphql_per_min": 60 * len(graphql) / (end - all_live), "by_route": by_route,
        "peak": log.peak_minute(started, end), "refused_ramp": sum(1 for t in log.refused if t < all_live),
        "refused_window": sum(1 for t in log.refused if t >= all_live), "window_s": end - all_live,
    }


async def until_types(publisher: EventPublisher, sid: str, wanted: set[str],
                      within: float = 120) -> list[ev.TaskEvent]:
    async with asyncio.timeout(within):
        while True:
            events = [r.event for r in await publisher.load_task(sid, TASK)]
            if wanted <= {e.event_type for e in events}:
                return events  # type: ignore[return-value]
            await asyncio.sleep(0.1)


async def run() -> dict:
    logging.getLogger("touchstone").setLevel(logging.ERROR)  # the reaper's warnings are the point here
    async with broker("benchrunpod") as b:
        return await measure(b.nc, b.js, b.subjects, b.tmp)


async def measure(nc: NATS, js: JetStreamContext, subjects: Subjects, tmp: Path) -> dict:
    write_standin_trainer(tmp / "trainer-src")
    # the latency phases keep the 10x quotas they were first measured under; live_load uses the example policy
    fake = FakeRunpod(api_key=API_KEY, root=tmp / "pods", pod_backend="ssh",
                      rate_limiter=RateLimiter(quotas=ratelimit.scaled(10)))
    await fake.start()
    fake.faults.pull_s = PULL_S
    seen = Instrumented(fake)
    await write_system(await system_bucket(js, subjects), SystemSettings(runpod_max_running_tasks=32))
    scheduler = Scheduler(SchedulerSettings(namespace=subjects.ns, runpod_default_gpu_type=GPU), nc, js, subjects)
    uploads = contextlib.ExitStack()  # the control plane's store: the provider puts outputs there over HTTP
    objects = uploads.enter_context(control_plane_objects(tmp / "objects"))
    provider = RunpodProvider(RunpodProviderSettings(
        namespace=subjects.ns, data_dir=tmp / "data", runpod_api_key=API_KEY, runpod_base_url=fake.base_url,
        runpod_graphql_url=fake.graphql_url, default_gpu_type=GPU, trainer_src_dir=tmp / "trainer-src",
        python=sys.executable, trainer_module="standin_trainer", log_json=False, allow_local_sources=True,
        **store_settings(objects),
    ), nc, js, subjects)
    stop = asyncio.Event()
    running = [asyncio.create_task(scheduler.run(stop)), asyncio.create_task(provider.run(stop))]
    api = RunpodApiClient(fake.base_url, API_KEY, graphql_url=fake.graphql_url, timeout=10, max_retries=0)
    try:
        async with asyncio.timeout(60):
            while not scheduler.active:
                await asyncio.sleep(0.05)
        exposure_job = asyncio.create_task(rogues(api, seen))
        orchestration = await tasks(EventPublisher(js, subjects), tmp, seen)
        exposure = await exposure_job
        load = await live_load(EventPublisher(js, subjects), tmp, fake)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 90)
        await api.aclose()
        await fake.stop()
        uploads.close()

    def r(x: float) -> float:
        return round(x, 2)

    def p50(key: str) -> float:
        return r(percentile(orchestration[key], 0.5))

    p99_exposure, p50_touchstone = percentile(exposure, 0.99), percentile(orchestration["touchstone"], 0.5)
    quota = EXAMPLE_POLICY["minute"][0]
    per = f"period {PERIOD_S:.0f} s, grace {GRACE_S:.0f} s, n={len(exposure)}"
    return {
        "name": "RunPod provider: rogue-pod exposure and orchestration overhead (FakeRunpod)",
        "rows": [
            {"metric": f"rogue-pod exposure p50 ({per})", "value": r(percentile(exposure, 0.5)), "unit": "s"},
            {"metric": f"rogue-pod exposure p99 ({per})", "value": r(p99_exposure), "unit": "s",
             "target": "<= 60", "met": p99_exposure <= 60},
            {"metric": f"orchestration attributable to Touchstone p50 (n={N_TASKS})", "value": r(p50_touchstone),
             "unit": "s", "target": "<= 3", "met": p50_touchstone <= 3},
            {"metric": "orchestration attributable to Touchstone p99",
             "value": r(percentile(orchestration["touchstone"], 0.99)), "unit": "s"},
            {"metric": f"queued->TrainingStarted minus {PULL_S:.0f} s pull p50 (w/ fake boot)",
             "value": p50("literal"), "unit": "s"},
            {"metric": "  of which queued->assigned p50", "value": p50("place"), "unit": "s"},
            {"metric": "  of which assigned->pod created p50", "value": p50("create"),
             "unit": "s"},
            {"metric": "  of which sshd accepting->ContainerReady p50", "value": p50("notice"),
             "unit": "s"},
            {"metric": "  of which ready->TrainingStarted (prepare) p50",
             "value": p50("prepare"), "unit": "s"},
            {"metric": f"RunPod v2 calls/min, {load['live']} pods live ({load['validation']} validations, "
                       f"{load['window_s']:.0f} s)",
             "value": r(load["per_min"]), "unit": "calls/min",
             "target": f"<= {quota} (schema's example policy)", "met": load["per_min"] <= quota},
            *({"metric": f"  of which {name}", "value": r(60 * n / load["window_s"]), "unit": "calls/min"}
              for name, n in sorted(load["by_route"].items())),
            {"metric": "  GraphQL balance calls/min (v1 API, same key)", "value": r(load["graphql_per_min"]),
             "unit": "calls/min"},
            {"metric": f"peak v2 calls in any 60 s (launching {N_LIVE} at once)", "value": load["peak"],
             "unit": "calls", "target": f"<= {quota}", "met": load["peak"] <= quota},
            {"metric": "429 answers to the provider while launching", "value": load["refused_ramp"], "unit": "answers"},
            {"metric": "429 answers to the provider with pods live", "value": load["refused_window"],
             "unit": "answers", "target": "0", "met": load["refused_window"] == 0},
            {"metric": f"time until {N_LIVE} launched at once are all training", "value": r(load["ramp_s"]),
             "unit": "s"},
        ],
        "other_live_pods": load["others"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run()), indent=2))
