"""A feature set's ``requirements.txt``: the rules both platforms apply before installing it.

Only plain requirement lines are accepted (``name[extras] <specifiers> ; markers``): no pip
options (``-r``, ``-e``, ``--index-url``, ``--no-binary``), no URLs, paths or line
continuations. Installs are wheels only (``--only-binary=:all:``), so no package's build code
ever runs. A failed install is permanent unless pip could not reach its index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REQUIREMENTS_FILE = "requirements.txt"

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


def unreachable_index(output: Iterable[str]) -> bool:
    """Whether pip's output says it could not reach its index (worth retrying elsewhere)."""
    return any(marker in line for line in output for marker in _NETWORK)
