"""Operator commands: ``touchstone up``, ``touchstone status``, ``touchstone nats init``."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table
from touchstone.shared.instance import InstanceConflict, InstanceKind, init_instance
from touchstone.shared.jetstream import LogLimits, connect_with, provision, system_bucket
from touchstone.shared.settings import Settings
from touchstone.shared.subjects import Subjects

S = TypeVar("S", bound=Settings)
console = Console()
nats_app = typer.Typer(help="NATS JetStream administration.", no_args_is_help=True)


def _settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _nats_url(settings: Settings) -> str:
    """The URL of a running ``touchstone up`` in this data directory, else the setting."""
    state = settings.data_dir / "up.json"
    if "TOUCHSTONE_NATS_URL" not in os.environ and state.exists():
        return str(json.loads(state.read_text())["nats_url"])
    return settings.nats_url


def _embedded(settings: S) -> S:
    """``settings`` pointed at the ``touchstone up`` of its data directory (its URL, and the
    operator's NATS user from the data directory) unless NATS settings say otherwise."""
    from touchstone.cli.credentials import CREDENTIALS_DIR, OPERATOR

    update: dict[str, object] = {"nats_url": _nats_url(settings)}
    password = settings.data_dir / CREDENTIALS_DIR / f"{OPERATOR}.password"
    if not settings.nats_user and password.exists():
        update.update(nats_user=OPERATOR, nats_password_file=password)
    return settings.model_copy(update=update)


def up(
    data_dir: Annotated[Path | None, typer.Option(help="Where data lives (default .touchstone).")] = None,
    nats_port: Annotated[int, typer.Option(help="Port of the embedded nats-server (0: any free port).")] = 4222,
    api_port: Annotated[int, typer.Option(help="Port of the HTTP API.")] = 8080,
    runpod_demo: Annotated[bool, typer.Option(help="Also run a local fake RunPod as a demo cloud platform.")] = False,
    instance: Annotated[InstanceKind | None, typer.Option(
        help="Record the instance's kind on first start (dev starts paused); see `nats init`.")] = None,
) -> None:
    """Run Touchstone on this machine with embedded defaults (Ctrl-C stops it; data is kept)."""
    from touchstone.cli.supervisor import Supervisor

    settings = _settings(data_dir)
    data = settings.data_dir.resolve()
    env = dict(os.environ)
    env.update({
        "TOUCHSTONE_NAMESPACE": settings.namespace,
        "TOUCHSTONE_DATA_DIR": str(data),
        "TOUCHSTONE_PORT": str(api_port),
        "TOUCHSTONE_ALLOW_LOCAL_SOURCES": env.get("TOUCHSTONE_ALLOW_LOCAL_SOURCES", "true"),
        "PYTHONUNBUFFERED": "1",
    })
    # MLflow's own file store refuses new data (maintenance mode since MLflow 3), so the
    # embedded experiment store is its SQLite database in the data directory; "" turns it off
    env.setdefault("TOUCHSTONE_MLFLOW_TRACKING_URI", f"sqlite:///{data / 'mlflow.db'}")
    # producers (the agent, the RunPod provider) upload outputs to the embedded store through the API
    env.setdefault("TOUCHSTONE_OBJECTS_URL", f"http://127.0.0.1:{api_port}/objects")
    env["TOUCHSTONE_ADMIN_TOKEN"] = _admin_token(data)
    supervisor = Supervisor(data, namespace=settings.namespace, nats_port=nats_port, env=env,
                            runpod_demo=runpod_demo, instance=instance)
    raise typer.Exit(asyncio.run(supervisor.run()))


def _admin_token(data: Path) -> str:
    """The bootstrap admin token (``TOUCHSTONE_ADMIN_TOKEN``, else the one kept in the data
    directory, else a new one), by the submission service's own rule."""
    from touchstone.submission.auth import bootstrap_admin_token
    from touchstone.submission.config import SubmissionSettings

    settings = SubmissionSettings(data_dir=data)
    token, generated = bootstrap_admin_token(settings)
    if generated:
        console.print(f"[bold]Admin token[/bold] (also in {settings.admin_token_file}): {token}")
    return token


async def _status(settings: Settings) -> tuple[dict[str, object], list[dict[str, object]]]:
    subjects = Subjects(settings.namespace)
    url = settings.nats_url
    nc = await connect_with(settings, "touchstone-status", connect_timeout=2.0, reconnect=False)
    try:
        js = nc.jetstream()
        streams = {}
        for name in (subjects.events_stream, subjects.commands_stream, subjects.dead_letter_stream):
            info = await js.stream_info(name)
            streams[name] = info.state.messages
        replies: list[dict[str, object]] = []
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.status_ping, b"", reply=inbox)
        try:
            while True:
                msg = await sub.next_msg(timeout=0.7)
                replies.append(json.loads(msg.data))
        except Exception:
            pass
        return {"nats": url, "jetstream": "ok", "streams": streams, **await _instance(js, subjects)}, replies
    finally:
        await nc.close()


