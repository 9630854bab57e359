"""Commands: requests to one service, on its own work queue ``{ns}.cmd.{service}.{Command}``.

Commands are imperative and may be refused; the facts that follow are events.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from touchstone.shared.events import TaskKind, TaskSpec


def container_name(submission_id: str, task_id: str, attempt: int) -> str:
    """The name of an attempt's container or pod; the prefix marks what Touchstone owns."""
    return f"{CONTAINER_PREFIX}{submission_id}-{task_id}-{attempt}"


CONTAINER_PREFIX = "touchstone-"


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    submission_id: str
    task_id: str
    attempt: int


class LaunchTask(Command):
    """Run one attempt of a task on the named placement, through every phase."""

    type: Literal["LaunchTask"] = "LaunchTask"
    kind: TaskKind = "training"
    spec: TaskSpec
    prediction_interval: int | None = None
    placement: str = Field(description="host/slot for on-prem; the GPU type for RunPod")
    gpu_type: str | None = None

    @property
    def container_name(self) -> str:
        return container_name(self.submission_id, self.task_id, self.attempt)


class TerminateTask(Command):
    """Stop and remove an attempt's container or pod; silent when it is already gone."""

    type: Literal["TerminateTask"] = "TerminateTask"
    reason: str = ""


AnyCommand = Annotated[LaunchTask | TerminateTask, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)


def decode_command(data: bytes) -> Command:
    return COMMAND_ADAPTER.validate_json(data)


PROVIDER_SERVICE = {"onprem": "onprem-provider", "runpod": "runpod-provider"}
