"""The view and the lifecycle decisions without I/O: what each state requires next, and that a
decision applied once is not taken again."""

from __future__ import annotations

from datetime import timedelta

from schedkit import T0, created, queued, sub_event, task_event
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.domain import Assignment
from touchstone.scheduler.policy import Append, Send, assignment_plan, submission_plans, task_plans
from touchstone.scheduler.view import SchedulerView
from touchstone.shared import events as ev
from touchstone.shared.commands import TerminateTask
from touchstone.shared.lifecycle import SubmissionStatus, TaskStatus
from touchstone.shared.testing import sample_report

CFG = SchedulerSettings(retry_base_delay_s=5, retry_factor=4)
SID = "s-1"


class Stream:
    """A view fed like the stream feeds it: one sequence number per event."""

    def __init__(self) -> None:
        self.view = SchedulerView(CFG.retry_policy())
        self.seq = 0
        self.now = T0

    def add(self, *events: ev.Event) -> None:
        for event in events:
            self.seq += 1
            self.view.apply(self.seq, event, self.now)

    def sub_plans(self, sid: str = SID):
        return submission_plans(self.view.submissions[sid], list(self.view.tasks_of(sid)), CFG, self.now)

    def apply_plans(self, plans) -> list[ev.Event]:
        out = []
        for plan in plans:
            for step in plan:
                if isinstance(step, Append):
                    self.add(step.event)
                    out.append(step.event)
        return out


def appended(plans) -> list[ev.Event]:
    return [s.event for p in plans for s in p if isinstance(s, Append)]


def test_a_new_submission_gets_one_validation_task_and_only_one() -> None:
    s = Stream()
    s.add(created(SID))
    (event,) = appended(s.sub_plans())
    assert isinstance(event, ev.TaskQueued)
    assert (event.task_id, event.kind, event.platform) == ("validation", "validation", "any")
    assert event.prediction_interval is None
    assert (event.spec.git_url, event.spec.git_ref) == ("https://git.example/fs.git", "v1")
    assert event.spec.feature_set_path == "fs"
    assert s.sub_plans()[0][0].expected_seq == 0
    s.apply_plans(s.sub_plans())
    assert s.sub_plans() == []


def test_a_redelivered_event_is_skipped_and_changes_nothing() -> None:
    s = Stream()
    s.add(created(SID), queued(SID, "validation"))
    before = (s.view.tasks[f"{SID}-validation"].state, s.view.tasks[f"{SID}-validation"].seq)
    assert s.view.apply(1, created(SID), T0) == "skipped"
    assert s.view.apply(2, s.view.tasks[f"{SID}-validation"].queued, T0) == "skipped"
    assert (s.view.tasks[f"{SID}-validation"].state, s.view.tasks[f"{SID}-validation"].seq) == before


def test_own_appends_are_confirmed_by_the_stream_or_force_a_reload() -> None:
    view = SchedulerView()
    q = queued(SID, "pi-1")
    assert view.apply(1, q, T0) == "applied"
    assigned = task_event(ev.TaskAssigned, SID, "pi-1", attempt=1, platform="onprem", placement="h/0")
    assert view.apply(3, assigned, T0, local=True) == "applied"
    assert view.apply(3, assigned, T0) == "skipped"  # the echo
    # an append whose sequence jumped over an event this view never saw: reload
    failed = task_event(ev.TaskFailed, SID, "pi-1", attempt=1, reason="x")
    assert view.apply(7, failed, T0, local=True) == "applied"
    other = task_event(ev.ContainerLaunched, SID, "pi-1", attempt=1, container_name="c")
    assert view.apply(5, other, T0) == "reload"
    # a different event stored under our sequence (dedupe kept someone else's): reload
    view2 = SchedulerView()
    view2.apply(1, q, T0)
    view2.apply(2, assigned, T0, local=True)
    assert view2.apply(2, task_event(ev.TaskCancelled, SID, "pi-1"), T0) == "reload"


