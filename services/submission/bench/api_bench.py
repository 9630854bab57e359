"""Benchmark of the submission API beside the framework doing nothing (issue 17).

    python services/submission/bench/api_bench.py [--seconds 10] [--out bench/results]

Seeds 100,000 submissions straight into a SQLite projection store, starts its own nats-server,
the API (``python -m touchstone.submission``) and a trivial Litestar app (``trivial_app.py``),
each one uvicorn worker in this interpreter, then drives every endpoint with ``wrk`` (a C load
generator, so the client takes little of the server's core) at 64 connections. Each endpoint's
req/s, p50 and p99 are recorded with its ratio to the trivial app measured in the same run
(before and after the API, averaged), and the load average of the machine, in
``submission-api.json`` and ``submission-api.md`` under ``--out``.

Targets: ``GET /api/v1/submissions/{id}`` >= 0.6 of the trivial app's req/s and p99 <= 3x its
p99; ``GET /api/v1/submissions`` (a page of 50) >= 0.45. ``POST`` is reported.

The store's reads alone are timed too (``store_bench.py``: SQLite, and MongoDB where
``TOUCHSTONE_TEST_MONGODB_URL`` is set). ``--py-spy PATH`` also records a py-spy profile
(speedscope JSON) of the API per endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import store_bench  # beside this file
from touchstone.shared.lifecycle import SubmissionStatus
from touchstone.shared.store.protocol import Changes
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.views import SubmissionView

from touchstone.bench.harness import Run, broker

ADMIN = "tst_bench-admin"
USERS = 100
API_PORT, TRIVIAL_PORT = 18765, 18766
HERE = Path(__file__).resolve().parent

RANDOM_PATHS = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function() return wrk.format(nil, paths[math.random(#paths)]) end
"""
POST_BODY = """
wrk.method = "POST"
wrk.body = '{"git_url": "https://github.com/org/bench.git"}'
wrk.headers["Content-Type"] = "application/json"
"""


