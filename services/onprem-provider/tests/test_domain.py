"""The provider's decisions, without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from touchstone.onprem_provider.domain import HELD_SLOT_RETRY_S, decide_deferral, decide_failure, decide_report, judge
from touchstone.shared import events as ev
from touchstone.shared.agents import AttemptOutcome, AttemptReport
from touchstone.shared.commands import LaunchTask, container_name
from touchstone.shared.testing import sample_report

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AGG = "s1-pi-1"
BASE = dict(aggregate_id=AGG, correlation_id="s1", submission_id="s1", task_id="pi-1")


def history(*extra: ev.TaskEvent, placement: str = "h1/0") -> list[ev.TaskEvent]:
    return [
        ev.TaskQueued(**BASE, spec=ev.TaskSpec(git_url="https://example.com/r.git"), platform="onprem"),
        ev.TaskAssigned(**BASE, attempt=1, platform="onprem", placement=placement),
        *extra,
    ]


def report(stage: str = "ended", *, host: str = "h1", attempt: int = 1, removed: bool = False,
           kind: str = "training", **outcome: object) -> AttemptReport:
    return AttemptReport(
        host=host, container=container_name("s1", "pi-1", attempt), submission_id="s1", task_id="pi-1",
        attempt=attempt, kind=kind, stage=stage, removed=removed,
        outcome=AttemptOutcome.model_validate(outcome) if outcome else None,
    )


def types(events) -> list[str]:
    return [e.event_type for e in events]


def test_judge_tells_success_from_trainer_and_infrastructure_failures():
    ok = AttemptOutcome(result="exited", exit_code=0, report=sample_report())
    assert judge("validation", ok).finished
    rejected = AttemptOutcome(result="exited", exit_code=1, report=sample_report(False))
    assert judge("validation", rejected).finished
    assert not judge("training", rejected).finished
    crash = judge("validation", AttemptOutcome(result="exited", exit_code=1))
    assert (crash.finished, crash.failure_class) == (False, "trainer")
    assert judge("validation", AttemptOutcome(result="exited", exit_code=0)).failure_class == "trainer"
    for result in ("failed", "lost", "terminated"):
        verdict = judge("training", AttemptOutcome(result=result, error="x"))
        assert (verdict.finished, verdict.failure_class) == (False, "infrastructure")


def test_a_finished_report_fills_in_every_missing_event_once():
    done = report(removed=True, result="exited", exit_code=0, metrics={"a": 1},
                  log_key="attempts/s1/pi-1/attempt-1/console.log")
    decision = decide_report(history(), done, "h1", NOW)
    assert types(decision.events) == [
        "ContainerLaunched", "ContainerReady", "TrainingStarted", "TrainingFinished", "ContainerTerminated"
    ]
    finished = decision.events[3]
    assert isinstance(finished, ev.TrainingFinished) and finished.metrics == {"a": 1}
    assert finished.log_key == "attempts/s1/pi-1/attempt-1/console.log" and finished.log_uri is None
    assert finished.report is None
    assert decide_report(history(*decision.events), done, "h1", NOW).events == ()
    # the same report decided twice yields the same event ids (the stream drops the copy)
    assert [e.event_id for e in decide_report(history(), done, "h1", NOW).events] == [
        e.event_id for e in decision.events
    ]


def test_progress_follows_the_stage():
    started = decide_report(history(), report("started"), "h1", NOW)
    assert types(started.events) == ["ContainerLaunched", "ContainerReady", "TrainingStarted"]
    assert started.watching and not started.stop_container
    assert types(decide_report(history(), report("ready"), "h1", NOW).events) == [
        "ContainerLaunched", "ContainerReady"
    ]


def test_failures_carry_their_class_and_log():
    trainer = decide_report(history(), report(result="exited", exit_code=2, log_tail=("a", "boom")), "h1", NOW)
    failed = trainer.events[-1]
    assert isinstance(failed, ev.TaskFailed) and failed.failure_class == "trainer"
    assert failed.log_snippet == "a\nboom" and "status 2" in failed.reason
    prep = decide_report(history(), report(result="failed", failed_phase="prepare", error="git"), "h1", NOW)
    assert types(prep.events) == ["ContainerLaunched", "ContainerReady", "TaskFailed"]
    assert prep.events[-1].failure_class == "infrastructure"
    prov = decide_report(history(), report(result="failed", failed_phase="provision", error="disk"), "h1", NOW)
    assert types(prov.events) == ["TaskFailed"]


def test_a_report_from_another_host_is_rejected():
    forged = decide_report(history(), report(host="h2", result="exited", exit_code=0), "h2", NOW)
    assert forged.rejected and "assigned to h1" in forged.rejected and forged.events == ()
    spoofed = decide_report(history(), report(host="h1", result="exited", exit_code=0), "h2", NOW)
    assert spoofed.rejected and "came from h2" in spoofed.rejected
    runpod = [history()[0], ev.TaskAssigned(**BASE, attempt=1, platform="runpod", placement="A100")]
    assert decide_report(runpod, report("started"), "h1", NOW).rejected


def test_an_attempt_that_is_no_longer_live_is_stopped_and_only_its_end_recorded():
    cancelled = history(ev.TaskCancelled(**BASE))
    stray = decide_report(cancelled, report("started"), "h1", NOW)
    assert stray.events == () and stray.stop_container and not stray.watching
    gone = decide_report(cancelled, report(removed=True, result="terminated"), "h1", NOW)
    assert types(gone.events) == ["ContainerTerminated"] and not gone.stop_container


def test_infrastructure_failure_only_for_a_live_attempt():
    failed = decide_failure(history(), "s1", "pi-1", 1, "agent h1 silent for 31s", "silent", NOW)
    assert failed is not None and failed.failure_class == "infrastructure" and failed.attempt == 1
    assert decide_failure(history(ev.TaskCancelled(**BASE)), "s1", "pi-1", 1, "x", "silent", NOW) is None
    assert decide_failure(history(), "s1", "pi-1", 2, "x", "silent", NOW) is None


def test_a_permanent_prepare_failure_ends_the_task_without_a_retry():
    """An unknown trainer_ref (or a requirement without a wheel) fails once: no retry, ERROR
    with the agent's message in the reason."""
    from touchstone.shared.lifecycle import TaskStatus, fold_task, task_transition

    message = "trainer_ref 'nope' is not a branch, tag or commit of the trainer repository /r"
    failed = report(removed=True, result="failed", failed_phase="prepare", error=message, permanent=True)
    assert judge("training", failed.outcome).failure_class == "permanent"
    decision = decide_report(history(), failed, "h1", NOW)
    assert types(decision.events) == ["ContainerLaunched", "ContainerReady", "TaskFailed", "ContainerTerminated"]
    failure = decision.events[2]
    assert isinstance(failure, ev.TaskFailed) and failure.failure_class == "permanent"
    assert message in failure.reason
    state = fold_task([*history(), *decision.events[:2]], NOW)
    (after,) = task_transition(state, failure, NOW).follow_ups
    assert isinstance(after, ev.TaskErrored) and message in after.reason
    assert task_transition(task_transition(state, failure, NOW).state, after, NOW).state.status == TaskStatus.ERROR


