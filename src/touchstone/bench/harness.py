"""What every benchmark shares: a broker to measure against, one percentile, one row shape and
one writer that records the machine and its load beside each figure.

A figure taken on a busy two-core machine is a floor, not a ceiling; the load average written
next to it says how busy. Percentiles are nearest-rank (the smallest sample with at least
``q`` of the samples at or below it), the same for every bench, so a p99 here is a p99 there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.natsserver import NatsServer
from touchstone.shared.subjects import Subjects


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], not {q}")
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def row(metric: str, value: float | int | str, unit: str, target: str | None = None,
        met: bool | None = None) -> dict[str, Any]:
    """One line of a bench's table; ``target`` and ``met`` together or not at all."""
    found: dict[str, Any] = {"metric": metric, "value": value, "unit": unit}
    if target is not None:
        found |= {"target": target, "met": bool(met)}
    return found


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version(),
            "platform": platform.platform()}


@dataclass
class Broker:
    """A real nats-server on a port of its own, a client and the bench's namespace, provisioned."""

    tmp: Path
    server: NatsServer
    nc: NATS
    js: JetStreamContext
    subjects: Subjects

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.asynccontextmanager
async def broker(namespace: str = "bench", *, provisioned: bool = True) -> AsyncIterator[Broker]:
    tmp = Path(tempfile.mkdtemp(prefix=f"touchstone-bench-{namespace}-"))
    server = NatsServer(tmp / "nats")
    server.start()
    nc = None
    try:
        nc = await connect(server.url, f"bench-{namespace}")
        js = nc.jetstream()
        subjects = Subjects(namespace)
        if provisioned:
            await provision(js, subjects)
        yield Broker(tmp, server, nc, js, subjects)
    finally:
        if nc is not None:
            await nc.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class Run:
    """One bench's run: started with the load before it, written with the load after it."""

    def __init__(self) -> None:
        self.started = time.time()
        self.load_before = loadavg()

    def write(self, out: Path, name: str, result: dict[str, Any]) -> Path:
        """``result`` (``{"name", "rows", ...}``) to ``out/{name}.json`` with the machine, the
        time, the wall time and the load average before and after."""
        document = {**result, "machine": machine(),
                    "at": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"),
                    "wall_s": round(time.time() - self.started, 1),
                    "load_average": {"before": self.load_before, "after": loadavg()}}
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as the plain table ``make bench`` prints (a missed target says MISSED)."""
    lines = [f"{'metric':58} {'value':>12} {'unit':10} target"]
    for found in rows:
        met = found.get("met")
        mark = "" if met is None else ("  ok" if met else "  MISSED")
        lines.append(f"{found['metric']:58} {found['value']:>12} {found['unit']:10} {found.get('target', '')}{mark}")
    return "\n".join(lines)
