"""The object keys of an attempt's outputs, and the one check every reader applies.

One prefix per attempt, so that a grant covers exactly one attempt and nothing else:

    attempts/{submission}/{task}/attempt-{n}/console.log       the full console log
    attempts/{submission}/{task}/attempt-{n}/models/...        the trained models
    attempts/{submission}/{task}/attempt-{n}/metrics.json      (and report.json, curves.json)

A key taken from an event is untrusted: ``check_attempt_key`` refuses anything that is not a
plain relative key under the attempt's own prefix (absolute paths, URLs, ``..``, empty or
odd segments, control characters).
"""

from __future__ import annotations

import re

from touchstone.shared.errors import InvalidInputError

LOG_NAME = "console.log"
MAX_KEY_CHARS = 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class UnsafeKey(InvalidInputError):
    """A key that is not a plain relative key under the expected prefix."""


def attempt_prefix(submission_id: str, task_id: str, attempt: int) -> str:
    """``attempts/{submission}/{task}/attempt-{n}/`` (with its trailing slash)."""
    for value in (submission_id, task_id):
        if not _ID.match(value):
            raise UnsafeKey(f"id {value!r} cannot be part of an object key")
    if attempt < 1:
        raise UnsafeKey(f"attempt {attempt} cannot be part of an object key")
    return f"attempts/{submission_id}/{task_id}/attempt-{attempt}/"


def task_prefix(submission_id: str, task_id: str) -> str:
    """``attempts/{submission}/{task}/``: every attempt of one task."""
    return attempt_prefix(submission_id, task_id, 1).rsplit("/", 2)[0] + "/"


def log_key(submission_id: str, task_id: str, attempt: int) -> str:
    return attempt_prefix(submission_id, task_id, attempt) + LOG_NAME


def output_key(submission_id: str, task_id: str, attempt: int, relative: str) -> str:
    """The key of a file at ``relative`` (``models/long.json``, ``metrics.json``) in the
    attempt's output folder."""
    return check_key(attempt_prefix(submission_id, task_id, attempt) + relative)


def check_key(key: object) -> str:
    """``key`` when it is a plain relative key: '/'-separated segments of letters, digits,
    ``.``, ``_`` and ``-``, none of them empty, ``.`` or ``..``. No scheme, no leading slash,
    no backslash, nothing a filesystem or a URL parser could read as something else."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise UnsafeKey(f"not an object key: {str(key)[:80]!r}")
    for segment in key.split("/"):
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise UnsafeKey(f"unsafe object key {key[:200]!r}")
    return key


def check_under(key: object, prefix: str) -> str:
    """``key`` when it is a safe key strictly under ``prefix`` (which ends with '/')."""
    checked = check_key(key)
    if not prefix.endswith("/") or not checked.startswith(prefix) or checked == prefix:
        raise UnsafeKey(f"object key {checked[:200]!r} is not under {prefix!r}")
    return checked


def check_attempt_key(key: object, submission_id: str, task_id: str, attempt: int) -> str:
    """``key`` when it names an object of this attempt; ``UnsafeKey`` otherwise."""
    return check_under(key, attempt_prefix(submission_id, task_id, attempt))


def safe_relative(relative: str) -> str:
    """A relative path from a task's output folder made into key segments (anything odd
    becomes ``_``; ``.`` and ``..`` become ``_``), so that a strange file name is renamed,
    not refused."""
    parts = []
    for part in relative.split("/"):
        cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", part)[:255]
        parts.append("_" if cleaned in ("", ".", "..") else cleaned)
    return "/".join(parts)
