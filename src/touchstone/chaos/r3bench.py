"""The scheduler bench on the harness's three-node cluster (every append replicated to three
nodes), with the broker's own pipelined-append rate of the same run as the ceiling."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from pathlib import Path

from touchstone.shared.jetstream import connect, provision
from touchstone.shared.subjects import Subjects

from touchstone.chaos.cluster import SERVICES_USER, NatsCluster
from touchstone.chaos.netns import Network

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_scheduler.py"
CEILING_N = 5000


async def pipelined_rate(cluster: NatsCluster) -> float:
    """Raw nats-py appends, all in flight at once, to an R3 stream: what the broker can take."""
    nc = await connect(cluster.url, "bench-ceiling", user=SERVICES_USER, password=cluster.password,
                       tls=cluster.client_tls())
    js = nc.jetstream(timeout=30)
    subjects = Subjects("ceiling")
    await provision(js, subjects, replicas=3)
    names = [subjects.event("task", f"t{i}-pi-60", "TaskQueued") for i in range(CEILING_N)]
    started = time.perf_counter()
    futures = [await js.publish_async(name, b"{}") for name in names]
    await asyncio.gather(*futures)
    rate = CEILING_N / (time.perf_counter() - started)
    await nc.close()
    return rate


async def scheduler_on_r3(root: Path) -> dict[str, object]:
    network = Network()
    cluster = NatsCluster(network, root / "r3bench")
    try:
        await asyncio.to_thread(cluster.start)
        os.environ["TOUCHSTONE_BENCH_NATS_URL"] = ",".join(
            f"nats://{SERVICES_USER}:{cluster.password}@{n.host.address}:4222" for n in cluster.nodes)
        os.environ["TOUCHSTONE_BENCH_NATS_CA_FILE"] = cluster.ca_file
        os.environ["TOUCHSTONE_BENCH_REPLICAS"] = "3"
        spec = importlib.util.spec_from_file_location("bench_scheduler", BENCH)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = await module.run()
        rows = list(result["rows"])  # type: ignore[call-overload]
        rows.append({"metric": "broker ceiling: raw pipelined appends to an R3 stream",
                     "value": round(await pipelined_rate(cluster)), "unit": "events/s"})
        return {**result, "name": "scheduler on the R3 cluster (3 nodes, every append on three)", "rows": rows}
    finally:
        os.environ.pop("TOUCHSTONE_BENCH_NATS_URL", None)
        os.environ.pop("TOUCHSTONE_BENCH_REPLICAS", None)
        os.environ.pop("TOUCHSTONE_BENCH_NATS_CA_FILE", None)
        cluster.close()
        network.close()
