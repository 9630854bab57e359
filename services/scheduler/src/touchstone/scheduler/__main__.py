"""``python -m touchstone.scheduler``: run the scheduler until SIGINT/SIGTERM."""

from __future__ import annotations

from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.service import Scheduler
from touchstone.shared.runtime import Runtime, run_service


async def main(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, SchedulerSettings)
    scheduler = Scheduler(settings, runtime.nc, runtime.js, runtime.subjects)
    await scheduler.run(runtime.stop)


if __name__ == "__main__":
    run_service("scheduler", SchedulerSettings(), main)
