"""The host's GPUs, from ``nvidia-smi`` (a host without it has none and offers CPU slots)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil

from touchstone.shared.agents import GpuStatus

QUERY = "index,name,memory.total,memory.used,utilization.gpu"


def parse_nvidia_smi(text: str) -> list[GpuStatus]:
    """Rows of ``nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 5 or not cells[0].isdigit():
            continue
        gpus.append(
            GpuStatus(
                index=int(cells[0]),
                name=cells[1],
                memory_total_mb=_number(cells[2], int),
                memory_used_mb=_number(cells[3], int),
                utilization_pct=_number(cells[4], float),
            )
        )
    return gpus


def _number(cell: str, kind: type[int] | type[float]) -> int | float | None:
    try:
        return kind(float(cell)) if kind is int else float(cell)
    except ValueError:
        return None


async def query_gpus(nvidia_smi: str, timeout_s: float = 5.0) -> list[GpuStatus] | None:
    """The GPUs ``nvidia-smi`` lists; none when it is missing or fails."""
    binary = shutil.which(nvidia_smi)
    if binary is None:
        return None
    proc = await asyncio.create_subprocess_exec(
        binary, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return None
    if proc.returncode != 0:
        return None
    return parse_nvidia_smi(out.decode(errors="replace"))
