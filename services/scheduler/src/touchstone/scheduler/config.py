"""The scheduler's settings: one typed object built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>``. Tests build
``SchedulerSettings(...)`` directly.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Literal

from pydantic_settings import SettingsConfigDict
from touchstone.shared.lifecycle import RetryPolicy
from touchstone.shared.settings import Settings


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SchedulerSettings(Settings):
    """Settings of one scheduler process (shared ones come from ``Settings``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    instance_id: str = ""
    """Names this process in the leader lease; empty means host, pid and a random suffix."""

    leader_election: bool = True
    """Act only while holding the lease. Off: always act (tests that force two schedulers to race)."""

    auto_place: bool = True
    """Place whenever events, heartbeats or settings call for it. Off: only when ``place()`` is
    called (tests that force two replicas to take the same decision at the same moment)."""

    lease_ttl_s: float = 6.0
    """A leader that stops renewing loses the lease after this long; a standby then takes over."""

    heartbeat_timeout_s: float = 15.0
    """A server is online while its agent's last heartbeat is younger than this."""

    sweep_interval_s: float = 5.0
    """How often the reconciliation sweep runs (stuck tasks, lost follow-ups, placement)."""

    # launch_timeout_s (the launch deadline) is a shared setting: the RunPod provider derives
    # how long it holds a launch from it (``Settings.launch_hold_s``)

    provisioning_timeout_s: float = 900.0
    """A container or pod that is not ready by then is stuck."""

    preparing_timeout_s: float = 1800.0
    """A task still preparing (sources, requirements) by then is stuck."""

    running_heartbeat_timeout_s: float = 180.0
    """A running task whose container no heartbeat has mentioned for this long is stuck."""

    max_attempts: int = 3
    """Attempts per task, the first included."""

    retry_base_delay_s: float = 5.0
    """Back-off before the second attempt; each later one waits ``retry_factor`` times longer."""

    retry_factor: float = 4.0
    """Growth of the back-off from one retry to the next."""

    validation_platform: Literal["onprem", "runpod", "any"] = "any"
    """Where validation tasks run (``any``: on-prem first, overflow to RunPod)."""

    validation_needs_gpu: bool = False
    """Validation takes a GPU slot when on; otherwise one of the servers' CPU slots."""

    validation_priority: int = 1
    """Queue priority of validation tasks (training tasks take the schedule's, 0 by default)."""

    cpu_slots_per_server: int = 2
    """Tasks without a GPU (validation) that one online server runs at once."""

    runpod_default_gpu_type: str = "any"
    """The RunPod GPU type asked for when a task names none (``any``: the provider's choice)."""

    command_resend_window_s: float = 120.0
    """A new leader re-sends launch and terminate commands whose cause is younger than this
    (the commands stream's duplicate window drops the copies that did arrive)."""

    placement_concurrency: int = 1024
    """Assignments appended at once (in flight, not yet acknowledged)."""

    placement_batch: int = 128
    """Assignments published together before their acknowledgements are awaited."""

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts, base_delay_s=self.retry_base_delay_s, factor=self.retry_factor
        )

    def resolved_instance_id(self) -> str:
        return self.instance_id or default_instance_id()
