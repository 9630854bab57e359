"""Fixtures: the real API over real HTTP (uvicorn on 127.0.0.1, port 0, in the test's event
loop) on a real nats-server, a local JWKS endpoint, and signed-in clients for each role."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from touchstone.shared import events as ev
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.subjects import Bucket
from touchstone.shared.system import ReapedPod, RunPodStatus, write_runpod_status
from touchstone.submission.app import create_app
from touchstone.submission.config import SubmissionSettings
from touchstone.submission.deps import Deps, build_deps

ADMIN_SECRET = "tst_bootstrap-admin-for-tests"
ISSUER = "https://issuer.test/pool"
AUDIENCE = "touchstone-tests"
KID = "test-key-1"


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a free port of 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


@dataclass
class Issuer:
    """A fake OIDC issuer: an RSA key whose public half is served as a JWKS."""

    key: rsa.RSAPrivateKey
    jwks_url: str
    iss: str = ISSUER
    aud: str = AUDIENCE
    kid: str = KID

    def token(self, claims: dict[str, Any] | None = None, *, kid: str = KID, **overrides: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "cognito:username": "jwt-user",
            "cognito:groups": ["touchstone_user"],
        }
        body.update(claims or {})
        body.update(overrides)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": kid})


def _jwks_app(public_jwk: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    payload = json.dumps({"keys": [public_jwk]}).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def issuer(rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[Issuer]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    public.update(kid=KID, alg="RS256", use="sig")
    async with serve(_jwks_app(public)) as url:
        yield Issuer(rsa_key, f"{url}/jwks.json")


@dataclass
class Api:
    """The running API and a client per role."""

    url: str
    deps: Deps
    settings: SubmissionSettings
    anon: httpx.AsyncClient
    admin: httpx.AsyncClient
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    issuer: Issuer

    client: Callable[[str | None], httpx.AsyncClient]

    async def caught_up(self) -> None:
        await self.deps.projector.catch_up(timeout=10)

    async def record(self, *events: ev.Event) -> None:
        """Append events as another service would (the scheduler, a provider), then wait for
        the projector."""
        for event in events:
            await self.deps.publisher.append(event)
        await self.caught_up()

    async def submit(self, client: httpx.AsyncClient, url: str = "https://github.com/org/fs.git") -> str:
        r = await client.post("/api/v1/submissions", json={"git_url": url})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def validated(self, sid: str, passed: bool = True) -> None:
        await self.record(ev.SubmissionValidated(aggregate_id=sid, correlation_id=sid, passed=passed))

    async def accepted(self, client: httpx.AsyncClient) -> str:
        sid = await self.submit(client)
        await self.validated(sid)
        return sid

    async def status(self, sid: str) -> str:
        view = await self.deps.store.get_submission(sid)
        return view.status.value if view else "MISSING"

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.05)

    async def runpod_reported(self) -> RunPodStatus:
        """A report as the RunPod provider writes it: low balance, launches stopped, one reaped pod."""
        reaped = ReapedPod(
            pod_id="pod-rogue-1",
            name="touchstone-s-x-pi-15-a1",
            reaped_at=(datetime.now(UTC) - timedelta(minutes=3)).isoformat(),
            cost_per_hr=0.79,
            reason="no task owns it",
        )
        status = RunPodStatus(
            updated_at=(datetime.now(UTC) - timedelta(seconds=20)).isoformat(),
            balance=12.5,
            spend_per_hour=1.58,
            running_pods=2,
            launches_stopped="balance $12.50 is below the $20.00 floor",
            reaped=[reaped],
        )
        await write_runpod_status(await system_bucket(self.deps.js, self.deps.subjects), status)
        return status

    async def events_in_stream(self) -> int:
        info = await self.deps.js.stream_info(self.deps.subjects.events_stream)
        return int(info.state.messages)


def make_settings(tmp_path: Path, nats_url: str, ns: str, **kw: Any) -> SubmissionSettings:
    return SubmissionSettings(namespace=ns, nats_url=nats_url, data_dir=tmp_path / "data", log_json=False, **kw)


@pytest.fixture
def serving() -> Callable[[Any], contextlib.AbstractAsyncContextManager[str]]:
    """``serve`` for test modules (they cannot import this one): ``async with serving(app) as url``."""
    return serve


@pytest.fixture
async def make_api(tmp_path, nats_server, nc, js, subjects, issuer) -> AsyncIterator[Callable[..., Any]]:
    """``await make_api(**settings)``: the API on real HTTP with a client per role; settings
    default to the ``issuer`` fixture's OIDC JWT sign-in (one API per test)."""
    stack = contextlib.AsyncExitStack()

    async def make(*, on: tuple[str, Any, Any] | None = None, db: str = "projections.db", **overrides: Any) -> Api:
        """``on``: another broker's (url, client, JetStream); ``db``: the SQLite file's name."""
        nats_url, client_nc, context = on or (nats_server.url, nc, js)
        options: dict[str, Any] = {
            "oidc_jwks_url": issuer.jwks_url,
            "oidc_issuer": ISSUER,
            "oidc_audience": AUDIENCE,
            "jwks_refresh_s": 0,
            "sse_keepalive_s": 0.5,
            # quotas are tested in test_limits.py; other tests submit freely
            "max_submissions_per_hour": 1000,
            "max_concurrent_validations": 1000,
            **overrides,
        }
        settings = make_settings(tmp_path, nats_url, subjects.ns, **options)
        store = SqliteStore(tmp_path / db)
        stack.push_async_callback(store.close)
        deps = await build_deps(settings, client_nc, context, subjects, store, bootstrap_secret=ADMIN_SECRET)
        url = await stack.enter_async_context(serve(create_app(deps)))

        def client(token: str | None) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            c = httpx.AsyncClient(base_url=url, headers=headers, timeout=10)
            stack.push_async_callback(c.aclose)
            return c

        admin = client(ADMIN_SECRET)
        tokens = {}
        for user in ("alice", "bob"):
            r = await admin.post("/api/v1/tokens", json={"user": user, "role": "user"})
            assert r.status_code == 201, r.text
            tokens[user] = r.json()["secret"]
        return Api(
            url, deps, settings, client(None), admin, client(tokens["alice"]), client(tokens["bob"]), issuer, client
        )

    yield make
    await stack.aclose()
    with contextlib.suppress(Exception):
        await js.delete_key_value(subjects.bucket(Bucket.TOKENS))


@pytest.fixture
async def api(make_api) -> Api:
    return await make_api()
