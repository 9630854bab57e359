"""Failure classes the agent knows itself. Run deadlines on every runtime of the agent (bare
process, bubblewrap, Docker): a trainer that sleeps past its deadline is stopped, its container
removed, and the attempt fails with class ``timeout`` and an error that says which deadline
(the validation setting, or the schedule's ``run_timeout_s`` for a training). A feature set
path outside its source is ``rejected``. Real agent, real nats-server."""

from __future__ import annotations

import sys
import uuid

import pytest
from touchstone.agent.sandbox import Bubblewrap
from touchstone.agent.testing import Reports, docker_runtime_or_skip, launch, send
from touchstone.onprem_provider.domain import judge
from touchstone.shared.events import TaskSpec


@pytest.fixture(params=["process", "bubblewrap", "docker"])
def runtime_settings(request, agent_settings):
    def build(**overrides):
        if request.param == "docker":
            docker_runtime_or_skip("probe")
            return agent_settings(runtime="docker", host=f"d{uuid.uuid4().hex[:8]}", **overrides)
        if request.param == "bubblewrap":
            if why := Bubblewrap.for_python(sys.executable).probe():
                pytest.skip(why)
            return agent_settings(process_sandbox="bubblewrap", **overrides)
        return agent_settings(**overrides)

    return build


@pytest.mark.parametrize("kind", ["validation", "training"])
async def test_a_trainer_past_its_deadline_is_stopped_and_fails_as_timeout(
    nc, subjects, runtime_settings, start_agent, make_feature_set, eventually, kind
):
    settings = runtime_settings(validation_timeout_s=1.0 if kind == "validation" else 3600,
                                training_timeout_s=3600, kill_grace_s=1.0)
    reports = await Reports.listen(nc, subjects, settings.host)
    running = await start_agent(settings)
    fs = make_feature_set(sleep=120)
    command = launch(fs, kind=kind, task_id="validation" if kind == "validation" else "pi-15",
                     placement=f"{settings.host}/cpu0")
    if kind == "training":
        command = command.model_copy(update={"spec": TaskSpec(git_url=fs, run_timeout_s=1.0)})
    assert (await send(nc, subjects, command, settings.host)).ok

    ended = await eventually(lambda: reports.ended(command.container_name), timeout=60)
    outcome = ended.outcome
    assert outcome.result == "failed" and outcome.failure_class == "timeout", outcome
    assert f"{kind} run deadline of 1s" in (outcome.error or "")
    assert ("validation_timeout_s setting" if kind == "validation" else "schedule's run_timeout_s") in outcome.error
    assert any("stand-in" in line for line in outcome.log_tail)  # its console up to the stop is kept
    assert (await running.agent.attempts.runtime.status(command.container_name)).status == "gone"
    verdict = judge(kind, outcome)
    assert not verdict.finished and verdict.failure_class == "timeout"


async def test_a_feature_set_path_outside_its_source_is_rejected_not_retried(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually
):
    settings = agent_settings()
    reports = await Reports.listen(nc, subjects, settings.host)
    await start_agent(settings)
    command = launch(make_feature_set())
    command = command.model_copy(update={"spec": command.spec.model_copy(update={"feature_set_path": "../.."})})
    assert (await send(nc, subjects, command, settings.host)).ok

    outcome = (await eventually(lambda: reports.ended(command.container_name), timeout=30)).outcome
    assert outcome.result == "failed" and outcome.failure_class == "rejected" and outcome.failed_phase == "prepare"
    assert "not a folder inside the source" in outcome.error
    verdict = judge("validation", outcome)
    assert verdict.failure_class == "rejected"


async def test_a_trainer_that_prints_without_end_still_meets_its_deadline(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually
):
    settings = agent_settings(validation_timeout_s=2.0, kill_grace_s=1.0, max_log_bytes=1 << 20)
    reports = await Reports.listen(nc, subjects, settings.host)
    await start_agent(settings)
    flood = "import sys\nline = b'y' * 4000 + b'\\n'\nwhile True:\n    sys.stdout.buffer.write(line)\n"
    command = launch(make_feature_set(hostile_validate=flood))
    assert (await send(nc, subjects, command, settings.host)).ok

    outcome = (await eventually(lambda: reports.ended(command.container_name), timeout=60)).outcome
    assert outcome.failure_class == "timeout" and "validation run deadline of 2s" in outcome.error
