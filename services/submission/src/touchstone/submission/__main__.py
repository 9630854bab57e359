"""``python -m touchstone.submission``: the HTTP API on ``host:port`` (default 127.0.0.1:8080)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

import uvicorn
from touchstone.shared.logs import setup_logging
from touchstone.shared.runtime import open_runtime
from touchstone.submission.app import create_app
from touchstone.submission.auth import bootstrap_admin_token
from touchstone.submission.config import SubmissionSettings
from touchstone.submission.deps import build_deps

log = logging.getLogger("touchstone.submission")


async def serve(settings: SubmissionSettings) -> None:
    """Run the API until SIGINT/SIGTERM (uvicorn handles both), then close cleanly."""
    secret, generated = bootstrap_admin_token(settings)
    if generated:
        print(
            f"touchstone: bootstrap admin token (also in {settings.admin_token_file}):\n  {secret}",
            file=sys.stderr,
            flush=True,
        )
    runtime = await open_runtime("submission", settings)
    try:
        deps = await build_deps(
            settings,
            runtime.nc,
            runtime.js,
            runtime.subjects,
            runtime.store,
            bootstrap_secret=secret,
        )
        app = create_app(deps)
        # everything built so far lives as long as the process: keep it out of the collector's
        # full passes (they were the API's p99 spikes under load)
        gc.collect()
        gc.freeze()
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,
            proxy_headers=False,
            server_header=False,
        )
        log.info("submission API on http://%s:%d", settings.host, settings.port)
        await uvicorn.Server(config).serve()
    finally:
        await runtime.close()


def main() -> None:
    settings = SubmissionSettings()
    setup_logging("submission", level=settings.log_level, json_lines=settings.log_json)
    try:
        import uvloop  # the faster event loop where it is installed
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