async def _instance(js: JetStreamContext, subjects: Subjects) -> dict[str, object]:
    """The instance's kind and whether its lifecycle is paused (``touchstone status``)."""
    from touchstone.shared.instance import paused_reasons, read_instance
    from touchstone.shared.system import read_system

    try:
        kv = await js.key_value(subjects.system_bucket)
    except Exception:  # not provisioned yet: nothing to say
        return {"instance": None, "paused": False, "paused_reasons": []}
    instance = await read_instance(kv)
    settings, _ = await read_system(kv)
    return {
        "instance": {"namespace": subjects.ns, "kind": str(instance.kind)} if instance else None,
        "paused": settings.scheduler_paused,
        "paused_reasons": paused_reasons(settings),
    }


def status(
    data_dir: Annotated[Path | None, typer.Option(help="Data directory of `touchstone up`.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Report whether NATS and each running service are healthy."""
    settings = _embedded(_settings(data_dir))
    url = settings.nats_url
    try:
        broker, services = asyncio.run(_status(settings))
    except Exception as e:
        if as_json:
            print(json.dumps({"nats": url, "healthy": False, "error": str(e) or type(e).__name__}))
        else:
            console.print(f"[red]NATS at {url} is not reachable[/red]: {e or type(e).__name__}")
        raise typer.Exit(1) from None
    healthy = all(bool(s.get("healthy")) for s in services)
    if as_json:
        print(json.dumps({**broker, "services": services, "healthy": healthy}, indent=2))
        raise typer.Exit(0 if healthy else 1)
    table = Table(title=f"Touchstone at {url}")
    table.add_column("part")
    table.add_column("state")
    table.add_column("detail")
    table.add_row("nats", "[green]healthy[/green]",
                  ", ".join(f"{k}: {v} msgs" for k, v in broker["streams"].items()))  # type: ignore[attr-defined]
    instance = broker.get("instance")
    kind = instance["kind"] if isinstance(instance, dict) else "unrecorded"
    reasons = broker.get("paused_reasons") or []
    table.add_row("instance", f"{kind} ({settings.namespace})",
                  "[yellow]PAUSED[/yellow]: " + "; ".join(reasons) if broker.get("paused")  # type: ignore[arg-type]
                  else "running" + (f" ({'; '.join(reasons)})" if reasons else ""))  # type: ignore[arg-type]
    for s in sorted(services, key=lambda s: str(s["service"])):
        state = "[green]healthy[/green]" if s.get("healthy") else "[red]unhealthy[/red]"
        table.add_row(str(s["service"]), state, f"pid {s['pid']}, up {s['uptime_s']}s, {s['detail']}")
    if not services:
        table.add_row("services", "[yellow]none answering[/yellow]", "")
    console.print(table)
    raise typer.Exit(0 if healthy else 1)


@nats_app.command("init")
def nats_init(
    url: Annotated[str | None, typer.Option(help="NATS URL (default: the setting).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Namespace to provision.")] = None,
    replicas: Annotated[int, typer.Option(help="Stream replicas (3 in a cluster).")] = 1,
    instance: Annotated[InstanceKind | None, typer.Option(
        help="The instance's kind, recorded once: a dev instance starts paused (scheduler paused, "
             "RunPod cap 0); default: the recorded kind, else prod.")] = None,
) -> None:
    """Create or update the streams, work queues and settings bucket, and record the
    instance's kind. Safe to repeat."""
    settings = _embedded(Settings())
    if url:
        settings = settings.model_copy(update={"nats_url": url})

    async def run() -> list[str]:
        nc = await connect_with(settings, "touchstone-nats-init")
        try:
            js, subjects = nc.jetstream(), Subjects(namespace or settings.namespace)
            done = await provision(js, subjects, replicas=replicas, logs=LogLimits.of(settings))
            kv = await system_bucket(js, subjects, replicas=replicas)
            return done + (await init_instance(kv, subjects.ns, instance))[1]
        finally:
            await nc.close()

    try:
        lines = asyncio.run(run())
    except InstanceConflict as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    for line in lines:
        console.print(line)


debug_app = typer.Typer(help="Look inside one task's scheduling.", no_args_is_help=True)


@debug_app.command("step")
def debug_step(
    container_name: Annotated[str, typer.Argument(help="touchstone-{submission}-{task}-{attempt}")],
    data_dir: Annotated[Path | None, typer.Option(help="Data directory of `touchstone up`.")] = None,
    apply: Annotated[bool, typer.Option(help="Also carry the decision out.")] = False,
) -> None:
    """Run one scheduling decision for one task and print what it decided and why."""
    from touchstone.scheduler.config import SchedulerSettings
    from touchstone.scheduler.debug import debug_step as explain

    settings = SchedulerSettings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    settings = _embedded(settings)
    console.print(explain(container_name, settings, apply=apply))
