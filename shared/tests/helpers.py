"""Small builders shared by the shared/ tests."""

from __future__ import annotations

from touchstone.shared import events as ev

SPEC = ev.TaskSpec(git_url="https://example.com/fs.git")


def created(sid: str, owner: str = "alice") -> ev.SubmissionCreated:
    return ev.SubmissionCreated(
        aggregate_id=sid, correlation_id=sid, owner=owner, name=f"fs {sid}", git_url="https://x/y.git"
    )


def queued(sid: str, tid: str, **kw: object) -> ev.TaskQueued:
    return ev.TaskQueued(
        aggregate_id=f"{sid}-{tid}", correlation_id=sid, submission_id=sid, task_id=tid, spec=SPEC, **kw
    )


def task_event(cls: type[ev.TaskEvent], sid: str, tid: str, **kw: object) -> ev.TaskEvent:
    return cls(aggregate_id=f"{sid}-{tid}", correlation_id=sid, submission_id=sid, task_id=tid, **kw)
