"""The validation report: the one typed model of the trainer's ``report.json``, from the
attempt that writes it through the events, views and API to the CLI.

``report.json`` is written by the trainer *in the same process as the submitted feature set*,
so it is untrusted input: every string, list and number is bounded here, numbers must be
finite, types are strict (``"yes"`` is not a bool, ``"5"`` not an int), and the whole report
serialises to at most ``MAX_REPORT_BYTES`` so that an event carrying it stays far under the
broker's payload limit by construction.

Unknown fields are **ignored and dropped**: a newer trainer (a schedule may pin any
``trainer_ref``) may add a field without failing its attempts on an older platform, and a
dropped field never reaches an event. Missing or mistyped known fields are refused.

The trainer (``touchstone.trainer.validate``) must run from source on a bare Debian image
without this package, so it does not import the model; it cuts what it writes to the bounds
below itself, and a contract test (``tests/test_report_contract.py``) runs the real trainer
on the examples and on hostile feature sets and validates what it wrote against this model.

``read_report`` is how a platform reads the file: a report that is missing, a link, not a
regular file, over its byte cap, not JSON or not this shape is a *problem*, a short sentence
that becomes the attempt's failure reason (``touchstone.shared.attempt.judge_exit``), never an
exception and never the offending payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator
from touchstone.shared import workdir

MAX_REPORT_FILE_BYTES = 256 * 1024
"""report.json larger than this is refused unread (the real trainer writes a few KiB)."""
MAX_REPORT_BYTES = 96 * 1024
"""The whole report, as compact JSON, after the unknown fields are dropped."""
MAX_CHECKS = 32
MAX_CHECK_NAME_CHARS = 64
MAX_DETAIL_CHARS = 1000
MAX_NAME_CHARS = 200
MAX_COLUMNS = 200
MAX_COLUMN_CHARS = 100
MAX_NOTE_CHARS = 500
MAX_PROBLEM_CHARS = 300

_FROZEN = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

Finite = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]


class Check(BaseModel):
    """One check of the feature set (``touchstone.trainer.validate`` lists them)."""

    model_config = _FROZEN

    name: str = Field(min_length=1, max_length=MAX_CHECK_NAME_CHARS, strict=True)
    passed: StrictBool
    detail: str = Field("", max_length=MAX_DETAIL_CHARS, strict=True, description="what was found, in words")
    skipped: StrictBool = Field(False, description="not run because an earlier blocking check failed")


class FeatureSetInfo(BaseModel):
    """What the feature set declared and produced (none where validation stopped before it)."""

    model_config = _FROZEN

    name: str | None = Field(None, max_length=MAX_NAME_CHARS, strict=True)
    lookback: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = None
    columns: list[Annotated[str, Field(max_length=MAX_COLUMN_CHARS, strict=True)]] = Field(
        default_factory=list, max_length=MAX_COLUMNS, description=f"the first {MAX_COLUMNS} output columns")
    columns_total: Count | None = Field(None, description="how many output columns there were (the list may be cut)")


class DataInfo(BaseModel):
    """Which candles the checks ran on."""

    model_config = _FROZEN

    source: str | None = Field(None, max_length=64, strict=True)
    rows: Count | None = None
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, strict=True)
    start: datetime | None = None
    end: datetime | None = None


class ValidationReport(BaseModel):
    """The trainer's verdict on a feature set: every check, in order, and what it ran on."""

    model_config = _FROZEN

    passed: StrictBool
    checks: list[Check] = Field(min_length=1, max_length=MAX_CHECKS)
    duration_s: Finite = Field(description="seconds the validation took")
    feature_set: FeatureSetInfo = Field(default_factory=FeatureSetInfo)
    data: DataInfo = Field(default_factory=DataInfo)

    @model_validator(mode="after")
    def _bounded(self) -> ValidationReport:
        size = len(self.model_dump_json())
        if size > MAX_REPORT_BYTES:
            raise ValueError(f"the report is {size} bytes as JSON, more than {MAX_REPORT_BYTES}")
        return self

    def failed(self) -> list[Check]:
        """The checks that ran and failed (skipped ones are consequences, not causes)."""
        return [c for c in self.checks if not c.passed and not c.skipped]


class InvalidReport(ValueError):
    """The report is not a validation report; the message is short and holds none of its input."""


def problem_of(e: ValidationError) -> str:
    """A short account of what is wrong, without the offending values (they may be huge)."""
    errors = e.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(str(p) for p in err['loc']) or 'report'}: {err['msg']}" for err in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return _cut("; ".join(parts) + more)


def parse_report(body: Mapping[str, Any] | bytes) -> ValidationReport:
    """The report in ``body`` (a decoded object or the file's bytes); ``InvalidReport`` otherwise."""
    if isinstance(body, bytes):
        if len(body) > MAX_REPORT_FILE_BYTES:
            raise InvalidReport(f"{len(body)} bytes, more than {MAX_REPORT_FILE_BYTES}")
        try:
            body = json.loads(body.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise InvalidReport(f"not JSON: {_cut(str(e))}") from None
        except RecursionError:
            raise InvalidReport("not JSON: nested too deep") from None
    if not isinstance(body, Mapping):
        raise InvalidReport(f"not a JSON object but {type(body).__name__}")
    try:
        return ValidationReport.model_validate(body)
    except ValidationError as e:
        raise InvalidReport(problem_of(e)) from None


def read_report(base: Path, rel: str | PurePosixPath) -> tuple[ValidationReport | None, str | None]:
    """(the report, None), or (None, the problem) for ``base/rel`` read as hostile ground
    (``touchstone.shared.workdir``: no link followed, only a regular file, bounded).
    A missing file is (None, None): whether that is a fault is the judge's to say."""
    try:
        data = workdir.read_bounded(base, rel, MAX_REPORT_FILE_BYTES + 1)
    except workdir.Refused as e:
        if isinstance(e.__cause__, FileNotFoundError):
            return None, None
        return None, f"report.json refused: {_cut(str(e))}"
    return parse_bytes(data)


def parse_bytes(data: bytes) -> tuple[ValidationReport | None, str | None]:
    """(the report, None) or (None, why it is not one), for a file's bytes."""
    try:
        return parse_report(data), None
    except InvalidReport as e:
        return None, f"report.json is not a valid validation report: {e}"


def lenient(value: Any) -> ValidationReport | None:
    """A stored report of before the model (a dict in an old event or view): the typed report
    when it fits, None when it does not (an ``{"omitted": ...}`` note, a test's ``{}``)."""
    if value is None or isinstance(value, ValidationReport):
        return value
    try:
        return parse_report(value)
    except InvalidReport:
        return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 3] + "..."
