"""What the agent and the on-prem provider say to each other over NATS.

* Commands: the provider sends the scheduler's own ``LaunchTask`` / ``TerminateTask`` models
  (``touchstone.shared.commands``) as core-NATS requests on ``{ns}.agent.{host}.cmd``; the agent
  answers each with a ``CommandReply``. Both commands are idempotent on the agent: a launch of
  a container it already has, or a terminate of one it no longer has, is answered ``ok``.
* Reports: on ``{ns}.agent.{host}.evt`` the agent sends ``AgentHeartbeat`` (from
  ``touchstone.shared.agents``) and one ``AttemptReport`` per attempt it knows, each time the
  attempt changes and again on every heartbeat tick. Reports are *state*, not facts: the
  provider turns the difference between a report and the task's recorded events into events,
  so a lost or repeated report costs nothing.

The agent reports raw facts (how far the attempt got, how it ended); the provider decides what
they mean for the task (success, trainer failure, infrastructure failure).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from touchstone.shared.events import FailureClass, TaskKind
from touchstone.shared.reports import MAX_PROBLEM_CHARS, InvalidReport, ValidationReport, parse_report

Stage = Literal["launched", "ready", "started", "ended"]
"""How far an attempt got: its container (work directory) exists; the container is ready for
prepare; the trainer process started; the trainer exited or the attempt ended otherwise."""

STAGES: tuple[Stage, ...] = ("launched", "ready", "started", "ended")

Result = Literal["exited", "failed", "terminated", "lost"]
"""``exited``: the trainer ran and exited with ``exit_code``; ``failed``: the agent could not
provision, prepare, start or collect it (``error`` says why); ``terminated``: stopped on request;
``lost``: the agent no longer knows what became of it (for example it was restarted and the
process had vanished without an exit status)."""

LOG_TAIL_LINES = 50


def stage_index(stage: Stage) -> int:
    return STAGES.index(stage)


class AttemptOutcome(BaseModel):
    """How an attempt ended, as the agent observed it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    result: Result
    exit_code: int | None = None
    error: str | None = Field(None, description="what went wrong, for result failed or lost")
    failed_phase: str | None = Field(None, description="provision, prepare, run or collect")
    permanent: bool = Field(False, description="for result failed: retrying cannot help (an unknown trainer_ref, "
                                               "a requirement without a wheel)")
    failure_class: FailureClass | None = Field(None, description="for result failed: the class the agent already "
                                               "knows (timeout: stopped at its run deadline)")
    report: ValidationReport | None = Field(None, description="the trainer's validation report, when written")
    report_problem: str | None = Field(None, max_length=2 * MAX_PROBLEM_CHARS,
                                       description="why report.json was not a valid report (the attempt fails)")
    metrics: dict[str, Any] = Field(default_factory=dict, description="metrics.json of a training run")
    artifacts: dict[str, str] = Field(default_factory=dict, description="artifact name -> object key")
    log_uri: str | None = Field(None, description="no longer written (log_key)")
    log_key: str | None = Field(None, description="the object key of the full console log")
    log_tail: tuple[str, ...] = Field((), description=f"the last {LOG_TAIL_LINES} console lines")
    commit: str | None = Field(None, description="the feature set's commit, when it came from git")

    @model_validator(mode="before")
    @classmethod
    def _untyped_report(cls, data: Any) -> Any:
        """An agent of before the typed report sends whatever dict the trainer wrote: one that
        is not a valid report becomes the attempt's report problem instead of making the whole
        message unreadable (which would leave the attempt to the silence timeout)."""
        if isinstance(data, dict) and isinstance(data.get("report"), dict):
            try:
                parse_report(data["report"])
            except InvalidReport as e:
                return {**data, "report": None,
                        "report_problem": data.get("report_problem") or f"report.json is not a valid report: {e}"}
        return data


class AttemptReport(BaseModel):
    """One attempt on one host, as its agent sees it now."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["AttemptReport"] = "AttemptReport"
    host: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    container: str
    submission_id: str
    task_id: str
    attempt: int = Field(ge=1)
    kind: TaskKind = "training"
    stage: Stage
    removed: bool = Field(False, description="the container and its work directory are gone")
    outcome: AttemptOutcome | None = None
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class CommandReply(BaseModel):
    """The agent's answer to a command."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: bool
    error: str | None = Field(None, description="why the command was refused")
    report: AttemptReport | None = Field(None, description="the attempt as it stands; none when unknown")


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def decode_attempt_report(data: bytes) -> AttemptReport | None:
    """The attempt report in ``data``; ``None`` when the message is another kind of report.
    Raises ``ValueError`` for a malformed attempt report."""
    try:
        body = json.loads(data)
    except ValueError as e:
        raise ValueError(f"agent report is not JSON: {e}") from e
    if not isinstance(body, dict) or body.get("type") != "AttemptReport":
        return None
    try:
        return AttemptReport.model_validate(body)
    except ValidationError as e:
        raise ValueError(f"invalid AttemptReport: {e.errors()[:3]}") from e


def decode_reply(data: bytes) -> CommandReply:
    try:
        return CommandReply.model_validate_json(data)
    except ValidationError as e:
        raise ValueError(f"invalid agent reply: {e.errors()[:3]}") from e
