"""Commands: requests to one service, on its own work queue ``{ns}.cmd.{service}.{Command}``.

Commands are imperative and may be refused; the facts that follow are events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Literal

from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from touchstone.shared.consumer import ConsumerLoop, ConsumerSpec, Handler
from touchstone.shared.events import LaunchDeferred, TaskKind, TaskSpec
from touchstone.shared.objects.grants import UploadGrant
from touchstone.shared.subjects import Subjects, task_aggregate_id


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
    upload: UploadGrant | None = Field(None, description="write access to the attempt's prefix in the object "
                                                         "store, added by the provider that forwards the launch")

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


def deferral(command: LaunchTask, *, event_id: str, reason: str, now: datetime, retry_s: float) -> LaunchDeferred:
    """The launch's task back to the queue, same attempt, placed again no sooner than
    ``retry_s`` from now (a provider that could not start it, burning no attempt). The caller
    derives ``event_id`` from what the deferral answers, so that a repeat is the same event."""
    return LaunchDeferred(
        event_id=event_id,
        occurred_at=now,
        aggregate_id=task_aggregate_id(command.submission_id, command.task_id),
        correlation_id=command.submission_id,
        causation_id=command.command_id,
        submission_id=command.submission_id,
        task_id=command.task_id,
        attempt=command.attempt,
        reason=reason,
        not_before=now + timedelta(seconds=retry_s),
    )


PROVIDER_SERVICE = {"onprem": "onprem-provider", "runpod": "runpod-provider"}


def trainer_args(command: LaunchTask, *, feature_set: str, output: str, report: str) -> list[str]:
    """The trainer's arguments for this attempt (DESIGN §6), after ``python -m MODULE``:
    ``validate`` of a validation task, ``train`` of a training task, with the folders as the
    platform lays them out. ``ValueError`` for a training task without an interval."""
    spec = command.spec
    if command.kind == "validation":
        return ["validate", "--feature-set", feature_set, "--report", report]
    if command.prediction_interval is None:
        raise ValueError("a training task needs a prediction interval")
    argv = ["train", "--feature-set", feature_set, "--config", spec.config_file,
            "--prediction-interval", str(command.prediction_interval)]
    if spec.fetched_data_end_to is not None:
        argv += ["--fetched-data-end-to", spec.fetched_data_end_to.isoformat()]
    return [*argv, *spec.passthrough_args, "--output", output]


def command_consumer(
    js: JetStreamContext,
    subjects: Subjects,
    service: str,
    handlers: Mapping[str, Handler],
    *,
    ack_wait_s: float,
    max_deliver: int,
) -> ConsumerLoop[Command]:
    """The consumer of one service's work queue ``{ns}.cmd.{service}.>``."""
    spec = ConsumerSpec(
        name=service,
        stream=subjects.commands_stream,
        filter_subjects=[subjects.service_commands(service)],
        ack_wait_s=ack_wait_s,
        max_deliver=max_deliver,
    )
    return ConsumerLoop(js, subjects, spec, handlers, decode_command)
