"""The collect phase: an attempt's outputs and its full console log go to the artifact store
(the local ``{data_dir}/artifacts`` directory):

    artifacts/models/{submission}/{task}/attempt-{n}/models/..., metrics.json, report.json
    artifacts/logs/{submission}/{task}/attempt-{n}.log

Only regular files are copied (a symlink the task planted is skipped), and JSON read back is
size-capped, because the task is untrusted.
"""

from __future__ import annotations

import json
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from touchstone.agent.prepare import CONSOLE_LOG, OUTPUT_DIR, REPORT_FILE
from touchstone.agent.protocol import LOG_TAIL_LINES

MAX_JSON_BYTES = 1_000_000
MAX_LINE_CHARS = 2_000


@dataclass(frozen=True)
class Collected:
    log_uri: str | None = None
    log_tail: tuple[str, ...] = ()
    report: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


def attempt_paths(artifacts_root: Path, submission_id: str, task_id: str, attempt: int) -> tuple[Path, Path]:
    """(outputs folder, log file) of one attempt in the artifact store."""
    outputs = artifacts_root / "models" / submission_id / task_id / f"attempt-{attempt}"
    log_file = artifacts_root / "logs" / submission_id / task_id / f"attempt-{attempt}.log"
    return outputs, log_file


def tail_lines(path: Path, n: int = LOG_TAIL_LINES) -> tuple[str, ...]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return tuple(deque((line.rstrip("\n")[:MAX_LINE_CHARS] for line in f), maxlen=n))
    except OSError:
        return ()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a regular file of at most ``MAX_JSON_BYTES``; none otherwise."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


CURVES_FILE = "curves.json"  # the trainer's curves behind its metrics (cumulative return, ROC)


def _copy_file(src: Path, dest: Path) -> bool:
    if src.is_symlink() or not src.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return True


def collect_log(work_dir: Path, log_file: Path) -> tuple[str | None, tuple[str, ...]]:
    console = work_dir / CONSOLE_LOG
    if not _copy_file(console, log_file):
        return None, ()
    return log_file.resolve().as_uri(), tail_lines(log_file)


def collect(work_dir: Path, artifacts_root: Path, submission_id: str, task_id: str, attempt: int) -> Collected:
    """Copy what the attempt produced into the artifact store and read its report and metrics."""
    outputs, log_file = attempt_paths(artifacts_root, submission_id, task_id, attempt)
    log_uri, log_tail = collect_log(work_dir, log_file)
    out = work_dir / OUTPUT_DIR
    artifacts: dict[str, str] = {}
    models = out / "models"
    if models.is_dir() and not models.is_symlink():
        for src in sorted(models.rglob("*")):
            dest = outputs / "models" / src.relative_to(models)
            if _copy_file(src, dest):
                artifacts[src.relative_to(models).as_posix().replace("/", "_")] = dest.resolve().as_uri()
    for name in ("metrics.json", CURVES_FILE, REPORT_FILE):
        dest = outputs / name
        if _copy_file(out / name, dest):
            artifacts[name] = dest.resolve().as_uri()
    return Collected(
        log_uri=log_uri,
        log_tail=log_tail,
        report=read_json(out / REPORT_FILE),
        metrics=read_json(out / "metrics.json") or {},
        artifacts=artifacts,
    )
