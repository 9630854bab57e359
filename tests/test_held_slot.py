"""A GPU slot still held on its host is not placed on: the scheduler, the on-prem provider and an
agent (process runtime), for real, on one nats-server.

Chaos scenarios 2 and 7 burned attempts on refusals such as "agent gpu-3 refused the launch:
slot 0 on gpu-3 is held by touchstone-s-…-pi-240-1". The scheduler frees a slot when the attempt
there ends in its view (failed as stuck, cancelled), while the agent holds it until the
container is gone (a trainer that takes its kill grace to stop, a console still being flushed).
The agent counted one slot free, the other one; placement took the lowest index its own view
thought free, the held one, and the refusal failed the new attempt. Now the heartbeat names the
slots held (``slots_busy``) and placement avoids them; a launch that still meets a held slot
(a heartbeat on its way) is handed back to the queue (``LaunchDeferred``), burning nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from touchstone.agent.testing import (  # noqa: F401  (fixtures)
    GRANT_KEY,
    agent_settings,
    eventually,
    make_feature_set,
    objects,
    stand_in_trainer,
    start_agent,
)
from touchstone.onprem_provider.config import ProviderSettings
from touchstone.onprem_provider.service import OnpremProvider
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.service import Scheduler
from touchstone.shared import events as ev
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher, last_seq, task_events
from touchstone.shared.system import Server, SystemSettings, write_system

KILL_GRACE_S = 20.0


@pytest.fixture
async def services(nc, js, subjects, objects) -> AsyncIterator[Callable[[], Any]]:  # noqa: F811
    """``await services()`` starts a scheduler (active, no lease) and an on-prem provider."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start() -> Scheduler:
        await write_system(await system_bucket(js, subjects), SystemSettings(servers=[Server(name="h1", num_slots=2)]))
        provider = OnpremProvider(ProviderSettings(
            namespace=subjects.ns, agent_command_timeout_s=5.0, sweep_interval_s=0.2, max_deliver=3,
            objects_dir=objects.root, objects_url=objects.url, upload_grant_key=GRANT_KEY), nc, js, subjects)
        provider.loop.base_delay_s = 0.1
        scheduler = Scheduler(SchedulerSettings(namespace=subjects.ns, leader_election=False, sweep_interval_s=0.5,
                                                retry_base_delay_s=0.0), nc, js, subjects)
        for service in (provider, scheduler):
            stop = asyncio.Event()
            stops.append((stop, asyncio.create_task(service.run(stop))))
        for _ in range(500):
            if scheduler.active:
                break
            await asyncio.sleep(0.02)
        return scheduler

    yield start
    for stop, task in reversed(stops):
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def training(submission_id: str, task_id: str, feature_set: str) -> ev.TaskQueued:
    return ev.TaskQueued(aggregate_id=f"{submission_id}-{task_id}", correlation_id=submission_id,
                         submission_id=submission_id, task_id=task_id, kind="training",
                         spec=ev.TaskSpec(git_url=feature_set), platform="onprem", prediction_interval=15)


async def test_an_attempt_ended_in_the_schedulers_view_but_still_stopping_on_its_slot_burns_no_other(
    services, start_agent, agent_settings, make_feature_set, eventually, js, subjects, tmp_path  # noqa: F811
) -> None:
    scheduler = await services()
    agent = await start_agent(agent_settings(num_slots=2, kill_grace_s=KILL_GRACE_S, heartbeat_interval_s=0.2))
    publisher = EventPublisher(js, subjects)

    async def history(submission_id: str, task_id: str) -> list[ev.TaskEvent]:
        return task_events(await publisher.load_task(submission_id, task_id))

    async def has(submission_id: str, task_id: str, *types: str) -> list[ev.TaskEvent] | None:
        found = await history(submission_id, task_id)
        return found if any(e.event_type in types for e in found) else None

    # a training whose trainer takes its whole kill grace to stop holds slot 0
    deaf = tmp_path / "deaf"  # written once the trainer ignores SIGTERM
    ignore_sigterm = f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); open({str(deaf)!r}, 'w')"
    stubborn = make_feature_set("stubborn", sleep=120, hostile_validate=ignore_sigterm)
    await publisher.append(training("s-a", "pi-60", stubborn), expected_last_seq=0)
    started = await eventually(lambda: has("s-a", "pi-60", "TrainingStarted"), timeout=30)
    await eventually(deaf.exists, timeout=30)
    assert [e.placement for e in started if isinstance(e, ev.TaskAssigned)] == ["h1/0"]
    holder = "touchstone-s-a-pi-60-1"

    # it is cancelled: the scheduler's view frees its slot at once and asks for the container to go
    await publisher.append(ev.TaskCancelled(aggregate_id="s-a-pi-60", correlation_id="s-a", submission_id="s-a",
                                            task_id="pi-60", reason="submission cancelled"),
                           expected_last_seq=last_seq(await publisher.load_task("s-a", "pi-60")))
    await eventually(lambda: "s-a-pi-60" not in scheduler.view.live and not scheduler.live_placements())
    assert holder in agent.agent.attempts.live  # the agent still holds slot 0 (SIGTERM ignored)

    # another training queued meanwhile
    quick = make_feature_set("quick")
    await publisher.append(training("s-b", "pi-15", quick), expected_last_seq=0)
    ended = await eventually(lambda: has("s-b", "pi-15", "ContainerTerminated", "TaskFailed", "TaskErrored"),
                             timeout=30)
    assert holder in agent.agent.attempts.live, "the holder stopped before the check: the race was not met"
    failures = [e.reason for e in ended if isinstance(e, ev.TaskFailed)]
    assert failures == [], failures  # before: "agent h1 refused the launch: slot 0 on h1 is held by ..."
    assert [(e.attempt, e.placement) for e in ended if isinstance(e, ev.TaskAssigned)] == [(1, "h1/1")]
    finished = await eventually(lambda: has("s-b", "pi-15", "TrainingFinished"), timeout=30)
    assert [e.attempt for e in finished if isinstance(e, ev.TrainingFinished)] == [1]

    # and once the holder is gone, slot 0 is placed on again
    await eventually(lambda: has("s-a", "pi-60", "ContainerTerminated"), timeout=KILL_GRACE_S + 20)
    await publisher.append(training("s-c", "pi-15", quick), expected_last_seq=0)
    done = await eventually(lambda: has("s-c", "pi-15", "TrainingFinished"), timeout=30)
    assert [e.placement for e in done if isinstance(e, ev.TaskAssigned)] == ["h1/0"]
