"""Each service's /metrics, scraped from the process an operator runs, moves with real events."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from metricskit import ServiceProcess, service_env, value
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, GpuStatus, encode_report
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import task_aggregate_id
from touchstone.shared.system import Server, SystemSettings, write_system


def _task(cls: type[ev.TaskEvent], sid: str, tid: str, **kw: object) -> ev.TaskEvent:
    return cls(aggregate_id=task_aggregate_id(sid, tid), correlation_id=sid, submission_id=sid, task_id=tid, **kw)  # type: ignore[arg-type]


async def _heartbeat(nc, subjects, host: str, free: int) -> None:
    report = AgentHeartbeat(host=host, version="test", namespace=subjects.ns, slots_total=2, slots_free=free,
                            gpus=(GpuStatus(index=0, utilization_pct=37.0, memory_used_mb=1024),))
    await nc.publish(subjects.agent_reports(host), encode_report(report))
    await nc.flush()


async def test_scheduler_metrics_follow_a_task_from_queue_to_success(nats_server, nc, js, subjects, tmp_path) -> None:
    await write_system(await system_bucket(js, subjects), SystemSettings(
        servers=[Server(name="gpu-a", num_slots=2), Server(name="gpu-gone", num_slots=1)], runpod_max_running_tasks=0))
    env = {**service_env(nats_server.url, subjects.ns, tmp_path / "data"), "TOUCHSTONE_LEASE_TTL_S": "2"}
    scheduler = ServiceProcess("touchstone.scheduler", env, tmp_path / "scheduler.log").start()
    try:
        before = await scheduler.until(lambda s: value(s, "touchstone_scheduler_active") == 1)
        assert value(before, "touchstone_placements_total", platform="onprem") == 0
        assert value(before, "process_resident_memory_bytes") > 0  # the standard collectors
        assert value(before, "touchstone_agent_declared", host="gpu-gone") == 1
        assert value(before, "touchstone_agent_up", host="gpu-gone") == 0

        pub = EventPublisher(js, subjects)
        await pub.append(ev.SubmissionCreated(aggregate_id="s-m", correlation_id="s-m", owner="alice", name="fs",
                                              git_url="https://git.example/fs.git"))
        queued = await scheduler.until(lambda s: value(s, "touchstone_queue_depth", platform="any") == 1)
        assert value(queued, "touchstone_queue_oldest_wait_seconds", platform="any") >= 0

        await _heartbeat(nc, subjects, "gpu-a", free=2)
        placed = await scheduler.until(lambda s: value(s, "touchstone_placements_total", platform="onprem") == 1)
        assert value(placed, "touchstone_queue_depth", platform="any") == 0
        assert value(placed, "touchstone_queue_wait_seconds_count", platform="any") == 1
        assert value(placed, "touchstone_attempts_live", platform="onprem") == 1
        assert value(placed, "touchstone_agent_up", host="gpu-a") == 1
        assert value(placed, "touchstone_agent_slots", host="gpu-a") == 2
        assert value(placed, "touchstone_agent_gpu_utilization_ratio", host="gpu-a", gpu="0") == 0.37
        assert value(placed, "touchstone_agent_gpu_memory_used_bytes", host="gpu-a", gpu="0") == 1024**3

        name = "touchstone-s-m-validation-1"
        for event in (_task(ev.ContainerLaunched, "s-m", "validation", attempt=1, container_name=name),
                      _task(ev.ContainerReady, "s-m", "validation", attempt=1),
                      _task(ev.TrainingStarted, "s-m", "validation", attempt=1),
                      _task(ev.TrainingFinished, "s-m", "validation", attempt=1, report={"passed": True})):
            await pub.append(event)
        done = await scheduler.until(lambda s: value(
            s, "touchstone_attempts_total", platform="onprem", result="succeeded", failure_class="") == 1)
        for phase in ("assigned", "provisioning", "preparing", "running"):
            assert value(done, "touchstone_attempt_phase_seconds_count", platform="onprem", phase=phase) == 1, phase
        assert value(done, "touchstone_attempts_live", platform="onprem") == 0
        assert value(done, "touchstone_attempts_total", platform="onprem", result="failed",
                     failure_class="infrastructure") == 0
    finally:
        scheduler.stop()
