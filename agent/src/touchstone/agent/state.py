"""An attempt as the agent keeps it, and how it is kept on disk.

* ``{data_dir}/agent/{container}/attempt.json``: the launch command, how far the attempt got,
  when its run began and how much of its console was streamed; a restarted agent resumes from
  it. It lives in the attempt's folder, beside the task's work directory ``work/`` and out of
  the task's reach, is written without following a planted link and read with a bound: the
  agent trusts only state it wrote itself (whatever the task writes in ``work/`` is data);
* ``{data_dir}/agent/.ended/{container}.json``: the last report of an ended attempt, repeated
  for ``report_retention_s`` (its work directory is gone by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from touchstone.agent.runtime import WORK_SUBDIR
from touchstone.shared.agents import AttemptOutcome, AttemptReport, Stage
from touchstone.shared.commands import LaunchTask
from touchstone.shared.subjects import check_token
from touchstone.shared.workdir import read_json, write_private

ATTEMPT_FILE = "attempt.json"
MAX_STATE_BYTES = 4_000_000
ENDED_DIR = ".ended"


@dataclass
class Attempt:
    command: LaunchTask
    home: Path
    """The attempt's own folder ``{root}/{container}``; the task's work directory is inside."""
    stage: Stage = "launched"
    log_offset: int = 0
    run_since: float | None = None
    """When the trainer started (epoch seconds): its run deadline counts from here."""
    cutting_line: bool = False
    """The console is in a line longer than the streamed bound: skip to its end."""
    commit: str | None = None
    outcome: AttemptOutcome | None = None
    removed: bool = False
    ended_at: float | None = None
    driver: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.command.container_name

    @property
    def work_dir(self) -> Path:
        """The task's work directory (hostile ground: see ``touchstone.shared.workdir``)."""
        return self.home / WORK_SUBDIR

    @property
    def slot(self) -> str:
        return self.command.placement.partition("/")[2]

    def report(self, host: str) -> AttemptReport:
        c = self.command
        return AttemptReport(
            host=host, container=self.name, submission_id=c.submission_id, task_id=c.task_id,
            attempt=c.attempt, kind=c.kind, stage=self.stage, removed=self.removed, outcome=self.outcome,
        )

    def save(self) -> None:
        data = {"command": self.command.model_dump(mode="json"), "stage": self.stage,
                "log_offset": self.log_offset, "commit": self.commit, "run_since": self.run_since}
        write_json(self.home / ATTEMPT_FILE, data)


def load_attempt(home: Path) -> Attempt:
    """The attempt whose folder this is (``OSError``, ``ValueError``, ``KeyError`` when its
    state is missing, unreadable, a link or not a regular file)."""
    data = read_json(home, ATTEMPT_FILE, MAX_STATE_BYTES)
    if data is None:
        raise ValueError(f"no readable {ATTEMPT_FILE} in {home}")
    command = LaunchTask.model_validate(data["command"])
    if command.container_name != home.name:
        raise ValueError(f"{home / ATTEMPT_FILE} names another attempt ({command.container_name})")
    since = data.get("run_since")
    return Attempt(command, home, stage=data["stage"], log_offset=int(data.get("log_offset", 0)),
                   commit=data.get("commit"), run_since=float(since) if since is not None else None)


def save_ended(root: Path, attempt: Attempt, host: str) -> None:
    (root / ENDED_DIR).mkdir(parents=True, exist_ok=True)
    write_json(
        root / ENDED_DIR / f"{attempt.name}.json",
        {"report": attempt.report(host).model_dump(mode="json"),
         "command": attempt.command.model_dump(mode="json"), "ended_at": attempt.ended_at},
    )


def load_ended(root: Path) -> list[Attempt]:
    """The ended attempts whose last report is still kept (unreadable ones are skipped)."""
    folder = root / ENDED_DIR
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = read_json(folder, path.name, MAX_STATE_BYTES)
            if data is None:
                continue
            report = AttemptReport.model_validate(data["report"])
            found.append(Attempt(LaunchTask.model_validate(data["command"]), root / report.container,
                                 stage=report.stage, outcome=report.outcome, removed=report.removed,
                                 ended_at=float(data["ended_at"])))
    return found


def forget_ended(root: Path, name: str) -> None:
    with contextlib.suppress(OSError):
        (root / ENDED_DIR / f"{name}.json").unlink()


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data).encode())


def bad_ids(submission_id: str, task_id: str) -> str | None:
    """Why these ids cannot name a work directory (they must be plain subject tokens)."""
    try:
        check_token(submission_id, "submission id")
        check_token(task_id, "task id")
    except ValueError as e:
        return str(e)
    return None


def gpu_slot(slot: str) -> int | None:
    """The GPU index of a GPU slot (``"0"``); none for a CPU slot (``"cpu0"``)."""
    return int(slot) if slot.isdigit() else None
