"""Benchmark of the submission API (issue 3): 100,000 submissions in the SQLite store, 64
concurrent clients, one API worker.

    python services/submission/bench/api_bench.py [--seconds 10] [--out bench/results]

Starts its own nats-server and ``python -m touchstone.submission`` (one uvicorn worker), seeds
the projection store directly, then measures ``GET /api/v1/submissions``,
``GET /api/v1/submissions/{id}`` and ``POST /api/v1/submissions`` in turn and writes
``submission-api.json`` and ``submission-api.md`` to ``--out``. Targets: both GETs p99 <= 25 ms
and >= 1,500 requests/s; POST p99 <= 50 ms. The load generator shares the machine with the
server, so on a small machine the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.lifecycle import SubmissionStatus
from touchstone.shared.natsserver import NatsServer
from touchstone.shared.store.protocol import Changes
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.subjects import Subjects
from touchstone.shared.views import SubmissionView

ADMIN = "tst_bench-admin"
USERS = 100


def seed(path: Path, count: int) -> list[str]:
    """``count`` submissions spread over ``USERS`` owners, written straight into the store."""
    store = SqliteStore(path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = list(SubmissionStatus)
    ids: list[str] = []

    async def write() -> None:
        for base in range(0, count, 5000):
            changes = Changes()
            for i in range(base, min(base + 5000, count)):
                sid = f"s-{i:012x}"
                at = start + timedelta(seconds=i)
                changes.submissions[sid] = SubmissionView(
                    id=sid,
                    owner=f"user-{i % USERS}",
                    name=f"feature set {i}",
                    git_url=f"https://github.com/org/fs-{i}.git",
                    status=statuses[i % len(statuses)],
                    created_at=at,
                    updated_at=at,
                    seq=1,
                )
                ids.append(sid)
            await store.apply(changes, checkpoint="bench-seed", seq=base + 1)
        await store.close()

    asyncio.run(write())
    return ids


class Connection:
    """A bare HTTP/1.1 keep-alive connection: a load generator light enough not to be the
    bottleneck on a small machine (a general-purpose client costs more CPU than the server)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def measure(url: str, make, seconds: float, concurrency: int) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = Connection(host, int(port))
        while time.perf_counter() < deadline:
            method, path, headers, body = make()
            began = time.perf_counter()
            status = await conn.request(method, path, headers, body)
            latencies.append(time.perf_counter() - began)
            if status >= 400:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


async def run_load(url: str, ids: list[str], seconds: float, concurrency: int) -> dict[str, dict[str, float]]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=admin) as client:
        r = await client.post("/api/v1/tokens", json={"user": "user-7"})
        user = {"Authorization": f"Bearer {r.json()['secret']}"}
        for _ in range(200):  # warm up
            await client.get("/api/v1/submissions")
    create = json.dumps({"git_url": "https://github.com/org/bench.git"}).encode()
    scenarios = {
        "GET /api/v1/submissions": lambda: ("GET", "/api/v1/submissions", user, b""),
        "GET /api/v1/submissions/{id}": lambda: ("GET", f"/api/v1/submissions/{random.choice(ids)}", admin, b""),
        "POST /api/v1/submissions": lambda: (
            "POST",
            "/api/v1/submissions",
            {**user, "Content-Type": "application/json"},
            create,
        ),
    }
    return {name: await measure(url, make, seconds, concurrency) for name, make in scenarios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="touchstone-bench-") as tmp:
        root = Path(tmp)
        nats = NatsServer(root / "nats")
        nats.start()
        try:

            async def prepare() -> None:
                nc = await connect(nats.url, "bench")
                await provision(nc.jetstream(), Subjects("bench"))
                await nc.close()

            asyncio.run(prepare())
            began = time.perf_counter()
            ids = seed(root / "projections.db", args.submissions)
            print(f"seeded {len(ids)} submissions in {time.perf_counter() - began:.1f}s", flush=True)
            env = {
                **os.environ,
                "TOUCHSTONE_NAMESPACE": "bench",
                "TOUCHSTONE_NATS_URL": nats.url,
                "TOUCHSTONE_DATA_DIR": str(root),
                "TOUCHSTONE_STORE_URL": f"sqlite:///{root / 'projections.db'}",
                "TOUCHSTONE_ADMIN_TOKEN": ADMIN,
                "TOUCHSTONE_PORT": "18765",
                "TOUCHSTONE_LOG_LEVEL": "WARNING",
            }
            server = subprocess.Popen([sys.executable, "-m", "touchstone.submission"], env=env)
            try:
                url = "http://127.0.0.1:18765"
                for _ in range(300):
                    try:
                        if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                results = asyncio.run(run_load(url, ids, args.seconds, args.concurrency))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(15)
        finally:
            nats.stop()

    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "submissions": args.submissions,
        "concurrency": args.concurrency,
        "seconds_each": args.seconds,
        "workers": 1,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "submission-api.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Submission API benchmark ({report['at']})",
        "",
        f"{args.submissions} submissions in SQLite, {args.concurrency} concurrent clients, one worker, "
        f"{args.seconds:g} s per scenario; {report['machine']} (load generator on the same machine).",
        "",
        "| request | requests/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['errors']} |"
        for name, r in results.items()
    ]
    (args.out / "submission-api.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
