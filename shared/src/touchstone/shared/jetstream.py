"""Connecting to NATS and provisioning JetStream (``touchstone nats init``), idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue
from touchstone.shared.settings import Settings
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
DAY_S = 86_400.0


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout: float = 5.0,
    reconnect: bool = True,
    user: str = "",
    password: str = "",
    credentials_file: str = "",
    tls: ssl.SSLContext | None = None,
) -> NATS:
    """A client that reconnects forever, quickly, and logs what happens to it
    (``reconnect=False``: one try, for command-line checks). ``url`` may list several servers,
    comma-separated. ``user`` and ``password`` go to nats-py as options, not in the URL: nats-py
    sends URL credentials only to that URL's server, not to a cluster peer after a failover."""

    async def on_error(e: Exception) -> None:
        log.warning("nats error: %s", e, extra={"client": name})

    async def on_disconnect() -> None:
        log.warning("nats disconnected", extra={"client": name})

    async def on_reconnect() -> None:
        log.info("nats reconnected", extra={"client": name})

    credentials: dict[str, Any] = {"user": user, "password": password} if user else {}
    if credentials_file:
        credentials["user_credentials"] = credentials_file
    if tls is not None:
        credentials["tls"] = tls
    attempt = nats.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        **credentials,
        connect_timeout=connect_timeout,
        allow_reconnect=reconnect,
        max_reconnect_attempts=-1 if reconnect else 0,
        reconnect_time_wait=0.2,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    if reconnect:
        return await attempt
    # nats-py keeps retrying a refused first connection; a one-shot caller wants an answer
    try:
        return await asyncio.wait_for(attempt, connect_timeout)
    except TimeoutError as e:
        raise ConnectionRefusedError(f"no NATS server answers at {url}") from e


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context from the ``nats_tls_*`` settings, or None (plain, or ``tls://``
    URLs with the system's CAs)."""
    if not (settings.nats_tls_ca_file or settings.nats_tls_cert_file):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.nats_tls_ca_file) if settings.nats_tls_ca_file else None
    )
    if settings.nats_tls_cert_file:
        context.load_cert_chain(str(settings.nats_tls_cert_file),
                                str(settings.nats_tls_key_file) if settings.nats_tls_key_file else None)
    return context


async def connect_with(settings: Settings, name: str, **options: Any) -> NATS:
    """``connect`` with this process's NATS settings: user and password (or password file),
    credentials file, TLS; nothing rides in the URL."""
    password = settings.nats_password.get_secret_value()
    if settings.nats_password_file is not None:
        password = settings.nats_password_file.read_text().strip()
    return await connect(
        settings.nats_url, name, user=settings.nats_user, password=password,
        credentials_file=str(settings.nats_credentials_file or ""), tls=tls_context(settings), **options,
    )


MAX_EVENT_BYTES = 1024 * 1024
"""The events stream's ``max_msg_size``; events are far smaller by construction (``events``)."""


@dataclass(frozen=True)
class LogLimits:
    """The logs stream's own storage budget: old lines go first, so a noisy task can neither
    fill the disk the events need nor push every other task's lines out."""

    max_bytes: int = 4 * 1024**3
    """All console lines together."""
    max_msgs_per_task: int = 2000
    """Messages kept per task (each at most ``max_msg_bytes``): one task's share."""
    max_msg_bytes: int = 128 * 1024
    """Largest message (publishers send at most ``console.MAX_MESSAGE_BYTES``)."""

    @classmethod
    def of(cls, settings: Settings) -> LogLimits:
        return cls(settings.logs_max_bytes, settings.logs_max_msgs_per_task)


@dataclass(frozen=True)
class StreamPlan:
    """What ``nats init`` creates for one namespace."""

    streams: tuple[api.StreamConfig, ...]
    system_bucket: str


def plan(subjects: Subjects, *, replicas: int = 1, logs: LogLimits | None = None) -> StreamPlan:
    logs = logs or LogLimits()
    file = api.StorageType.FILE
    return StreamPlan(
        streams=(
            api.StreamConfig(
                name=subjects.events_stream,
                description="Touchstone events: the system of record",
                subjects=[subjects.all_events],
                storage=file,
                retention=api.RetentionPolicy.LIMITS,
                num_replicas=replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_msg_size=MAX_EVENT_BYTES,
                allow_direct=True,
                deny_delete=True,
                deny_purge=True,
            ),
            api.StreamConfig(
                name=subjects.commands_stream,
                description="Touchstone commands: one work queue per service",
                subjects=[subjects.all_commands],
                storage=file,
                retention=api.RetentionPolicy.WORK_QUEUE,
                num_replicas=replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
            ),
            api.StreamConfig(
                name=subjects.dead_letter_stream,
                description="Messages a consumer could not process, with the reason",
                subjects=[subjects.all_dead_letters],
                storage=file,
                retention=api.RetentionPolicy.LIMITS,
                num_replicas=replicas,
                max_age=30 * DAY_S,
            ),
            api.StreamConfig(
                name=subjects.logs_stream,
                description="Task console lines",
                subjects=[subjects.all_logs],
                storage=file,
                retention=api.RetentionPolicy.LIMITS,
                num_replicas=replicas,
                max_age=14 * DAY_S,
                max_bytes=logs.max_bytes,
                max_msgs_per_subject=logs.max_msgs_per_task,
                max_msg_size=logs.max_msg_bytes,
                discard=api.DiscardPolicy.OLD,
                allow_direct=True,
            ),
        ),
        system_bucket=subjects.system_bucket,
    )


