"""``python -m touchstone.onprem_provider``: run the on-prem provider until SIGINT/SIGTERM."""

from __future__ import annotations

from touchstone.onprem_provider.config import ProviderSettings
from touchstone.onprem_provider.service import OnpremProvider
from touchstone.shared.runtime import Runtime, run_service


async def main(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, ProviderSettings)
    provider = OnpremProvider(settings, runtime.nc, runtime.js, runtime.subjects, runtime.publisher)
    await provider.run(runtime.stop)


if __name__ == "__main__":
    run_service("onprem-provider", ProviderSettings(), main)
