"""Each service's /metrics, scraped from the process an operator runs, moves with real events."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncssh
from metricskit import ServiceProcess, service_env, value
from touchstone.runpod_local import FakeRunpod
from touchstone.runpod_provider.api import RunpodApiClient
from touchstone.runpod_provider.testing import API_KEY, pod_spec
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, GpuStatus, encode_report
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import task_aggregate_id
from touchstone.shared.system import Server, SystemSettings, write_system
from touchstone.shared.testing import sample_report


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
        assert value(placed, "touchstone_queue_wait_seconds_sum", platform="any") > 0  # it waited for the agent
        assert value(placed, "touchstone_attempts_live", platform="onprem") == 1
        assert value(placed, "touchstone_agent_up", host="gpu-a") == 1
        assert value(placed, "touchstone_agent_slots", host="gpu-a") == 2
        assert value(placed, "touchstone_agent_gpu_utilization_ratio", host="gpu-a", gpu="0") == 0.37
        assert value(placed, "touchstone_agent_gpu_memory_used_bytes", host="gpu-a", gpu="0") == 1024**3

        name = "touchstone-s-m-validation-1"
        for event in (_task(ev.ContainerLaunched, "s-m", "validation", attempt=1, container_name=name),
                      _task(ev.ContainerReady, "s-m", "validation", attempt=1),
                      _task(ev.TrainingStarted, "s-m", "validation", attempt=1),
                      _task(ev.TrainingFinished, "s-m", "validation", attempt=1, report=sample_report())):
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


async def test_runpod_provider_metrics_show_balance_spend_and_a_rejected_key(nats_server, js, subjects, tmp_path):
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods", pod_backend="ssh") as fake:
        fake.faults.balance = 42.5
        async with RunpodApiClient(fake.base_url, fake.api_key, graphql_url=fake.graphql_url, timeout=10,
                                   max_retries=0) as api:
            key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
            ours = await api.create_pod(pod_spec(name="touchstone-s-gone-pi-60-1", public_key=key))
            stranger = await api.create_pod(pod_spec(name="jupyter-notebook", public_key=key))
        env = {**service_env(nats_server.url, subjects.ns, tmp_path / "data"),
               "TOUCHSTONE_RUNPOD_API_KEY": fake.api_key, "TOUCHSTONE_RUNPOD_BASE_URL": fake.base_url,
               "TOUCHSTONE_RUNPOD_GRAPHQL_URL": fake.graphql_url, "TOUCHSTONE_RECONCILE_INTERVAL_S": "0.3",
               "TOUCHSTONE_BALANCE_INTERVAL_S": "0.3", "TOUCHSTONE_REAP_GRACE_S": "600",
               "TOUCHSTONE_SPEND_ALARM_USD_PER_HOUR": "0.25", "TOUCHSTONE_API_MAX_RETRIES": "0"}
        provider = ServiceProcess("touchstone.runpod_provider", env, tmp_path / "runpod.log").start()
        try:
            seen = await provider.until(lambda s: value(s, "touchstone_runpod_pods_running") == 1
                                        and value(s, "touchstone_runpod_balance_usd") == 42.5)
            assert value(seen, "touchstone_runpod_spend_usd_per_hour") == ours.cost_per_hour  # not the stranger's
            assert value(seen, "touchstone_runpod_balance_low_threshold_usd") == 50  # the seed's $50
            assert value(seen, "touchstone_runpod_spend_alarm_threshold_usd_per_hour") == 0.25
            assert value(seen, "touchstone_runpod_alarm_active", kind="low_balance") == 1
            assert value(seen, "touchstone_runpod_alarm_active", kind="high_spend") == 1
            assert value(seen, "touchstone_runpod_api_key_rejected") == 0

            fake.faults.revoked = True
            rejected = await provider.until(lambda s: value(s, "touchstone_runpod_api_key_rejected") == 1)
            assert value(rejected, "touchstone_runpod_launches_stopped") == 1
            assert value(rejected, "touchstone_runpod_alarms_total", kind="api_key_rejected") == 1
            fake.faults.revoked = False
            await provider.until(lambda s: value(s, "touchstone_runpod_api_key_rejected") == 0)
        finally:
            provider.stop()
        kinds = {e.kind for e in await _events(js, subjects) if isinstance(e, ev.AlarmRaised)}
        assert {"low_balance", "high_spend", "api_key_rejected"} <= kinds
        assert stranger.id in fake.live_pods()


async def _events(js, subjects) -> list[ev.Event]:
    out = []
    info = await js.stream_info(subjects.events_stream)
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg(subjects.events_stream, seq=seq)
        out.append(ev.decode_event(msg.data))
    return out
