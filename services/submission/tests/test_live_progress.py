"""Training progress and GPU use of running tasks on the Tasks and task pages: the trainer's
progress lines on the task's console subject and the agent's heartbeat, over a real
nats-server, read by the real API."""

from __future__ import annotations

import re

from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, GpuStatus, encode_report
from touchstone.shared.progress import Progress, latest_progress

LINES = (b"[trainer] data: canned\n"
         b"[trainer] progress {\"step\": 1, \"steps\": 6, \"stage\": \"fit long\"}\n"
         b"[trainer] long: logistic fitted\n"
         b"[trainer] progress {\"step\": 3, \"steps\": 6, \"stage\": \"baseline long\"}\n")


def test_the_latest_well_formed_progress_line_wins() -> None:
    assert latest_progress(LINES) == Progress(step=3, steps=6, stage="baseline long")
    assert latest_progress(b"no progress here\n") is None
    assert latest_progress(b'[trainer] progress {"step": -1, "steps": 6}\n') is None
    assert latest_progress(b"[trainer] progress not json\n") is None
    assert Progress(step=3, steps=6).percent == 50


async def test_tasks_and_task_page_show_progress_and_gpu_use(api) -> None:
    sid = await api.accepted(api.alice)
    base = {"correlation_id": sid, "submission_id": sid, "aggregate_id": f"{sid}-pi-15", "task_id": "pi-15"}
    await api.record(
        ev.TaskQueued(**base, spec=ev.TaskSpec(git_url="https://github.com/org/fs.git"), prediction_interval=15),
        ev.TaskAssigned(**base, attempt=1, platform="onprem", placement="gpu1/1"),
        ev.ContainerLaunched(**base, attempt=1, container_name=f"touchstone-{sid}-pi-15-1"),
        ev.ContainerReady(**base, attempt=1),
        ev.TrainingStarted(**base, attempt=1),
    )
    gpus = (GpuStatus(index=0, name="A100", utilization_pct=5.0, memory_used_mb=100, memory_total_mb=81920),
            GpuStatus(index=1, name="A100", utilization_pct=87.0, memory_used_mb=30720, memory_total_mb=81920,
                      busy=True))
    beat = AgentHeartbeat(host="gpu1", slots_total=2, slots_free=1, gpus=gpus, running=(f"touchstone-{sid}-pi-15-1",))
    await api.deps.nc.publish(api.deps.subjects.agent_reports("gpu1"), encode_report(beat))
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-15"), LINES)

    async def heard() -> bool:
        return "gpu1" in api.deps.hosts.seen and api.deps.progress.latest.get(f"{sid}-pi-15") is not None

    await api.until(heard)
    cookie = (await api.anon.post("/ui/sign-in", data={"token": api.admin.headers["Authorization"][7:],
                                                       "next": "/ui/tasks"})).headers["set-cookie"].split(";")[0]
    page = (await api.anon.get("/ui/tasks", headers={"Cookie": cookie})).text
    cell = re.search(r'<td data-label="Progress" class="train-progress">(.*?)</td>', page, re.S).group(1)
    assert 'data-step="3" data-steps="6"' in cell and "baseline long" in cell
    gpu = re.search(r'<td data-label="GPU" class="gpu-use">(.*?)</td>', page, re.S).group(1)
    assert 'data-gpu-index="1"' in gpu and "87%" in gpu and "30.0/80 GiB" in gpu
    detail = (await api.anon.get(f"/ui/tasks/{sid}/pi-15", headers={"Cookie": cookie})).text
    assert 'data-step="3"' in detail and "87%" in detail
    assert f'data-state-refresh="/ui/tasks/{sid}/pi-15?fragment=true"' in detail
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-15"),
                              b'[trainer] progress {"step": 5, "steps": 6, "stage": "write"}\n')

    async def moved() -> bool:
        latest = api.deps.progress.latest.get(f"{sid}-pi-15")
        return latest is not None and latest.step == 5

    await api.until(moved)
    state = (await api.anon.get(f"/ui/tasks/{sid}/pi-15", params={"fragment": "true"},
                                headers={"Cookie": cookie})).text
    assert state.startswith('<dl class="kv" id="task-state">') and 'data-step="5"' in state

    await api.record(ev.TrainingFinished(**base, attempt=1))
    detail = (await api.anon.get(f"/ui/tasks/{sid}/pi-15", headers={"Cookie": cookie})).text
    assert 'data-step="3"' not in detail  # a finished task shows no progress