def test_an_own_append_fed_back_is_confirmed_by_id_and_anything_else_is_left_to_apply() -> None:
    view = SchedulerView()
    view.apply(1, queued(SID, "pi-1"), T0)
    assigned = task_event(ev.TaskAssigned, SID, "pi-1", attempt=1, platform="onprem", placement="h/0")
    view.apply(2, assigned, T0, local=True)
    key = f"{SID}-pi-1"
    assert not view.confirm_own("task", key, 2, "someone-elses-event-id")  # apply() must judge it
    assert not view.confirm_own("task", key, 3, assigned.event_id)  # not the sequence we got
    assert not view.confirm_own("submission", key, 2, assigned.event_id)
    assert view.confirm_own("task", key, 2, assigned.event_id)
    assert not view.confirm_own("task", key, 2, assigned.event_id)  # confirmed once
    assert view.apply(2, assigned, T0) == "skipped"  # a redelivery changes nothing
    assert view.tasks[key].status == TaskStatus.ASSIGNED and view.tasks[key].seq == 2


def test_failures_retry_with_growing_back_off_then_error_and_fail_the_validation() -> None:
    s = Stream()
    s.add(created(SID))
    s.apply_plans(s.sub_plans())
    key = f"{SID}-validation"
    for attempt in (1, 2, 3):
        s.add(task_event(ev.TaskAssigned, SID, "validation", attempt=attempt, platform="onprem", placement="h/cpu0"))
        s.add(task_event(ev.TaskFailed, SID, "validation", attempt=attempt, reason=f"boom {attempt}",
                         failure_class="trainer"))
        task = s.view.tasks[key]
        (plan,) = task_plans(task, s.view.submissions[SID], s.now, 120)
        (follow_up,) = appended([plan])
        if attempt < 3:
            assert isinstance(follow_up, ev.TaskRetried) and follow_up.attempt == attempt + 1
            assert follow_up.not_before == s.now + timedelta(seconds=5 * 4 ** (attempt - 1))
        else:
            assert isinstance(follow_up, ev.TaskErrored) and "boom 3" in follow_up.reason
        s.apply_plans([plan])
        assert task_plans(s.view.tasks[key], s.view.submissions[SID], s.now, 120) == []
    assert s.view.tasks[key].status == TaskStatus.ERROR
    (failed,) = appended(s.sub_plans())
    assert isinstance(failed, ev.SubmissionFailed) and "boom 3" in failed.reason


def validation_ran(s: Stream, platform: str, placement: str, **finished: object) -> None:
    """A submission created, its validation queued, assigned and run to its finish."""
    s.add(created(SID))
    s.apply_plans(s.sub_plans())
    s.add(task_event(ev.TaskAssigned, SID, "validation", attempt=1, platform=platform, placement=placement))
    for cls in (ev.ContainerLaunched, ev.ContainerReady, ev.TrainingStarted):
        extra = {"container_name": "c"} if cls is ev.ContainerLaunched else {}
        s.add(task_event(cls, SID, "validation", attempt=1, **extra))
    s.add(task_event(ev.TrainingFinished, SID, "validation", attempt=1, **finished))


def test_a_passing_validation_report_accepts_the_submission() -> None:
    s = Stream()
    report = sample_report()
    validation_ran(s, "onprem", "h/cpu0", report=report, commit="abc123")
    (validated,) = appended(s.sub_plans())
    assert isinstance(validated, ev.SubmissionValidated)
    assert (validated.passed, validated.report.model_dump(mode="json"), validated.commit) == (True, report, "abc123")
    s.apply_plans(s.sub_plans())
    assert s.view.submissions[SID].status == SubmissionStatus.ACCEPTED
    assert s.sub_plans() == []


def test_a_failing_report_rejects_without_retrying() -> None:
    s = Stream()
    validation_ran(s, "runpod", "any", exit_code=1, report=sample_report(False))
    (validated,) = appended(s.sub_plans())
    assert validated.passed is False


