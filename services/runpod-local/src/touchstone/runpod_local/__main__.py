"""``python -m touchstone.runpod_local``: run the fake RunPod until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
from pathlib import Path

from . import ratelimit
from .container import DEFAULT_POD_IMAGE
from .ratelimit import RateLimiter
from .server import FakeRunpod
from .state import Faults


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m touchstone.runpod_local")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="the key to accept (random if unset)")
    parser.add_argument("--root", type=Path, default=None, help="pod directories (temp if unset)")
    parser.add_argument("--balance", type=float, default=100.0, help="account balance in USD")
    parser.add_argument("--polls-to-running", type=int, default=2)
    parser.add_argument("--pull-s", type=float, default=0.0, help="seconds before SSH accepts")
    parser.add_argument("--pods", choices=("ssh", "docker", "auto"), default="ssh",
                        help="ssh: asyncssh servers running commands on this host (the default); "
                             "docker: containers of --pod-image running sshd; auto: docker when usable")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="RunPod's example rate limits times this (for providers on short periods)")
    parser.add_argument("--pod-image", default=DEFAULT_POD_IMAGE, help="the image of container pods")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    api_key = args.api_key or secrets.token_urlsafe(24)
    fake = FakeRunpod(
        api_key=api_key,
        root=args.root,
        host=args.host,
        port=args.port,
        polls_to_starting=min(1, args.polls_to_running),
        polls_to_running=args.polls_to_running,
        faults=Faults(balance=args.balance, pull_s=args.pull_s),
        pod_backend=args.pods,
        pod_image=args.pod_image,
        rate_limiter=RateLimiter(quotas=ratelimit.scaled(args.rate_scale)),
    )
    async with fake:
        print(f"fake RunPod REST v2: {fake.base_url}", flush=True)
        print(f"fake RunPod GraphQL: {fake.graphql_url}", flush=True)
        print(f"fake RunPod pods: {fake.pod_backend}"
              + (f" ({fake.why_not_docker})" if fake.pod_backend == "ssh" and args.pods != "ssh" else ""), flush=True)
        if args.api_key is None:
            print(f"API key: {api_key}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(_parse()))