def seed(path: Path, count: int) -> tuple[list[str], list[Changes]]:
    """``count`` submissions spread over ``USERS`` owners, written straight into the store."""
    store = SqliteStore(path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = [s for s in SubmissionStatus if s != SubmissionStatus.RETRACTED]  # deleted ones read as 404
    ids: list[str] = []
    batches: list[Changes] = []

    async def write() -> None:
        for base in range(0, count, 5000):
            changes = Changes()
            batches.append(changes)
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
    return ids, batches


def find_wrk() -> str:
    """``wrk`` on PATH, else installed from Debian (``apt-get install -y wrk``)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
    found = shutil.which("wrk")
    if not found:
        sys.exit("the bench needs wrk (Debian package wrk)")
    return found


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return round(float(value) * _UNIT[unit], 2)


def parse_wrk(out: str) -> dict[str, float]:
    """req/s, p50, p90, p99 (ms), requests and errors from ``wrk --latency`` output."""
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), 1),  # type: ignore[union-attr]
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "requests": requests,
        "errors": (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0),
    }


class Wrk:
    def __init__(self, binary: str, tmp: Path, seconds: float, connections: int) -> None:
        self.binary, self.tmp, self.seconds, self.connections = binary, tmp, seconds, connections

    def run(self, url: str, *, token: str | None = None, script: str | None = None,
            env: dict[str, str] | None = None) -> dict[str, float]:
        cmd = [self.binary, "-t1", f"-c{self.connections}", f"-d{self.seconds:g}s", "--latency", "--timeout", "10s"]
        if token:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        if script:
            path = self.tmp / f"script-{abs(hash(script))}.lua"
            path.write_text(script)
            cmd += ["-s", str(path)]
        cmd.append(url)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
        try:
            return parse_wrk(out.stdout)
        except (AttributeError, KeyError) as e:
            raise RuntimeError(f"unexpected wrk output for {url}:\n{out.stdout}\n{out.stderr}") from e


def wait_ready(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered 200")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(args: argparse.Namespace, root: Path, api: subprocess.Popen[bytes], ids: list[str]) -> dict:
    wrk = Wrk(find_wrk(), root, args.seconds, args.concurrency)
    base = f"http://127.0.0.1:{API_PORT}"
    trivial = f"http://127.0.0.1:{TRIVIAL_PORT}/submission"
    user = httpx.post(f"{base}/api/v1/tokens", json={"user": "user-7"},
                      headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10).json()["secret"]
    paths = root / "paths.txt"
    paths.write_text("".join(f"/api/v1/submissions/{i}\n" for i in ids[::7]))
    random_ids = {"script": RANDOM_PATHS, "env": {"BENCH_PATHS": str(paths)}}
    scenarios = {
        "GET /healthz": lambda: wrk.run(f"{base}/healthz"),
        "GET /api/v1/submissions/{id}": lambda: wrk.run(base, token=ADMIN, **random_ids),
        "GET /api/v1/submissions": lambda: wrk.run(f"{base}/api/v1/submissions", token=user),
        "POST /api/v1/submissions": lambda: wrk.run(f"{base}/api/v1/submissions", token=user, script=POST_BODY),
    }
    for _ in range(2):  # warm both servers (caches, code paths) before measuring
        Wrk(wrk.binary, root, 2, args.concurrency).run(trivial)
        Wrk(wrk.binary, root, 2, args.concurrency).run(base, token=ADMIN, **random_ids)
    results: dict[str, dict] = {}
    load = {"before": loadavg()}
    trivial_runs = [wrk.run(trivial)]
    for name, run in scenarios.items():
        spy = profile(args, api, root, name)
        results[name] = run()
        if spy is not None:
            spy.wait(30)
    trivial_runs.append(wrk.run(trivial))
    load["after"] = loadavg()
    base_rps = sum(r["rps"] for r in trivial_runs) / 2
    base_p99 = sum(r["p99_ms"] for r in trivial_runs) / 2
    for r in results.values():
        r["ratio"] = round(r["rps"] / base_rps, 2)
        r["p99_x_trivial"] = round(r["p99_ms"] / base_p99, 2)
    trivial_row = {
        "rps": round(base_rps, 1),
        "p50_ms": round(sum(r["p50_ms"] for r in trivial_runs) / 2, 2),
        "p90_ms": round(sum(r["p90_ms"] for r in trivial_runs) / 2, 2),
        "p99_ms": round(base_p99, 2),
        "requests": sum(r["requests"] for r in trivial_runs),
        "errors": sum(r["errors"] for r in trivial_runs),
        "ratio": 1.0,
        "p99_x_trivial": 1.0,
        "runs": trivial_runs,
    }
    return {"loadavg": load, "results": {"trivial Litestar GET (baseline)": trivial_row, **results}}


def profile(args: argparse.Namespace, api: subprocess.Popen[bytes], root: Path, name: str):
    if not args.py_spy:
        return None
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = args.out / "profiles" / f"{slug}.speedscope.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([args.py_spy, "record", "-p", str(api.pid), "-d", str(int(args.seconds)), "-r", "200",
                             "-f", "speedscope", "-o", str(out)], stdout=subprocess.DEVNULL)


def start_servers(root: Path, nats_url: str) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TOUCHSTONE_NAMESPACE": "bench",
        "TOUCHSTONE_NATS_URL": nats_url,
        "TOUCHSTONE_DATA_DIR": str(root),
        "TOUCHSTONE_STORE_URL": f"sqlite:///{root / 'projections.db'}",
        "TOUCHSTONE_ADMIN_TOKEN": ADMIN,
        "TOUCHSTONE_PORT": str(API_PORT),
        "TOUCHSTONE_LOG_LEVEL": "WARNING",
    }
    api = subprocess.Popen([sys.executable, "-m", "touchstone.submission"], env=env)
    trivial = subprocess.Popen([sys.executable, str(HERE / "trivial_app.py"), str(TRIVIAL_PORT)])
    wait_ready(f"http://127.0.0.1:{API_PORT}/readyz")
    wait_ready(f"http://127.0.0.1:{TRIVIAL_PORT}/submission")
    return api, trivial


async def run(args: argparse.Namespace) -> dict:
    async with broker("bench") as nats:
        root = nats.tmp
        began = time.perf_counter()
        ids, batches = await asyncio.to_thread(seed, root / "projections.db", args.submissions)
        print(f"seeded {len(ids)} submissions in {time.perf_counter() - began:.1f}s", flush=True)
        stores = await asyncio.to_thread(store_bench.run, root / "projections.db", batches, ids, USERS)
        api, trivial = start_servers(root, nats.url)
        try:
            return {**await asyncio.to_thread(measure, args, root, api, ids), "store_reads": stores}
        finally:
            for proc in (api, trivial):
                proc.send_signal(signal.SIGTERM)
            for proc in (api, trivial):
                proc.wait(15)


def write(args: argparse.Namespace, bench: Run, measured: dict) -> None:
    report = {
        "name": "submission API beside the trivial Litestar app (wrk)",
        "submissions": args.submissions,
        "connections": args.concurrency,
        "seconds_each": args.seconds,
        "workers": 1,
        "load_generator": f"wrk -t1 -c{args.concurrency} -d{int(args.seconds)}s --latency",
        "targets": {"GET /api/v1/submissions/{id}": "ratio >= 0.6, p99 <= 3x trivial",
                    "GET /api/v1/submissions": "ratio >= 0.45"},
        **measured,
    }
    report = json.loads(bench.write(args.out, "submission-api", report).read_text())
    load = report["loadavg"]
    host = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"# Submission API benchmark ({report['at']})",
        "",
        f"{args.submissions} submissions in SQLite, `{report['load_generator']}`, one uvicorn worker each; "
        f"{host}; load average {load['before']} before, {load['after']} after.",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | ratio to trivial | p99 / trivial p99 | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['rps']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['ratio']:.2f} | {r['p99_x_trivial']:.2f} "
        f"| {r['errors']} |"
        for name, r in report["results"].items()
    ]
    lines += ["", "Store reads alone (in-process, stored JSON):", ""]
    for backend, found in report["store_reads"].items():
        if isinstance(found, str):
            lines.append(f"- {backend}: {found}")
            continue
        lines += [f"- {backend} {name}: p50 {r['p50_us']} us, p99 {r['p99_us']} us" for name, r in found.items()]
    (args.out / "submission-api.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--py-spy", help="path to py-spy: record a profile of the API per endpoint")
    args = parser.parse_args()
    bench = Run()
    write(args, bench, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
