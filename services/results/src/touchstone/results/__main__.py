"""``python -m touchstone.results``: run the results service until SIGINT/SIGTERM."""

from __future__ import annotations

from touchstone.results import service
from touchstone.results.config import ResultsSettings
from touchstone.shared.runtime import Runtime, run_service


async def main(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, ResultsSettings)
    await service.run(settings, runtime.js, runtime.subjects, runtime.stop, evaluations=runtime.store)


if __name__ == "__main__":
    run_service("results", ResultsSettings(), main)