def scheduled_submission(s: Stream, intervals=(15, 60), **schedule) -> None:
    s.add(created(SID), sub_event(ev.SubmissionValidated, SID, passed=True, commit="c0ffee"))
    s.add(sub_event(ev.SubmissionScheduled, SID, schedule=ev.Schedule(
        prediction_intervals=intervals, config_file="configs/x.toml", trainer_ref="t1", **schedule)))


def test_scheduling_queues_one_task_per_interval_with_the_schedules_spec() -> None:
    s = Stream()
    scheduled_submission(s, intervals=(60, 15, 60), platform="runpod", gpu_type="A40", priority=3,
                         run_timeout_s=1800)
    events = appended(s.sub_plans())
    assert [e.task_id for e in events] == ["pi-15", "pi-60"]
    first = events[0]
    assert first.spec.run_timeout_s == 1800  # the training run deadline travels with the task
    assert (first.prediction_interval, first.platform, first.gpu_type, first.priority) == (15, "runpod", "A40", 3)
    assert (first.spec.git_ref, first.spec.config_file, first.spec.trainer_ref) == ("c0ffee", "configs/x.toml", "t1")
    s.apply_plans(s.sub_plans())
    assert s.sub_plans() == []


def test_the_submission_rolls_up_from_its_training_tasks() -> None:
    s = Stream()
    scheduled_submission(s)
    s.apply_plans(s.sub_plans())
    s.add(task_event(ev.TaskAssigned, SID, "pi-15", attempt=1, platform="onprem", placement="h/0"))
    assert [type(e) for e in s.apply_plans(s.sub_plans())] == [ev.SubmissionStarted]
    for tid in ("pi-15", "pi-60"):
        if tid == "pi-60":
            s.add(task_event(ev.TaskAssigned, SID, tid, attempt=1, platform="onprem", placement="h/1"))
        for cls in (ev.ContainerLaunched, ev.ContainerReady, ev.TrainingStarted, ev.TrainingFinished):
            extra = {"container_name": "c"} if cls is ev.ContainerLaunched else {}
            s.add(task_event(cls, SID, tid, attempt=1, **extra))
        assert s.sub_plans() == [] or tid == "pi-60"
    assert [type(e) for e in s.apply_plans(s.sub_plans())] == [ev.SubmissionCompleted]
    assert s.view.submissions[SID].status == SubmissionStatus.COMPLETED


def test_cancel_cancels_unfinished_tasks_stops_live_ones_then_the_submission() -> None:
    s = Stream()
    scheduled_submission(s, intervals=(15, 60, 240))
    s.apply_plans(s.sub_plans())
    s.add(task_event(ev.TaskAssigned, SID, "pi-15", attempt=1, platform="runpod", placement="any"))
    s.add(task_event(ev.ContainerLaunched, SID, "pi-15", attempt=1, container_name="c"))
    assert [type(e) for e in s.apply_plans(s.sub_plans())] == [ev.SubmissionStarted]
    s.add(sub_event(ev.SubmissionCancelRequested, SID, requested_by="bob"))
    cancels = appended(s.sub_plans())
    assert sorted(e.task_id for e in cancels) == ["pi-15", "pi-240", "pi-60"]
    assert all(isinstance(e, ev.TaskCancelled) and "bob" in e.reason for e in cancels)
    s.apply_plans(s.sub_plans())
    live = s.view.tasks[f"{SID}-pi-15"]
    ((stop,),) = task_plans(live, s.view.submissions[SID], s.now, 120)
    assert isinstance(stop, Send) and isinstance(stop.command, TerminateTask)
    assert (stop.service, stop.command.attempt) == ("runpod-provider", 1)
    assert task_plans(s.view.tasks[f"{SID}-pi-60"], s.view.submissions[SID], s.now, 120) == []
    (done,) = s.apply_plans(s.sub_plans())
    assert isinstance(done, ev.SubmissionCancelled)
    assert s.view.queued == set()
    # the provider launches late anyway: the container is a stray and is stopped
    s.add(task_event(ev.ContainerReady, SID, "pi-15", attempt=1))
    s.add(task_event(ev.ContainerLaunched, SID, "pi-60", attempt=1, container_name="c"))
    assert list(s.view.tasks[f"{SID}-pi-15"].owed_terminates) == [1]
    assert s.view.tasks[f"{SID}-pi-60"].owed_terminates == {}  # never assigned: nothing of ours runs
    assert s.view.tasks[f"{SID}-pi-60"].status == TaskStatus.CANCELLED


