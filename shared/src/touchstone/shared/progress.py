"""Training progress as the trainer reports it on its console, one line per step:

    [trainer] progress {"step": 3, "steps": 6, "stage": "fit short"}

The line travels with the rest of the console (``{ns}.logs.{task}``); readers keep the latest
per task. Like heartbeats, progress is state, not a fact: nothing stores it, and a reader that
starts late knows it from the next line on. Any trainer may print these lines; one that does
not simply shows no progress.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = b"[trainer] progress "


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    step: int = Field(ge=0)
    steps: int = Field(ge=1)
    stage: str = Field("", max_length=80)

    @property
    def percent(self) -> int:
        return max(0, min(100, round(100 * self.step / self.steps)))


def latest_progress(data: bytes) -> Progress | None:
    """The last well-formed progress line in a chunk of console output (None: none)."""
    if PREFIX not in data:
        return None
    found = None
    for line in data.splitlines():
        start = line.find(PREFIX)
        if start < 0 or len(line) > 500:
            continue
        try:
            found = Progress.model_validate(json.loads(line[start + len(PREFIX):]))
        except (ValueError, ValidationError):
            continue
    return found
