"""Structured logs: one JSON object per line, with whatever ``extra`` fields a call adds.

Every line written while a task's message is handled carries ``submission_id``, ``task_id``,
``attempt`` and ``correlation_id`` as fields: the consumer loop (and any other place that
works for one task) enters ``task_context(model)``, which keeps them in a context variable;
``TaskContextFilter`` copies them onto each record. A context variable follows the code into
the asyncio tasks it starts, so an attempt's background work logs them too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

TASK_FIELDS = ("submission_id", "task_id", "attempt", "correlation_id")
_TASK: ContextVar[dict[str, Any] | None] = ContextVar("touchstone_task_fields", default=None)


def fields_of(model: object) -> dict[str, Any]:
    """The task fields ``model`` (an event or a command) carries; an event's ``correlation_id``
    is its submission, a command's is the submission it acts for."""
    found = {name: getattr(model, name) for name in TASK_FIELDS if getattr(model, name, None) is not None}
    if "correlation_id" not in found and "submission_id" in found:
        found["correlation_id"] = found["submission_id"]
    return found


@contextlib.contextmanager
def task_context(model: object = None, **fields: Any) -> Iterator[dict[str, Any]]:
    """Log lines inside the block carry ``model``'s task fields and ``fields`` (which win);
    fields of an enclosing context stay unless replaced."""
    merged = {**(_TASK.get() or {}), **fields_of(model), **{k: v for k, v in fields.items() if v is not None}}
    token = _TASK.set(merged)
    try:
        yield merged
    finally:
        _TASK.reset(token)


def current_task_fields() -> dict[str, Any]:
    return dict(_TASK.get() or {})


class TaskContextFilter(logging.Filter):
    """Adds the current task's fields to every record (a call's own ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_TASK.get() or {}).items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """Human-readable lines; a task's line ends with ``[submission/task#attempt]``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        task = getattr(record, "task_id", None)
        if task is None:
            return line
        attempt = getattr(record, "attempt", None)
        return f"{line} [{getattr(record, 'submission_id', '?')}/{task}{f'#{attempt}' if attempt else ''}]"


def setup_logging(service: str, *, level: str = "INFO", json_lines: bool = True, stream: TextIO | None = None) -> None:
    """Route every logger to stderr (or ``stream``), as JSON lines (or plain text for a terminal)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TaskContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(PlainFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(max(logging.WARNING, root.level))
