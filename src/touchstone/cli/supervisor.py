"""``touchstone up``: the embedded nats-server plus every service as supervised children.

Each child's output is printed with its name in front. A child that exits is restarted with a
growing delay; Ctrl-C (or SIGTERM) stops the children, then the broker, and keeps all data.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from touchstone.shared.instance import InstanceConflict, InstanceKind, init_instance
from touchstone.shared.jetstream import LogLimits, connect, provision, system_bucket
from touchstone.shared.natsserver import NatsServer, free_port
from touchstone.shared.settings import Settings
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import Server, SystemSettings, read_system, write_system

from touchstone.cli.credentials import OPERATOR, agent_user, embedded_users, service_user

LOCAL_AGENT = "local"

# (name, module) in start order; a service whose module has no __main__ yet is skipped
SERVICES: tuple[tuple[str, str], ...] = (
    ("submission", "touchstone.submission"),
    ("scheduler", "touchstone.scheduler"),
    ("onprem-provider", "touchstone.onprem_provider"),
    ("runpod-provider", "touchstone.runpod_provider"),
    ("results", "touchstone.results"),
    ("agent", "touchstone.agent"),
)

COLORS = ("36", "35", "33", "32", "34", "31", "96", "95")


def available_services() -> list[tuple[str, str]]:
    found = []
    for name, module in SERVICES:
        try:
            if importlib.util.find_spec(f"{module}.__main__") is not None:
                found.append((name, module))
        except ModuleNotFoundError:
            continue
    return found


@dataclass
class Child:
    name: str
    module: str
    color: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)


def _say(name: str, color: str, line: str) -> None:
    prefix = f"\x1b[{color}m{name:>16}\x1b[0m | " if sys.stdout.isatty() else f"{name:>16} | "
    sys.stdout.write(prefix + line.rstrip("\n") + "\n")
    sys.stdout.flush()


class Supervisor:
    def __init__(
        self, data_dir: Path, *, namespace: str, nats_port: int, env: dict[str, str], local_slots: int = 2,
        runpod_demo: bool = False, instance: InstanceKind | None = None,
    ) -> None:
        self.instance = instance
        self.local_slots = local_slots
        self.runpod_demo = runpod_demo
        self.data_dir = data_dir.resolve()
        self.namespace = namespace
        services = [name for name, _ in available_services() if name != "agent"]
        self.users = embedded_users(self.data_dir, namespace, services, [LOCAL_AGENT])
        self.nats = NatsServer(self.data_dir / "nats", port=nats_port, server_name="touchstone-embedded",
                               extra_config=self.users.config, env=self.users.server_env)
        for inherited in ("TOUCHSTONE_NATS_USER", "TOUCHSTONE_NATS_PASSWORD", "TOUCHSTONE_NATS_PASSWORD_FILE",
                          "TOUCHSTONE_NATS_CREDENTIALS_FILE"):
            env.pop(inherited, None)
        self.env = env
        self.children: list[Child] = []
        self.stop = asyncio.Event()

    async def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.nats.start()
        _say("nats", "1", f"nats-server on {self.nats.url} (store {self.nats.data_dir / 'jetstream'})")
        _say("nats", "1", f"users: {', '.join(self.users.users)} (passwords in {self.users.folder}, 0600)")
        nc = await connect(self.nats.url, "touchstone-up", user=OPERATOR, password=self.users.password(OPERATOR))
        js = nc.jetstream()
        subjects = Subjects(self.namespace)
        for line in await provision(js, subjects, logs=LogLimits.of(Settings())):
            _say("nats", "1", line)
        kv = await system_bucket(js, subjects)
        settings, revision = await read_system(kv)
        if revision == 0:
            settings = SystemSettings(servers=[Server(name=LOCAL_AGENT, num_slots=self.local_slots)],
                                      runpod_max_running_tasks=2 if self.runpod_demo else 0)
            await write_system(kv, settings, revision=0)
            _say("up", "1", f"declared the local agent {LOCAL_AGENT!r} with {self.local_slots} slots")
        if self.instance is not None:
            try:
                for line in (await init_instance(kv, self.namespace, self.instance))[1]:
                    _say("up", "1", line)
            except InstanceConflict as e:
                _say("up", "1", f"not started: {e}")
                await nc.close()
                self.nats.stop()
                return 1
        await nc.close()
        self._write_state()
        self.env["TOUCHSTONE_NATS_URL"] = self.nats.url

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        services = available_services()
        if not services:
            _say("up", "1", "no services are installed yet; running the broker only")
        self.children = [Child(n, m, COLORS[i % len(COLORS)], env=self._child_env(n))
                         for i, (n, m) in enumerate(services)]
        if self.runpod_demo:
            self._add_runpod_demo()
        watchers = [asyncio.create_task(self._keep_running(c)) for c in self.children]
        _say("up", "1", f"Touchstone is up (namespace {self.namespace}); Ctrl-C stops it")
        await self.stop.wait()
        _say("up", "1", "stopping")
        await asyncio.gather(*(self._terminate(c) for c in self.children))
        for w in watchers:
            w.cancel()
        self.nats.stop()
        (self.data_dir / "up.json").unlink(missing_ok=True)
        _say("up", "1", "stopped; data kept in " + str(self.data_dir))
        return 0

    def _child_env(self, name: str) -> dict[str, str]:
        """Settings only one child gets (names that mean something else to the others): the
        local agent is the declared server, with as many (CPU) slots as declared. Each child
        connects as its own NATS user."""
        if name != "agent":
            return self.users.child_env(service_user(name))
        return {"TOUCHSTONE_HOST": LOCAL_AGENT, "TOUCHSTONE_NUM_SLOTS": str(self.local_slots),
                "TOUCHSTONE_DATA_DIR": self.agent_data_dir(),
                **self.users.child_env(agent_user(LOCAL_AGENT))}

    def agent_data_dir(self) -> str:
        """The local agent's data directory: a host of its own, sharing no folder with the
        control plane (its outputs reach the store through the API's /objects with the grant
        of each launch). ``TOUCHSTONE_AGENT_DATA_DIR`` puts it elsewhere."""
        return self.env.get("TOUCHSTONE_AGENT_DATA_DIR") or str(self.data_dir / "hosts" / LOCAL_AGENT)

    def _env_of(self, child: Child) -> dict[str, str]:
        """The child's environment; the agent gets no cloud credentials (its upload grants
        come with its launches)."""
        env = {**self.env, **child.env}
        if child.name == "agent":
            env = {k: v for k, v in env.items() if not k.startswith(("AWS_", "TOUCHSTONE_S3_", "TOUCHSTONE_UPLOAD_"))}
        return env

    def _add_runpod_demo(self) -> None:
        """The faithful local RunPod as one more child, and the RunPod provider pointed at it."""
        port = free_port()
        key = "demo-" + secrets.token_urlsafe(16)
        root = self.data_dir / "runpod-demo"
        self.children.append(Child(
            "runpod-demo", "touchstone.runpod_local", "93",
            args=("--port", str(port), "--api-key", key, "--root", str(root), "--pull-s", "2", "--pods", "auto"),
            # the demo's pods run commands on this machine: their python3 is this environment's
            env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        ))
        for child in self.children:
            if child.name == "runpod-provider":
                child.env.update({
                    "TOUCHSTONE_RUNPOD_API_KEY": key,
                    "TOUCHSTONE_RUNPOD_BASE_URL": f"http://127.0.0.1:{port}/v2",
                    "TOUCHSTONE_RUNPOD_GRAPHQL_URL": f"http://127.0.0.1:{port}/graphql",
                })
        _say("up", "1", f"RunPod demo: a local fake RunPod on 127.0.0.1:{port}; no real account is used")

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "nats_url": self.nats.url, "namespace": self.namespace,
                 "monitor_url": self.nats.monitor_url}
        (self.data_dir / "up.json").write_text(json.dumps(state, indent=2))

    async def _keep_running(self, child: Child) -> None:
        delay = 0.5
        while not self.stop.is_set():
            child.started_at = time.monotonic()
            child.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", child.module, *child.args,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=self._env_of(child), start_new_session=True,
            )
            assert child.process.stdout is not None
            async for raw in child.process.stdout:
                _say(child.name, child.color, raw.decode(errors="replace"))
            code = await child.process.wait()
            if self.stop.is_set():
                return
            child.restarts += 1
            if time.monotonic() - child.started_at > 30:
                delay = 0.5
            _say(child.name, "31", f"exited with {code}; restarting in {delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            delay = min(delay * 2, 30.0)

    async def _terminate(self, child: Child) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
