"""How an attempt is bounded and judged, once for every platform (DESIGN §5): the run deadline
and the one judge that turns how an attempt ended into a typed outcome with a failure class.
The agent (through the on-prem provider) and the RunPod provider both use these; nothing here
does I/O or reads a clock.

Failure classes (``events.FailureClass``):

| class            | meaning                                                    | retried |
|------------------|------------------------------------------------------------|---------|
| ``infrastructure`` | the platform failed (pod, SSH, agent, provision, prepare) | yes     |
| ``trainer``      | the trainer ran and exited non-zero (or wrote no report, or an invalid one) | yes |
| ``timeout``      | the trainer ran past its run deadline and was stopped      | no (*)  |
| ``rejected``     | the platform refused the attempt's own inputs              | no      |
| ``permanent``    | retrying cannot help (unknown ref, no wheel, refused source) | no    |

(*) the same deadline would stop it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from touchstone.shared.events import FailureClass
from touchstone.shared.reports import ValidationReport

DEFAULT_VALIDATION_TIMEOUT_S = 15 * 60.0
DEFAULT_TRAINING_TIMEOUT_S = 6 * 3600.0


@dataclass(frozen=True)
class Deadline:
    """How long an attempt's trainer may run, and which rule set it."""

    seconds: float
    which: Literal["validation", "training"]
    source: str
    """Where the number comes from (``the validation_timeout_s setting``, ``the schedule``...)."""

    def error(self) -> str:
        """The error of an attempt stopped at this deadline (says which deadline)."""
        return (f"the {self.which} run deadline of {self.seconds:g}s ({self.source}) passed: "
                "the trainer was stopped")


def run_deadline(kind: str, schedule_timeout_s: float | None, validation_timeout_s: float,
                 training_timeout_s: float) -> Deadline:
    """The run deadline of an attempt of ``kind``: a validation's is the platform's setting; a
    training's is the schedule's ``run_timeout_s``, else the platform's default."""
    if kind == "validation":
        return Deadline(validation_timeout_s, "validation", "the validation_timeout_s setting")
    if schedule_timeout_s:
        return Deadline(float(schedule_timeout_s), "training", "the schedule's run_timeout_s")
    return Deadline(training_timeout_s, "training", "the training_timeout_s default")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, judged: success, or a failure with its reason and class."""

    succeeded: bool
    reason: str = ""
    failure_class: FailureClass = "infrastructure"


def judge_exit(exit_status: int | None, kind: str, report: ValidationReport | None,
               report_problem: str | None = None) -> Outcome:
    """The outcome of an attempt whose trainer ran to an end (``report`` and ``report_problem``
    come from ``touchstone.shared.reports.read_report``):

    | how it ended                                          | outcome                          |
    |-------------------------------------------------------|----------------------------------|
    | a validation whose report.json is not a valid report  | failed, trainer (the problem)    |
    | exit 0 (a validation also needs its report)           | succeeded                        |
    | validation, exit 1, report written with passed=false  | succeeded (a verdict, not a fault) |
    | any other exit status                                 | failed, trainer                  |
    | no exit status (the process or pod went away)         | failed, infrastructure           |
    """
    if exit_status is None:
        return Outcome(False, "the trainer ended without an exit status", "infrastructure")
    if kind == "validation" and report_problem:
        return Outcome(False, report_problem, "trainer")
    if exit_status == 0:
        if kind == "validation" and report is None:
            return Outcome(False, "the validation exited 0 but wrote no report", "trainer")
        return Outcome(True)
    if kind == "validation" and exit_status == 1 and report is not None and not report.passed:
        return Outcome(True)
    return Outcome(False, f"the trainer exited with status {exit_status}", "trainer")


def timed_out(deadline: Deadline) -> Outcome:
    return Outcome(False, deadline.error(), "timeout")
