"""Reading a task's work directory, which is hostile ground (DESIGN §5).

Untrusted code can write the work directory while the platform reads it, so every read here:

* walks the path one component at a time from a directory file descriptor, with
  ``O_NOFOLLOW``: a symlink anywhere on the way (``out`` pointing at another attempt's folder,
  ``out/models/x`` at a host file) is refused, never followed;
* never opens a non-regular file: the last component is opened with ``O_PATH`` (which opens
  nothing), checked with ``fstat`` to be a regular file, and only then reopened for reading
  through ``/proc/self/fd`` (the same inode, whatever the name points at by then): a FIFO
  cannot block the reader, a device is never opened;
* is bounded in bytes (a file that grows past its cap while it is read is refused, a 10 GB
  sparse file costs one ``fstat``), and tails are bounded in line length.

Whatever the platform keeps for itself (state, partial files, the console it streams) lives
outside the work directory; ``write_private`` writes there without following a planted link.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

CHUNK = 1 << 20
TAIL_BYTES = 256 * 1024
MAX_LINE_CHARS = 2_000
MAX_JSON_BYTES = 1_000_000

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH = getattr(os, "O_PATH", 0)


@functools.cache
def _proc_fd() -> bool:
    """Reopening an ``O_PATH`` descriptor needs ``/proc``; without it, the fallback below."""
    return bool(_O_PATH) and os.path.isdir("/proc/self/fd")


class Refused(Exception):
    """The path is missing, leaves its base, passes a link or is not a regular file."""


def _parts(rel: str | PurePosixPath) -> tuple[str, ...]:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise Refused(f"not a plain relative path: {str(rel)!r}")
    return parts


def open_dir(base: Path, rel: str | PurePosixPath | None = None) -> int:
    """A directory fd for ``base/rel``; ``base`` itself must not be a link (its parents are the
    platform's own), no component of ``rel`` may be one."""
    try:
        fd = os.open(base, _DIR_FLAGS)
    except OSError as e:
        raise Refused(f"{base}: {e.strerror}") from e
    for part in _parts(rel) if rel else ():
        try:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            os.close(fd)
            raise Refused(f"{rel}: {e.strerror} at {part!r}") from e
        os.close(fd)
        fd = nxt
    return fd


def open_regular_at(dir_fd: int, name: str) -> int:
    """A read fd of the regular file ``name`` in ``dir_fd``, opened without following a link
    and without opening anything that is not a regular file."""
    if "/" in name or name in ("", ".", ".."):
        raise Refused(f"not a file name: {name!r}")
    if not _proc_fd():
        return _open_nonblocking(dir_fd, name)
    try:
        handle = os.open(name, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        raise Refused(f"{name}: {e.strerror}") from e
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise Refused(f"{name}: not a regular file")
        try:
            return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            raise Refused(f"{name}: {e.strerror}") from e
    finally:
        os.close(handle)


def _open_nonblocking(dir_fd: int, name: str) -> int:
    """Without ``O_PATH`` and ``/proc`` (not Linux): ``O_NONBLOCK`` keeps a FIFO from blocking
    and ``fstat`` refuses what is not a regular file (a device is opened, then closed)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        raise Refused(f"{name}: {e.strerror}") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"{name}: not a regular file")
    return fd


def open_regular(base: Path, rel: str | PurePosixPath) -> int:
    """A read fd of the regular file ``base/rel`` (see the module docstring)."""
    parts = _parts(rel)
    folder = open_dir(base, PurePosixPath(*parts[:-1])) if len(parts) > 1 else open_dir(base)
    try:
        return open_regular_at(folder, parts[-1])
    finally:
        os.close(folder)


def read_bounded(base: Path, rel: str | PurePosixPath, limit: int, offset: int = 0) -> bytes:
    """At most ``limit`` bytes of ``base/rel`` from ``offset``."""
    fd = open_regular(base, rel)
    try:
        return os.pread(fd, limit, offset) if limit > 0 else b""
    finally:
        os.close(fd)


def read_json(base: Path, rel: str | PurePosixPath, limit: int = MAX_JSON_BYTES) -> dict[str, Any] | None:
    """A JSON object from a regular file of at most ``limit`` bytes; none otherwise."""
    try:
        data = read_bounded(base, rel, limit + 1)
    except Refused:
        return None
    if len(data) > limit:
        return None
    try:
        body = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def tail_lines(base: Path, rel: str | PurePosixPath, n: int, max_chars: int = MAX_LINE_CHARS) -> tuple[str, ...]:
    """The last ``n`` lines of a regular file, each cut to ``max_chars``; reads at most
    ``TAIL_BYTES`` whatever the file's size or line length."""
    try:
        fd = open_regular(base, rel)
    except Refused:
        return ()
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, TAIL_BYTES, start)
    finally:
        os.close(fd)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines[0] = "…" + lines[0][-max_chars:]
    return tuple(deque((cut_line(line, max_chars) for line in lines), maxlen=n))


def cut_line(line: str, max_chars: int = MAX_LINE_CHARS) -> str:
    if len(line) <= max_chars:
        return line
    return f"{line[:max_chars]} …[{len(line) - max_chars} chars cut]"


@dataclass
class Budget:
    """What may still be copied out of one attempt."""

    total_bytes: int
    file_bytes: int
    files: int = 10_000
    skipped: list[str] = field(default_factory=list)
    """Why files were left behind, one line each (for the attempt's console)."""

    def skip(self, rel: str, why: str) -> None:
        if len(self.skipped) < 100:
            self.skipped.append(f"{rel}: {why}")


def copy_out(fd: int, dest: Path, limit: int, *, head: bool = False) -> int | None:
    """Copy the open file to ``dest`` (the platform's own folder), at most ``limit`` bytes;
    None (and nothing left at ``dest``) when the file holds more, unless ``head``: then its
    first ``limit`` bytes are kept."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    copied = 0
    try:
        offset = 0
        while True:
            data = os.pread(fd, min(CHUNK, limit + (0 if head else 1) - copied), offset)
            if not data:
                break
            offset += len(data)
            copied += len(data)
            if copied > limit:
                break
            os.write(out, data)
    finally:
        os.close(out)
    if copied > limit:
        dest.unlink(missing_ok=True)
        return None
    return copied


def copy_file(base: Path, rel: str | PurePosixPath, dest: Path, budget: Budget) -> bool:
    """One regular file of the work directory into ``dest``, within ``budget``."""
    try:
        fd = open_regular(base, rel)
    except Refused as e:
        if not isinstance(e.__cause__, FileNotFoundError):
            budget.skip(str(rel), str(e))
        return False
    try:
        return _copy_fd(fd, str(rel), dest, budget)
    finally:
        os.close(fd)


def _copy_fd(fd: int, rel: str, dest: Path, budget: Budget) -> bool:
    size = os.fstat(fd).st_size
    limit = min(budget.file_bytes, budget.total_bytes)
    if budget.files <= 0:
        budget.skip(rel, "too many files")
        return False
    if size > limit:
        budget.skip(rel, f"{size} bytes, over the {limit}-byte cap")
        return False
    copied = copy_out(fd, dest, limit)
    if copied is None:
        budget.skip(rel, f"grew past the {limit}-byte cap while it was copied")
        return False
    budget.total_bytes -= copied
    budget.files -= 1
    return True


def copy_tree(base: Path, rel: str, dest: Path, budget: Budget, max_depth: int = 16) -> list[str]:
    """The regular files under ``base/rel`` into ``dest`` (same relative paths), no link
    followed, no special file opened; returns the relative paths copied, sorted."""
    try:
        fd = open_dir(base, rel)
    except Refused as e:
        if not isinstance(e.__cause__, FileNotFoundError):
            budget.skip(rel, str(e))
        return []
    try:
        return sorted(_copy_dir(fd, PurePosixPath(), dest, budget, max_depth))
    finally:
        os.close(fd)


def _copy_dir(fd: int, at: PurePosixPath, dest: Path, budget: Budget, depth: int) -> Iterator[str]:
    with os.scandir(fd) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        rel = at / name
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            if depth <= 0:
                budget.skip(str(rel), "too deep")
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                yield from _copy_dir(sub, rel, dest / name, budget, depth - 1)
            finally:
                os.close(sub)
        elif stat.S_ISREG(mode):
            try:
                file_fd = open_regular_at(fd, name)
            except Refused as e:
                budget.skip(str(rel), str(e))
                continue
            try:
                if _copy_fd(file_fd, str(rel), dest / name, budget):
                    yield rel.as_posix()
            finally:
                os.close(file_fd)
        else:
            budget.skip(str(rel), "not a regular file" if not stat.S_ISLNK(mode) else "a symlink")


def write_private(path: Path, data: bytes) -> None:
    """Write a file of the platform's own atomically, never through a link planted at its
    name or its partial file."""
    partial = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
