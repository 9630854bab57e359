"""The service's reactions to events, one table, bound to their dependencies at bootstrap."""

from __future__ import annotations

from collections.abc import Mapping

from touchstone.shared.consumer import ConsumerSpec, Handler
from touchstone.shared.subjects import Subjects
from touchstone.submission.commands import SubmissionCommands

# A submission stops being live with one of these; a pending DELETE then retracts it.
SETTLING_EVENTS = (
    "SubmissionCancelled",
    "SubmissionCompleted",
    "SubmissionFailed",
    "SubmissionValidated",
)


def handlers(commands: SubmissionCommands) -> Mapping[str, Handler]:
    return {name: commands.on_submission_settled for name in SETTLING_EVENTS}


def consumer_spec(subjects: Subjects) -> ConsumerSpec:
    return ConsumerSpec(
        name="submission-retract",
        stream=subjects.events_stream,
        filter_subjects=[subjects.events_of_type("submission", name) for name in SETTLING_EVENTS],
    )
