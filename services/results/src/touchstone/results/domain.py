"""Pure decisions of the results service: where each file goes, what an MLflow run holds,
what a notification says. No I/O and no clock reads here.

The producer (agent, RunPod provider) has put the attempt's outputs into the object store
under the attempt's prefix (``touchstone.shared.objects.keys``); events name them by key only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from touchstone.shared import events as ev
from touchstone.shared.objects import keys
from touchstone.shared.reports import ValidationReport

LOG_ARTIFACT = "log"
EVENT_ID_TAG = "touchstone.event_id"
MAX_PARAM_CHARS = 6000
MAX_KEY_CHARS = 250
_METRIC_UNSAFE = re.compile(r"[^\w\-. /]")

NoticeStatus = Literal["COMPLETED", "ERROR", "REJECTED"]


# --- what an event names ------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    """The objects an attempt's event names, each key checked to lie under the attempt's prefix."""

    artifacts: dict[str, str] = field(default_factory=dict)
    log_key: str | None = None


def checked_outputs(
    submission_id: str, task_id: str, attempt: int, artifacts: dict[str, str], log_key: str | None,
    log_uri: str | None,
) -> Outputs:
    """The event's object keys, or ``UnsafeKey`` (permanent: the event is refused whole) when it
    names a host path, a URL, a key outside its attempt, or carries a ``log_uri`` at all. The
    results service reads no path or URL from an event, so there is nothing else to accept."""
    if log_uri is not None:
        raise keys.UnsafeKey(f"the event names its log by path or URL ({log_uri[:200]!r}), not by object key")
    checked = {str(name)[:MAX_KEY_CHARS]: keys.check_attempt_key(key, submission_id, task_id, attempt)
               for name, key in sorted(artifacts.items())}
    if log_key is not None and log_key != keys.log_key(submission_id, task_id, attempt):
        raise keys.UnsafeKey(f"log key {log_key[:200]!r} is not this attempt's log")
    return Outputs(checked, log_key)


# --- the record of what was published -------------------------------------------------------


class AttemptRecord(BaseModel):
    """What was published for one task attempt (kept in the ledger; the body of the proposed
    ``ResultsPublished`` event)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    submission_id: str
    task_id: str
    attempt: int
    outcome: Literal["finished", "failed"] = "finished"
    artifacts: dict[str, str] = Field(default_factory=dict, description="name -> object key (in the store)")
    log_key: str | None = None
    missing: tuple[str, ...] = Field(default=(), description="names the event gave whose object is not in the store")
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None


def attempt_record_key(submission_id: str, task_id: str, attempt: int) -> str:
    return f"attempt.{submission_id}.{task_id}.{attempt}"


def notice_record_key(submission_id: str, status: NoticeStatus) -> str:
    return f"notice.{submission_id}.{status}"


# --- MLflow ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One MLflow run: a task attempt with its params, both models' metrics and links."""

    name: str
    event_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested numbers as dotted keys (``long.roc_auc``, ``short.backtest.sharpe``); anything that
    is not a finite number is left out."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = _METRIC_UNSAFE.sub("_", f"{prefix}{key}")[:MAX_KEY_CHARS]
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            flat[name] = float(value)
    return flat


def run_params(event: ev.TrainingFinished, queued: ev.TaskQueued | None) -> dict[str, str]:
    params: dict[str, Any] = {
        "submission_id": event.submission_id,
        "task_id": event.task_id,
        "attempt": event.attempt,
        "exit_code": event.exit_code,
    }
    if queued is not None:
        spec = queued.spec
        params |= {
            "prediction_interval": queued.prediction_interval,
            "config_file": spec.config_file,
            "trainer_ref": spec.trainer_ref,
            "git_url": spec.git_url,
            "git_ref": spec.git_ref,
            "feature_set_path": spec.feature_set_path,
            "fetched_data_end_to": spec.fetched_data_end_to.isoformat() if spec.fetched_data_end_to else None,
            "passthrough_args": " ".join(spec.passthrough_args) or None,
            "platform": queued.platform,
        }
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items() if v is not None}


def run_spec(
    event: ev.TrainingFinished, queued: ev.TaskQueued | None, record: AttemptRecord, uri: Callable[[str], str]
) -> RunSpec:
    """The run of an attempt; ``uri`` names an object in the store the service is configured with."""
    tags = {
        EVENT_ID_TAG: event.event_id,
        "touchstone.submission_id": event.submission_id,
        "touchstone.task_id": event.task_id,
        "touchstone.attempt": str(event.attempt),
    }
    tags |= {f"artifact.{name}"[:MAX_KEY_CHARS]: uri(key) for name, key in record.artifacts.items()}
    if record.log_key:
        tags["log"] = uri(record.log_key)
    metrics = flatten_metrics(event.metrics)
    if event.cost_usd is not None:
        metrics["cost_usd"] = event.cost_usd
    return RunSpec(
        name=f"{event.submission_id}/{event.task_id}/attempt-{event.attempt}",
        event_id=event.event_id,
        params=run_params(event, queued),
        metrics=metrics,
        tags=tags,
    )


# --- notifications --------------------------------------------------------------------------


class Message(Protocol):
    """What a webhook or an email says: a title, lines, and maybe a link to the submission."""

    @property
    def title(self) -> str: ...

    @property
    def lines(self) -> tuple[str, ...]: ...

    @property
    def link(self) -> str | None: ...


@dataclass(frozen=True)
class Notice:
    """One message about a submission reaching COMPLETED, ERROR or REJECTED."""

    submission_id: str
    status: NoticeStatus
    title: str
    lines: tuple[str, ...]
    link: str | None = None


def failed_checks(report: ValidationReport | None) -> list[str]:
    """``name: detail`` of each failed check of a validation report."""
    if report is None:
        return []
    return [f"{c.name}: {c.detail.strip()}" if c.detail.strip() else c.name for c in report.failed()]


def notice_for(
    event: ev.Event, created: ev.SubmissionCreated | None, url_template: str = ""
) -> Notice | None:
    """The notification an event calls for, if any."""
    sid = event.aggregate_id
    label = f"{created.name} ({sid})" if created else sid
    who = (f"owner: {created.owner}",) if created else ()
    link = url_template.format(submission_id=sid) if url_template else None
    if isinstance(event, ev.SubmissionCompleted):
        return Notice(sid, "COMPLETED", f"Submission {label} completed", who, link)
    if isinstance(event, ev.SubmissionFailed):
        return Notice(sid, "ERROR", f"Submission {label} failed", (*who, f"reason: {event.reason}"), link)
    if isinstance(event, ev.SubmissionValidated) and not event.passed:
        checks = tuple(f"failed check {c}" for c in failed_checks(event.report)[:10])
        return Notice(sid, "REJECTED", f"Submission {label} was rejected", (*who, *checks), link)
    return None


def slack_payload(notice: Message) -> dict[str, Any]:
    """A Slack incoming-webhook body (also what Mattermost and Discord's /slack accept)."""
    text = "\n".join((f"*{notice.title}*", *notice.lines))
    if notice.link:
        text += f"\n<{notice.link}|open submission>"
    return {"text": text}


def lark_payload(notice: Message) -> dict[str, Any]:
    """A Lark / Feishu custom-bot body: a rich-text post."""
    content: list[list[dict[str, str]]] = [[{"tag": "text", "text": line}] for line in notice.lines]
    if notice.link:
        content.append([{"tag": "a", "text": "open submission", "href": notice.link}])
    return {"msg_type": "post", "content": {"post": {"en_us": {"title": notice.title, "content": content}}}}
