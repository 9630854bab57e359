"""Console lines on their way to the logs stream, bounded by construction: every line at most
``MAX_LINE_BYTES`` (longer ones are cut and say by how much), every message at most
``MAX_MESSAGE_BYTES`` (under the logs stream's ``max_msg_size``, far under the broker's
payload limit). A task that prints a megabyte without a newline costs one short line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_LINE_BYTES = 4096
MAX_MESSAGE_BYTES = 64 * 1024


def bound_line(line: str, limit: int = MAX_LINE_BYTES) -> str:
    raw = line.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return line
    marker = f" …[{len(raw) - limit} bytes cut]"
    return raw[: limit - len(marker.encode())].decode("utf-8", errors="ignore") + marker


def messages(lines: Iterable[str], *, max_line: int = MAX_LINE_BYTES,
             max_message: int = MAX_MESSAGE_BYTES) -> Iterator[bytes]:
    """``lines`` as newline-joined message bodies, each at most ``max_message`` bytes."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        raw = bound_line(line, max_line).encode("utf-8", errors="replace")
        if batch and size + 1 + len(raw) > max_message:
            yield b"\n".join(batch)
            batch, size = [], 0
        batch.append(raw)
        size += len(raw) + (1 if len(batch) > 1 else 0)
    if batch:
        yield b"\n".join(batch)


CUT_MARKER = "bytes cut]"


@dataclass(frozen=True)
class ConsoleLines:
    lines: list[str]
    cutting: bool | None = None
    """The new "inside an overlong line" state; none when it did not change."""


def split_console(chunk: bytes, *, final: bool, cutting: bool, limit: int,
                  max_line: int = MAX_LINE_BYTES) -> tuple[int, ConsoleLines]:
    """Complete lines of one console ``chunk`` read with ``limit`` bytes from the last offset:
    (bytes consumed, the lines). A trailing partial line waits for its newline unless the
    console is ``final``; every line is cut to ``max_line`` bytes; a line that does not fit a
    whole chunk is handed on once, cut, and ``cutting`` (kept by the caller) skips the rest of it up to its newline,
    so that a gigabyte without a newline costs one line and one chunk of memory."""
    full = len(chunk) >= limit
    pos = 0
    state: bool | None = None
    if cutting:
        newline = chunk.find(b"\n")
        if newline < 0:
            return len(chunk), ConsoleLines([], None if full or not final else False)
        pos, state = newline + 1, False
    rest = chunk[pos:]
    last = rest.rfind(b"\n")
    complete = rest[: last + 1]
    consumed = pos + len(complete)
    lines = [bound_line(line, max_line) for line in complete.decode("utf-8", errors="replace").splitlines()]
    tail = rest[last + 1 :]
    if tail and not complete and full:  # a line longer than a chunk: cut it, skip its rest
        keep = max(0, max_line - 64)
        text = tail[:keep].decode("utf-8", errors="ignore")
        lines.append(f"{text} …[at least {len(tail) - keep} more {CUT_MARKER}")
        consumed += len(tail)
        state = True
    elif tail and final and not full:
        lines.append(bound_line(tail.decode("utf-8", errors="replace"), max_line))
        consumed += len(tail)
    return consumed, ConsoleLines(lines, state)
