"""NATS users of the embedded broker (``touchstone up``): nobody connects without one.

One user per service, one for the local agent, one for the operator (``touchstone up`` itself,
``touchstone status``, ``touchstone nats init``). Passwords are generated once and kept in
``{data_dir}/credentials/{user}.password`` (folder 0700, files 0600); the nats-server reads
them from its environment, so its config file holds no secret, and each child gets only the
path of its own file (``TOUCHSTONE_NATS_PASSWORD_FILE``), never a password in its environment.

Permissions follow the production shapes in ``deploy/nats/``: the local agent's user is the
one ``deploy/nats/agent-user.py`` prints (its own host's subjects, console lines, status
pings; no JetStream, no KV); the services' users may use their namespace, JetStream and the
KV buckets, as ``touchstone-services`` may in production, but not the system account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from touchstone.shared.natsserver import nats_password
from touchstone.shared.subjects import Subjects

OPERATOR = "touchstone-operator"
CREDENTIALS_DIR = "credentials"


def service_user(service: str) -> str:
    return f"touchstone-{service}"


def agent_user(host: str) -> str:
    return f"agent-{host}"


def _agent_permissions(ns: str, host: str) -> str:
    subjects = Subjects(ns)
    reports, commands = subjects.agent_reports(host), subjects.agent_commands(host)
    return f"""permissions: {{
      publish: {{ allow: ["{reports}", "{subjects.all_logs}"], deny: ["$JS.>", "$SYS.>", "$KV.>", "$O.>"] }}
      subscribe: {{ allow: ["{commands}", "{subjects.status_ping}"], deny: ["$JS.>", "$SYS.>", "_INBOX.>"] }}
      allow_responses: {{ max: 1, expires: "1m" }}
    }}"""


_SERVICE_PERMISSIONS = """permissions: {
      publish: { allow: [">"], deny: ["$SYS.>"] }
      subscribe: { allow: [">"], deny: ["$SYS.>"] }
    }"""


@dataclass(frozen=True)
class EmbeddedUsers:
    folder: Path
    users: tuple[str, ...]
    config: str
    """The ``authorization`` block of the nats-server config (passwords as ``$VARIABLES``)."""
    server_env: dict[str, str]
    """The passwords, for the nats-server's environment only."""

    def password_file(self, user: str) -> Path:
        return self.folder / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def child_env(self, user: str) -> dict[str, str]:
        """What one child needs to connect as ``user``: the name and the path of its file."""
        return {"TOUCHSTONE_NATS_USER": user, "TOUCHSTONE_NATS_PASSWORD_FILE": str(self.password_file(user))}


def _password(folder: Path, user: str) -> str:
    file = folder / f"{user}.password"
    if file.exists():
        file.chmod(0o600)
        return file.read_text().strip()
    secret = nats_password(32)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def embedded_users(data_dir: Path, namespace: str, services: list[str], agent_hosts: list[str]) -> EmbeddedUsers:
    """The users of an embedded broker, their passwords created where missing."""
    folder = data_dir / CREDENTIALS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    entries: list[str] = []
    env: dict[str, str] = {}
    users: list[str] = []
    named = [(OPERATOR, _SERVICE_PERMISSIONS)]
    named += [(service_user(s), _SERVICE_PERMISSIONS) for s in services]
    named += [(agent_user(h), _agent_permissions(namespace, h)) for h in agent_hosts]
    for i, (user, permissions) in enumerate(named):
        variable = f"TOUCHSTONE_EMBEDDED_NATS_PASSWORD_{i}"
        env[variable] = _password(folder, user)
        users.append(user)
        entries.append(f'    {{ user: "{user}", password: ${variable}, {permissions} }}')
    config = "authorization {\n  users: [\n" + "\n".join(entries) + "\n  ]\n}\n"
    return EmbeddedUsers(folder, tuple(users), config, env)
