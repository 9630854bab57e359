"""Provisioning on a three-node cluster: every service provisions its namespace when it starts,
with one replica asked for and its own logs budget. Where that budget differs from the stream's,
the stream is updated; the update must keep the replicas ``nats init --replicas 3`` gave it,
or one service's start would quietly leave the record on a single node."""

from __future__ import annotations

from pathlib import Path

import pytest
from touchstone.shared.jetstream import LogLimits, connect, provision
from touchstone.shared.subjects import Subjects

from touchstone.chaos import netns
from touchstone.chaos.cluster import SERVICES_USER, NatsCluster

pytestmark = [
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
    pytest.mark.timeout(120),
]


async def test_a_service_provisioning_with_another_logs_budget_keeps_every_streams_replicas(tmp_path: Path) -> None:
    network = netns.Network()
    cluster = NatsCluster(network, tmp_path / "nats")
    try:
        cluster.start()
        nc = await connect(cluster.url, "provision", user=SERVICES_USER, password=cluster.password,
                           tls=cluster.client_tls())
        js = nc.jetstream(timeout=10)
        subjects = Subjects("prov")
        await provision(js, subjects, replicas=3)
        done = await provision(js, subjects, logs=LogLimits(max_bytes=8 * 1024**2))  # as a service starts

        logs = (await js.stream_info(subjects.logs_stream)).config
        events = (await js.stream_info(subjects.events_stream)).config
        await nc.close()
    finally:
        cluster.close()
        network.close()
    assert f"updated stream {subjects.logs_stream}" in done
    assert logs.max_bytes == 8 * 1024**2
    assert logs.num_replicas == 3 and events.num_replicas == 3
