"""The scheduler bench on the harness's three-node cluster (every append replicated to three
nodes) beside the same bench on one node in the same run, each with the broker's own
pipelined-append rate as its ceiling: the rows say ``R1`` or ``R3``."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from pathlib import Path

from nats.js import JetStreamContext
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.subjects import Subjects

from touchstone.bench import harness
from touchstone.chaos.cluster import SERVICES_USER, NatsCluster
from touchstone.chaos.netns import Network

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_scheduler.py"
CEILING_N = 5000


async def pipelined_rate(js: JetStreamContext, replicas: int) -> float:
    """Raw nats-py appends, all in flight at once, to a stream of ``replicas``: what the broker
    can take."""
    subjects = Subjects("ceiling")
    await provision(js, subjects, replicas=replicas)
    names = [subjects.event("task", f"t{i}-pi-60", "TaskQueued") for i in range(CEILING_N)]
    started = time.perf_counter()
    futures = [await js.publish_async(name, b"{}") for name in names]
    await asyncio.gather(*futures)
    return CEILING_N / (time.perf_counter() - started)


async def cluster_rate(cluster: NatsCluster) -> float:
    nc = await connect(cluster.url, "bench-ceiling", user=SERVICES_USER, password=cluster.password,
                       tls=cluster.client_tls())
    try:
        return await pipelined_rate(nc.jetstream(timeout=30), 3)
    finally:
        await nc.close()


async def one_node_rate() -> float:
    async with harness.broker("ceiling", provisioned=False) as b:
        return await pipelined_rate(b.nc.jetstream(timeout=30), 1)


async def bench_rows(replicas: int) -> list[dict[str, object]]:
    """The scheduler bench's rows, loaded afresh (it reads its broker from the environment
    when imported), each metric named with the replicas it ran on."""
    spec = importlib.util.spec_from_file_location(f"bench_scheduler_r{replicas}", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = await module.run()
    return [{**row, "metric": f"R{replicas}: {row['metric']}"} for row in result["rows"]]


async def scheduler_on_r3(root: Path) -> dict[str, object]:
    rows = await bench_rows(1)  # one local nats-server, the bench's own
    rows.append({"metric": "R1: broker ceiling: raw pipelined appends", "value": round(await one_node_rate()),
                 "unit": "events/s"})
    network = Network()
    cluster = NatsCluster(network, root / "r3bench")
    try:
        await asyncio.to_thread(cluster.start)
        os.environ["TOUCHSTONE_BENCH_NATS_URL"] = ",".join(
            f"nats://{SERVICES_USER}:{cluster.password}@{n.host.address}:4222" for n in cluster.nodes)
        os.environ["TOUCHSTONE_BENCH_NATS_CA_FILE"] = cluster.ca_file
        os.environ["TOUCHSTONE_BENCH_REPLICAS"] = "3"
        rows += await bench_rows(3)
        rows.append({"metric": "R3: broker ceiling: raw pipelined appends", "value": round(await cluster_rate(cluster)),
                     "unit": "events/s"})
        return {"name": "scheduler on one node (R1) and on the R3 cluster (3 nodes, every append on three), "
                        "one run", "rows": rows}
    finally:
        os.environ.pop("TOUCHSTONE_BENCH_NATS_URL", None)
        os.environ.pop("TOUCHSTONE_BENCH_REPLICAS", None)
        os.environ.pop("TOUCHSTONE_BENCH_NATS_CA_FILE", None)
        cluster.close()
        network.close()
