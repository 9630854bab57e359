"""Paths as the console shows them."""

from __future__ import annotations

from pathlib import Path


def shown(path: Path | str) -> str:
    """``path`` relative to the working directory when it lies inside it (the task's work
    directory), so a log reads the same wherever that directory is; else as given."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(path)
