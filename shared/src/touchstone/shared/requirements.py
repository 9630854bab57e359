"""A feature set's ``requirements.txt``: the rules both platforms apply before installing it.

Only plain requirement lines are accepted (``name[extras] <specifiers> ; markers``): no pip
options (``-r``, ``-e``, ``--index-url``, ``--no-binary``), no URLs, paths or line
continuations. Installs are wheels only (``--only-binary=:all:``), so no package's build code
ever runs. A failed install is permanent unless pip could not reach its index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

REQUIREMENTS_FILE = "requirements.txt"
MAX_BYTES = 64 * 1024

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SPECIFIER = r"(?:===?|!=|~=|<=?|>=?)\s*[A-Za-z0-9.*+!_-]+"
_PLAIN = re.compile(
    rf"^{_NAME}\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"  # name[extras]
    rf"(?:{_SPECIFIER}\s*(?:,\s*{_SPECIFIER}\s*)*)?"  # specifiers
    r"(?:;[^@#\\]*)?$"  # markers
)
_NETWORK = ("NewConnectionError", "ConnectTimeoutError", "Read timed out", "Temporary failure in name resolution",
            "Connection refused", "Network is unreachable", "ProxyError", "SSLError")


class BadRequirements(ValueError):
    """``requirements.txt`` holds something other than plain requirement lines (permanent)."""


def plain_requirements(data: str | bytes) -> list[str]:
    """The requirement lines (comments and blank lines dropped); ``BadRequirements`` naming the
    first line that is not a plain requirement, or when the file is not UTF-8 text."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequirements("requirements.txt is not UTF-8 text") from None
    found = []
    for number, raw in enumerate(data.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-") or "://" in line or "@" in line or not _PLAIN.match(line):
            raise BadRequirements(
                f"requirements.txt line {number} is not a plain requirement (name[extras] versions ; markers): "
                f"{raw.strip()[:200]!r}"
            )
        found.append(line)
    return found


def read_file(file: Path, checkout: Path) -> bytes:
    """The bytes of a feature set's ``requirements.txt``: a regular file inside its checkout
    (no symlink out of it), at most ``MAX_BYTES``; ``BadRequirements`` otherwise."""
    if file.is_symlink() or not file.is_file() or not file.resolve().is_relative_to(checkout.resolve()):
        raise BadRequirements("requirements.txt must be a regular file of the feature set")
    data = file.read_bytes()
    if len(data) > MAX_BYTES:
        raise BadRequirements(f"requirements.txt is larger than {MAX_BYTES} bytes")
    return data


def unreachable_index(output: Iterable[str]) -> bool:
    """Whether pip's output says it could not reach its index (worth retrying elsewhere)."""
    return any(marker in line for line in output for marker in _NETWORK)
