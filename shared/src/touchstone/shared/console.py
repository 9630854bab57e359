"""Console lines on their way to the logs stream, bounded by construction: every line at most
``MAX_LINE_BYTES`` (longer ones are cut and say by how much), every message at most
``MAX_MESSAGE_BYTES`` (under the logs stream's ``max_msg_size``, far under the broker's
payload limit). A task that prints a megabyte without a newline costs one short line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
