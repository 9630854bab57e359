"""The service's parts, built once at bootstrap (``Deps``) and passed to ``create_app``; each
API route group gets only what it uses (``RoutesDeps``, ``EvaluationsDeps``, ``AdminDeps``,
``AgentAccessDeps``: its router provides it under the name ``deps``). The UI's pages and the
app's own health and live-feed routes see the whole ``Deps``.

``Deps.background`` are the loops the app runs while it serves: the projector (read models),
the live feed, the token cache watcher, the retract-after-delete reaction, the agents'
heartbeats (for the System and Tasks pages), the tasks' training progress and the instance's
kind and pause state (the banner on every UI page).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from litestar.di import NamedDependency
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.instance import InstanceWatch
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.objects.stores import ObjectStore
from touchstone.shared.projector import Projector
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.store import ProjectionStore
from touchstone.shared.subjects import Subjects
from touchstone.submission import handlers
from touchstone.submission.adapters import Artifacts, LogReader, SystemStore
from touchstone.submission.auth import Authenticator, JwtVerifier, TokenRegistry, open_tokens_bucket
from touchstone.submission.commands import SubmissionCommands
from touchstone.submission.config import SubmissionSettings
from touchstone.submission.domain import Principal
from touchstone.submission.feed import Feed
from touchstone.submission.hosts import Hosts
from touchstone.submission.idempotency import open_idempotency_bucket, shared_ui_key
from touchstone.submission.live import TaskProgress
from touchstone.submission.oidc import OidcClient
from touchstone.submission.quotas import QuotaLimits, Quotas, open_quotas_bucket
from touchstone.submission.rules import SourcePolicy


@dataclass
class Deps:
    settings: SubmissionSettings
    nc: NATS
    js: JetStreamContext
    subjects: Subjects
    store: ProjectionStore
    publisher: EventPublisher
    commands: SubmissionCommands
    auth: Authenticator
    tokens: TokenRegistry
    system: SystemStore
    logs: LogReader
    artifacts: Artifacts
    objects: ObjectStore
    feed: Feed
    projector: Projector
    hosts: Hosts
    progress: TaskProgress
    oidc: OidcClient | None = None
    idempotency: KeyValue | None = None
    csrf_key: bytes = b""
    instance: InstanceWatch | None = None
    """The instance's kind and pause state, for the banner on every UI page."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(default_factory=list)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def start(self) -> None:
        """Start the background loops (the app's lifespan calls this)."""
        self.stop.clear()
        for loop in self.background:
            name = getattr(loop, "__qualname__", repr(loop))
            self.tasks[name] = asyncio.create_task(loop(self.stop), name=name)

    async def close(self) -> None:
        """Stop the loops: each is safe to cancel at an await (a message it was handling is
        redelivered; a projector batch is one store transaction)."""
        self.stop.set()
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        if self.auth.jwts is not None:
            await self.auth.jwts.close()
        if self.oidc is not None:
            await self.oidc.close()

    def healthy_loops(self) -> dict[str, bool]:
        return {name: not task.done() for name, task in self.tasks.items()}


async def build_deps(
    settings: SubmissionSettings,
    nc: NATS,
    js: JetStreamContext,
    subjects: Subjects,
    store: ProjectionStore,
    *,
    bootstrap_secret: str | None,
    jwts: JwtVerifier | None = None,
) -> Deps:
    """Wire the service. JetStream must already be provisioned for ``subjects``."""
    publisher = EventPublisher(js, subjects)
    policy = SourcePolicy.build(settings.allow_local_sources, settings.denied_networks, settings.denied_hosts)
    tokens = TokenRegistry(await open_tokens_bucket(js, subjects), bootstrap_secret=bootstrap_secret)
    if jwts is None and settings.oidc_jwks_url:
        jwts = JwtVerifier(settings)
    objects = settings.object_store()
    feed = Feed(store)
    limits = QuotaLimits(settings.max_submissions_per_hour, settings.max_concurrent_validations)
    quotas = Quotas(await open_quotas_bucket(js, subjects), store, limits)
    commands = SubmissionCommands(publisher, store, policy, quotas)
    system_kv = await system_bucket(js, subjects)
    deps = Deps(
        settings=settings,
        nc=nc,
        js=js,
        subjects=subjects,
        store=store,
        publisher=publisher,
        commands=commands,
        auth=Authenticator(tokens, jwts),
        tokens=tokens,
        system=SystemStore(system_kv),
        logs=LogReader(js, subjects, objects),
        artifacts=Artifacts(objects),
        objects=objects,
        feed=feed,
        projector=Projector(js, subjects, store, on_applied=feed.on_applied),
        hosts=Hosts(nc, subjects),
        progress=TaskProgress(nc, subjects),
        oidc=OidcClient(settings) if settings.sso_enabled and jwts is not None else None,
        idempotency=await open_idempotency_bucket(js, subjects),
        csrf_key=await shared_ui_key(js, subjects, settings.ui_csrf_key),
        instance=InstanceWatch(system_kv),
    )
    retract = ConsumerLoop(js, subjects, handlers.consumer_spec(subjects),
                           handlers.REACTIONS.bind(handlers.Deps(publisher)), ev.decode_event)
    deps.background = [feed.run, tokens.watch, retract.run, deps.hosts.run, deps.progress.run,
                       deps.instance.run]
    if settings.run_projector:
        deps.background.insert(0, deps.projector.run)
    return deps


@dataclass(frozen=True)
class RoutesDeps:
    """What the submission and task routes use (``routes``; the UI's pages reuse its helpers)."""

    commands: SubmissionCommands
    store: ProjectionStore
    logs: LogReader
    artifacts: Artifacts
    objects: ObjectStore
    feed: Feed
    settings: SubmissionSettings
    stop: asyncio.Event

    @classmethod
    def of(cls, deps: Deps) -> RoutesDeps:
        return cls(deps.commands, deps.store, deps.logs, deps.artifacts, deps.objects, deps.feed, deps.settings,
                   deps.stop)


@dataclass(frozen=True)
class EvaluationsDeps:
    """What the evaluations and leaderboard routes use (``evaluations``)."""

    store: ProjectionStore


@dataclass(frozen=True)
class AdminDeps:
    """What the system settings and token routes use (``admin``)."""

    system: SystemStore
    tokens: TokenRegistry


@dataclass(frozen=True)
class AgentAccessDeps:
    """What the agent exec and file routes use (``agent_access``)."""

    nc: NATS
    publisher: EventPublisher
    subjects: Subjects


# How handlers name what they need (injected by parameter name: deps, principal, admin).
DepsArg = NamedDependency[Deps]
RoutesArg = NamedDependency[RoutesDeps]
EvaluationsArg = NamedDependency[EvaluationsDeps]
AdminArg = NamedDependency[AdminDeps]
AgentAccessArg = NamedDependency[AgentAccessDeps]
PrincipalArg = NamedDependency[Principal]