def test_a_late_report_from_an_old_attempt_is_stopped_not_applied() -> None:
    s = Stream()
    s.add(queued(SID, "pi-1"))
    s.add(task_event(ev.TaskAssigned, SID, "pi-1", attempt=1, platform="onprem", placement="h/0"))
    s.add(task_event(ev.TaskFailed, SID, "pi-1", attempt=1, reason="lost"))
    s.apply_plans(task_plans(s.view.tasks[f"{SID}-pi-1"], None, s.now, 120))
    s.add(task_event(ev.TaskAssigned, SID, "pi-1", attempt=2, platform="onprem", placement="h/1"))
    s.add(task_event(ev.TrainingStarted, SID, "pi-1", attempt=1, occurred_at=T0))
    task = s.view.tasks[f"{SID}-pi-1"]
    assert (task.status, task.attempt) == (TaskStatus.ASSIGNED, 2)
    ((stop,),) = task_plans(task, None, s.now, 120)
    assert stop.command.attempt == 1 and stop.command.type == "TerminateTask"
    # ... but only while the cause is recent: an old debt is left to the providers' reapers
    assert task_plans(task, None, s.now + timedelta(seconds=121), 120) == []


def test_a_container_report_after_a_failure_keeps_the_owed_retry() -> None:
    """The provider's ContainerTerminated may land between TaskFailed and the scheduler's
    TaskRetried; the retry must still be owed afterwards."""
    from datetime import UTC, datetime

    from touchstone.scheduler.view import SchedulerView
    from touchstone.shared import events as ev
    from touchstone.shared.testing import queued, task_event

    now = datetime(2026, 1, 1, tzinfo=UTC)
    view = SchedulerView()
    history = [
        queued("s-1", "pi-15"),
        task_event(ev.TaskAssigned, "s-1", "pi-15", attempt=1, platform="onprem", placement="h/0"),
        task_event(ev.ContainerLaunched, "s-1", "pi-15", attempt=1, container_name="touchstone-s-1-pi-15-1"),
        task_event(ev.TaskFailed, "s-1", "pi-15", attempt=1, reason="trainer exited 2", failure_class="trainer"),
        task_event(ev.ContainerTerminated, "s-1", "pi-15", attempt=1),
    ]
    for seq, event in enumerate(history, start=1):
        view.apply(seq, event, now)
    task = view.tasks["s-1-pi-15"]
    assert [type(e).__name__ for e in task.follow_ups] == ["TaskRetried"]


def test_a_deferred_launch_is_queued_again_in_its_place_and_assigned_anew_on_the_same_attempt() -> None:
    s = Stream()
    s.add(created(SID))
    s.apply_plans(s.sub_plans())
    key = f"{SID}-validation"
    task = s.view.tasks[key]
    place = task.queue_seq
    gpu = Assignment(key, 1, "runpod", "NVIDIA A40", None)
    first = appended([assignment_plan(task, gpu, s.now)])[0]
    s.add(first)
    s.add(task_event(ev.LaunchDeferred, SID, "validation", attempt=1, reason="no stock",
                     not_before=s.now + timedelta(seconds=10)))

    task = s.view.tasks[key]
    assert task.status == TaskStatus.QUEUED and task.attempt == 1 and task.assigned is None
    assert task.queue_seq == place and key in s.view.queued  # its place in the queue is kept
    assert task.state is not None and task.state.not_before == s.now + timedelta(seconds=10)
    assert task_plans(task, s.view.submissions[SID], s.now, 120) == []  # no retry owed: nothing failed
    again = appended([assignment_plan(task, gpu, s.now)])[0]
    assert isinstance(again, ev.TaskAssigned) and again.attempt == 1
    assert again.event_id != first.event_id  # a new assignment, not a duplicate the stream drops
