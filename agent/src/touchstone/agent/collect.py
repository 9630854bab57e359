"""The collect phase: an attempt's outputs and its console log go to the artifact store
(the local ``{data_dir}/artifacts`` directory, in the layout of ``touchstone.shared.staging``).

The work directory is hostile (``touchstone.shared.workdir``): only regular files are copied,
no link is followed on the way (``out`` itself, ``out/models/*``), no special file is opened,
and every file and the whole attempt are size-capped; what is left behind is said in the log.
The console log is kept up to its own cap (its head, with a line saying how much was cut).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from touchstone.agent.prepare import CONSOLE_LOG
from touchstone.shared import workdir
from touchstone.shared.agents import LOG_TAIL_LINES
from touchstone.shared.reports import ValidationReport, read_report
from touchstone.shared.staging import (
    COLLECTED_FILES,
    MODELS_DIR,
    OUTPUT_DIR,
    REPORT_FILE,
    artifact_name,
    artifact_paths,
)
from touchstone.shared.workdir import Budget, Refused


@dataclass(frozen=True)
class Limits:
    """What one attempt may leave in the artifact store."""

    file_bytes: int = 4 << 30
    total_bytes: int = 8 << 30
    log_bytes: int = 256 << 20
    files: int = 10_000


@dataclass(frozen=True)
class Collected:
    log_uri: str | None = None
    log_tail: tuple[str, ...] = ()
    report: ValidationReport | None = None
    report_problem: str | None = None
    """Why ``out/report.json`` is not a valid report (a link, too large, not the shape)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    """Outputs left behind and why (links, special files, over a cap)."""


attempt_paths = artifact_paths


def collect_log(
    home: Path, log_file: Path, limit: int = Limits.log_bytes, notes: Sequence[str] = ()
) -> tuple[str | None, tuple[str, ...]]:
    """The console (in the attempt's own folder) into the artifact store, at most ``limit``
    bytes of it, then the agent's ``notes``; its URI and its last lines."""
    try:
        fd = workdir.open_regular(home, CONSOLE_LOG)
    except Refused:
        return None, ()
    try:
        size = os.fstat(fd).st_size
        copied = workdir.copy_out(fd, log_file, limit, head=True) or 0
    finally:
        os.close(fd)
    if size > copied:
        notes = [f"[agent] console cut: {size - copied} more bytes were not kept (cap {limit})", *notes]
    if notes:
        with log_file.open("a", encoding="utf-8") as f:
            f.write("\n" + "".join(f"{line}\n" for line in notes))
    tail = workdir.tail_lines(home, CONSOLE_LOG, LOG_TAIL_LINES) + tuple(notes)
    return log_file.resolve().as_uri(), tail[-LOG_TAIL_LINES:]


def collect(
    home: Path, work_dir: Path, artifacts_root: Path, submission_id: str, task_id: str, attempt: int,
    limits: Limits | None = None,
) -> Collected:
    """Copy what the attempt produced into the artifact store and read its report and metrics."""
    limits = limits or Limits()
    outputs, log_file = attempt_paths(artifacts_root, submission_id, task_id, attempt)
    budget = Budget(total_bytes=limits.total_bytes, file_bytes=limits.file_bytes, files=limits.files)
    artifacts: dict[str, str] = {}
    for rel in workdir.copy_tree(work_dir, f"{OUTPUT_DIR}/{MODELS_DIR}", outputs / MODELS_DIR, budget):
        artifacts[artifact_name(rel)] = (outputs / MODELS_DIR / rel).resolve().as_uri()
    docs: dict[str, dict[str, Any] | None] = {}
    for name in COLLECTED_FILES:
        json_budget = Budget(total_bytes=workdir.MAX_JSON_BYTES, file_bytes=workdir.MAX_JSON_BYTES)
        if workdir.copy_file(work_dir, f"{OUTPUT_DIR}/{name}", outputs / name, json_budget):
            artifacts[name] = (outputs / name).resolve().as_uri()
            docs[name] = workdir.read_json(outputs.parent, f"{outputs.name}/{name}")
        budget.skipped.extend(json_budget.skipped)
    report, report_problem = read_report(work_dir, f"{OUTPUT_DIR}/{REPORT_FILE}")
    notes = [f"[agent] not collected: {why}" for why in budget.skipped]
    if report_problem:
        notes.append(f"[agent] {report_problem}")
    log_uri, log_tail = collect_log(home, log_file, limits.log_bytes, notes)
    return Collected(
        log_uri=log_uri,
        log_tail=log_tail,
        report=report,
        report_problem=report_problem,
        metrics=docs.get("metrics.json") or {},
        artifacts=artifacts,
        skipped=tuple(budget.skipped),
    )


def _note(home: Path, lines: list[str]) -> None:
    try:
        fd = os.open(home / CONSOLE_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))