def launch_to(placement: str, attempt: int = 1) -> LaunchTask:
    return LaunchTask(submission_id="s1", task_id="pi-1", attempt=attempt, kind="training",
                      spec=ev.TaskSpec(git_url="https://example.com/r.git"), placement=placement)


def test_a_launch_refused_for_a_held_slot_is_handed_back_only_while_its_assignment_stands():
    held = "agent h1 refused the launch: slot 0 on h1 is held by touchstone-s2-pi-1-1"
    assigned = history()
    deferred = decide_deferral(assigned, launch_to("h1/0"), held, NOW)
    assert isinstance(deferred, ev.LaunchDeferred) and (deferred.attempt, deferred.reason) == (1, held)
    assert deferred.not_before == NOW + timedelta(seconds=HELD_SLOT_RETRY_S)
    assert decide_deferral(assigned, launch_to("h1/0"), held, NOW).event_id == deferred.event_id  # a repeat
    # the attempt moved on: launched, failed, cancelled; or a stale launch of another placement
    launched = ev.ContainerLaunched(**BASE, attempt=1, container_name=container_name("s1", "pi-1", 1))
    assert decide_deferral(history(launched), launch_to("h1/0"), held, NOW) is None
    failed = ev.TaskFailed(**BASE, attempt=1, reason="stuck")
    assert decide_deferral(history(failed), launch_to("h1/0"), held, NOW) is None
    assert decide_deferral(history(ev.TaskCancelled(**BASE)), launch_to("h1/0"), held, NOW) is None
    assert decide_deferral(history(), launch_to("h1/1"), held, NOW) is None
    assert decide_deferral(history(deferred), launch_to("h1/0"), held, NOW) is None
    # placed again after the hand-back, elsewhere: a new assignment, its own hand-back id
    again = ev.TaskAssigned(**BASE, attempt=1, platform="onprem", placement="h2/0")
    assert decide_deferral(history(deferred, again), launch_to("h1/0"), held, NOW) is None
    second = decide_deferral(history(deferred, again), launch_to("h2/0"), held, NOW)
    assert second is not None and second.event_id != deferred.event_id
