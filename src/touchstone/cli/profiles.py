"""Where the ``touchstone`` command finds its server and token: profiles in one config file.

The file is ``$TOUCHSTONE_CONFIG``, else ``~/.config/touchstone/cli.toml``; ``touchstone
login`` writes it (mode 0600) and nothing else does::

    # the default profile: top-level keys (the file format before profiles, still read)
    url = "https://touchstone.example"
    token = "tst_..."

    [profiles.staging]
    url = "https://touchstone-staging.example"
    token = "tst_..."

A verb picks the profile named by ``--profile`` (before the verb: ``touchstone --profile
staging list``) or ``TOUCHSTONE_PROFILE``, else the default one. ``--url``/``--token`` and
``TOUCHSTONE_URL``/``TOUCHSTONE_TOKEN`` override what the profile says.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

DEFAULT = "default"
PROFILE_ENV = "TOUCHSTONE_PROFILE"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def config_path() -> Path:
    return Path(os.environ.get("TOUCHSTONE_CONFIG", Path.home() / ".config" / "touchstone" / "cli.toml"))


def read_all() -> dict[str, Any]:
    try:
        return tomllib.loads(config_path().read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


_selected: str | None = None


def select(name: str | None) -> None:
    """The profile this invocation uses (the root ``--profile``; None: the environment's)."""
    global _selected
    _selected = name


def current_name() -> str:
    return _selected or os.environ.get(PROFILE_ENV) or DEFAULT


def profile(name: str | None = None) -> dict[str, str]:
    """The url and token of one profile (empty when the file or the profile is missing)."""
    name = name or current_name()
    data = read_all()
    if name == DEFAULT:
        return {k: v for k, v in data.items() if k in ("url", "token") and isinstance(v, str)}
    found = (data.get("profiles") or {}).get(name)
    return {k: v for k, v in found.items() if k in ("url", "token") and isinstance(v, str)} if isinstance(
        found, dict) else {}


def _toml(values: dict[str, str]) -> str:
    # JSON string escapes are TOML basic-string escapes (non-ASCII becomes \uXXXX)
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def save(name: str, url: str, token: str) -> Path:
    """Write one profile, keeping the others; the file is readable by its owner only."""
    if not NAME.match(name):
        raise ValueError(f"profile name {name!r}: letters, digits, - and _ only")
    data = read_all()
    default = {k: v for k, v in data.items() if k in ("url", "token") and isinstance(v, str)}
    others = {k: v for k, v in (data.get("profiles") or {}).items() if isinstance(v, dict) and NAME.match(k)}
    if name == DEFAULT:
        default = {"url": url, "token": token}
    else:
        others[name] = {"url": url, "token": token}
    text = "# touchstone CLI profiles, written by `touchstone login`\n" + _toml(default)
    for other, values in sorted(others.items()):
        text += f"\n[profiles.{other}]\n" + _toml({k: str(v) for k, v in values.items() if k in ("url", "token")})
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path