async def provision(
    js: JetStreamContext, subjects: Subjects, *, replicas: int = 1, logs: LogLimits | None = None
) -> list[str]:
    """Create or update every stream and the settings bucket. Safe to run any number of times;
    returns what it did, one line per resource."""
    done: list[str] = []
    for config in plan(subjects, replicas=replicas, logs=logs).streams:
        assert config.name
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            done.append(f"created stream {config.name}")
            continue
        # replicas only ever grow here: every service provisions on start with one replica,
        # and must not shrink what `touchstone nats init --replicas 3` set on a cluster
        config.num_replicas = max(config.num_replicas or 1, info.config.num_replicas or 1)
        if _differs(info.config, config):
            # a service provisions with one replica; an update never shrinks what ``nats init
            # --replicas`` made (it would leave the record on a single node)
            config.num_replicas = max(config.num_replicas or 1, info.config.num_replicas or 1)
            try:
                await js.update_stream(config)
                done.append(f"updated stream {config.name}")
            except BadRequestError as e:
                raise RuntimeError(f"stream {config.name} cannot be updated in place: {e}") from e
        else:
            done.append(f"stream {config.name} up to date")
    await system_bucket(js, subjects, replicas=replicas)
    done.append(f"key-value bucket {subjects.system_bucket} ready")
    return done


_SERVER_DEFAULTS: dict[str, object] = {
    "max_age": 0.0, "duplicate_window": 120.0, "allow_direct": False, "max_bytes": -1,
    "max_msgs_per_subject": -1, "max_msg_size": -1,
}
"""What the server reports for a field our plan leaves unset (None, or 0 for the window)."""


def _normal(key: str, value: object) -> object:
    if value is None or (key == "duplicate_window" and value == 0):
        return _SERVER_DEFAULTS.get(key, value)
    return value


def _differs(current: api.StreamConfig, wanted: api.StreamConfig) -> bool:
    """Whether the stream needs an update: a field of the plan differs from the server's
    (fields the plan leaves to the server's default compare as that default, so an unchanged
    stream is not updated on every start), or more replicas are wanted."""
    keys = ("subjects", "retention", "storage", "max_age", "duplicate_window", "allow_direct", "max_bytes",
            "max_msgs_per_subject", "max_msg_size")
    if (wanted.num_replicas or 1) > (current.num_replicas or 1):
        return True
    return any(_normal(k, getattr(current, k)) != _normal(k, getattr(wanted, k)) for k in keys)


async def existing_bucket(js: JetStreamContext, name: str) -> KeyValue | None:
    """The key-value bucket ``name`` when its service created it; ``None`` (and nothing created)
    when not, for readers that must not make what they only look at."""
    try:
        return await js.key_value(name)
    except (NotFoundError, nats.js.errors.BucketNotFoundError):
        return None


async def open_bucket(js: JetStreamContext, subjects: Subjects, config: api.KeyValueConfig) -> KeyValue:
    """The key-value bucket ``config.bucket`` (a name from ``Subjects``), created from ``config``
    when missing: the one way every service opens its buckets. A bucket created here has at
    least the events stream's replicas (1 on one server, 3 in a cluster): a lease or a token
    must survive what the record survives."""
    if (kv := await existing_bucket(js, config.bucket)) is not None:
        return kv
    try:
        record = (await js.stream_info(subjects.events_stream)).config.num_replicas or 1
    except NotFoundError:
        record = 1
    config.replicas = max(config.replicas or 1, record)
    return await js.create_key_value(config)


async def system_bucket(
    js: JetStreamContext, subjects: Subjects, *, replicas: int = 1
) -> KeyValue:
    """The run-time settings bucket (created when missing)."""
    return await open_bucket(js, subjects, api.KeyValueConfig(
        bucket=subjects.system_bucket, description="Touchstone run-time settings", history=5,
        storage=api.StorageType.FILE, replicas=replicas,
    ))


@contextlib.asynccontextmanager
async def ordered_feed(
    js: JetStreamContext, stream: str, subject: str, *, start_seq: int = 1, held: int = 0,
) -> AsyncIterator[asyncio.Queue[Msg]]:
    """The messages of ``stream`` on ``subject`` from ``start_seq`` on, in order, into a queue
    (one ordered consumer: nats-py recreates it from the next sequence after a gap, a reconnect
    or a leader change). ``held`` bounds the queue (0: unbounded), which slows the consumer
    when the reader lags. The consumer is gone when the block ends."""
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=held)

    async def enqueue(msg: Msg) -> None:
        await queue.put(msg)

    policy = (api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL) if start_seq <= 1 else
              api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq))
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, cb=enqueue, config=policy)
    try:
        yield queue
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def stream_messages(js: JetStreamContext, stream: str, subject: str, last_seq: int,
                          *, timeout: float = 30.0) -> AsyncIterator[Msg]:
    """Every message of ``stream`` on ``subject`` up to ``last_seq``, in order (at most a
    thousand held at once). Ends early when nothing is pending (messages that expired
    meanwhile, as dead letters do); ``TimeoutError`` when the stream stops answering."""
    if last_seq == 0:
        return
    info = await js.stream_info(stream)
    if info.state.messages == 0 or info.state.first_seq > last_seq:
        return
    async with ordered_feed(js, stream, subject, held=1000) as queue:
        while True:
            msg = await asyncio.wait_for(queue.get(), timeout=timeout)
            seq = msg.metadata.sequence.stream
            if seq > last_seq:
                return
            yield msg
            if seq == last_seq or msg.metadata.num_pending == 0:
                return
