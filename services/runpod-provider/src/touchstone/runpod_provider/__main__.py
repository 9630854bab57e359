"""``python -m touchstone.runpod_provider``: run the RunPod provider until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

from touchstone.shared.runtime import Runtime, run_service

from .config import RunpodProviderSettings
from .service import RunpodProvider


async def main(runtime: Runtime) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per RunPod call is noise
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # and one per file copied into a pod
    settings = runtime.settings
    assert isinstance(settings, RunpodProviderSettings)
    if not settings.runpod_api_key.get_secret_value():
        # the embedded default: RunPod off. Nothing is contacted until a key is configured.
        logging.getLogger(__name__).info(
            "RunPod is not configured (set TOUCHSTONE_RUNPOD_API_KEY); the provider stays idle"
        )
        await runtime.stop.wait()
        return
    provider = RunpodProvider(settings, runtime.nc, runtime.js, runtime.subjects, runtime.publisher)
    await provider.run(runtime.stop)


if __name__ == "__main__":
    run_service("runpod-provider", RunpodProviderSettings(), main)
