"""The client against the fake over real HTTP: shapes, lifecycle, idempotent terminate."""

from __future__ import annotations

import httpx
import pytest
from touchstone.runpod_provider.api import (
    STATUS_MAP,
    Cloud,
    PodStateConflictError,
    PodStatus,
    RunpodApiClient,
    Stock,
)
from touchstone.runpod_provider.fake import FakeRunpod

GPU = "NVIDIA GeForce RTX 4090"


async def test_create_returns_a_pending_pod_with_our_fields(api, spec):
    pod = await api.create_pod(spec())

    assert pod.status is PodStatus.PENDING
    assert pod.name == "touchstone-s1-t1-1"
    assert pod.gpu_type_id == GPU and pod.gpu_count == 1
    assert pod.cost_per_hour == pytest.approx(0.44)
    assert pod.ssh is None and not pod.ssh_ready
    assert pod.created_at is not None and pod.created_at.tzinfo is not None
    assert pod.started_at is None
    assert set(pod.actions) == {"stop", "terminate"}


async def test_env_values_never_reach_our_model(api, spec):
    pod = await api.create_pod(spec())

    assert pod.env_keys == ("HF_TOKEN", "PUBLIC_KEY")
    dumped = pod.model_dump_json() + repr(pod) + str(pod)
    assert "hf_secret_value" not in dumped
    assert "ssh-ed25519" not in dumped
    assert "hf_secret_value" not in repr(spec())


async def test_pod_progresses_to_running_with_a_direct_ssh_endpoint(api, spec, until_ready):
    created = await api.create_pod(spec())

    starting = await api.get_pod(created.id)
    assert starting is not None and starting.status is PodStatus.STARTING
    pod = await until_ready(created.id)

    assert pod.status is PodStatus.RUNNING
    assert pod.ssh is not None and pod.ssh.host == "127.0.0.1" and pod.ssh.username == "root"
    assert pod.started_at is not None
    assert set(pod.actions) == {"stop", "restart", "terminate"}


async def test_list_filters_by_name_prefix_on_the_client(api, spec):
    ours = await api.create_pod(spec(name="touchstone-s1-t1-1"))
    other = await api.create_pod(spec(name="someone-else"))

    everything = await api.list_pods()
    mine = await api.list_pods(name_prefix="touchstone-")

    assert {p.id for p in everything} == {ours.id, other.id}
    assert [p.id for p in mine] == [ours.id]


async def test_terminate_removes_the_pod_and_twice_is_silent(api, spec, fake):
    pod = await api.create_pod(spec())

    await api.terminate_pod(pod.id)
    await api.terminate_pod(pod.id)
    await api.terminate_pod("never-existed")

    assert await api.get_pod(pod.id) is None
    assert await api.list_pods() == []
    [record] = fake.ledger()
    assert record.id == pod.id and record.terminated and record.status == "TERMINATED"


async def test_stop_and_start_give_a_new_ssh_port(api, spec, until_ready):
    pod = await until_ready((await api.create_pod(spec())).id)

    stopped = await api.stop_pod(pod.id)
    assert stopped.status is PodStatus.STOPPED
    assert stopped.cost_per_hour == 0.0 and stopped.ssh is None
    started = await api.start_pod(pod.id)
    assert started.status is PodStatus.STARTING
    again = await until_ready(pod.id)

    assert again.ssh is not None and pod.ssh is not None
    assert again.ssh.port != pod.ssh.port


async def test_an_action_not_valid_in_the_status_is_a_conflict(api, spec):
    pod = await api.create_pod(spec())

    with pytest.raises(PodStateConflictError, match="409"):
        await api.start_pod(pod.id)


async def test_catalog_lists_gpu_types_with_prices_and_stock(api):
    gpus = {g.id: g for g in await api.list_gpu_types()}
    community = {g.id: g for g in await api.list_gpu_types(cloud=Cloud.COMMUNITY)}

    rtx = gpus[GPU]
    assert rtx.display_name == "RTX 4090" and rtx.memory_gb == 24
    assert rtx.price_per_hour == pytest.approx(0.44) and rtx.offered
    assert rtx.stock is Stock.HIGH and "US-KS-2" in rtx.data_center_ids
    assert community[GPU].price_per_hour == pytest.approx(0.31)
    assert gpus["AMD Instinct MI300X OAM"].stock is Stock.NONE
    assert not community["NVIDIA H100 80GB HBM3"].offered


async def test_catalog_shows_a_no_capacity_fault_as_no_stock(api, fake):
    fake.faults.no_capacity = {GPU}

    gpus = {g.id: g for g in await api.list_gpu_types()}

    assert gpus[GPU].stock is Stock.NONE and gpus[GPU].data_center_ids == ()


async def test_balance_comes_from_graphql(api, spec, fake):
    fake.faults.balance = 42.5
    await api.create_pod(spec())

    balance = await api.get_balance()

    assert balance.balance == pytest.approx(42.5)
    assert balance.spend_per_hour == pytest.approx(0.44)
    assert balance.spend_limit == 80


def test_every_runpod_status_has_one_of_ours():
    vendor = {"PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED"}
    assert set(STATUS_MAP) == vendor
    assert PodStatus.UNKNOWN not in STATUS_MAP.values()


async def test_client_speaks_the_exact_v2_wire_format(fake, spec):
    """The create body the client sends passes the fake's strict v2 schema (422 on any
    unknown field), and the GPU id is percent-encoded in paths."""
    async with httpx.AsyncClient(base_url=fake.base_url + "/") as raw:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        one = await raw.get("catalog/gpus/NVIDIA%20GeForce%20RTX%204090", headers=auth)
        assert one.status_code == 200 and one.json()["name"] == "RTX 4090"
    async with RunpodApiClient(fake.base_url, fake.api_key, max_retries=0) as client:
        pod = await client.create_pod(spec(args="--serve", data_center_ids=("EU-RO-1",)))
    assert pod.data_center_id == "EU-RO-1"


async def test_the_fake_with_ssh_never_up_stays_unready(api, spec, fake: FakeRunpod):
    fake.faults.ssh = "no_direct"
    pod = await api.create_pod(spec())
    for _ in range(4):
        seen = await api.get_pod(pod.id)

    assert seen is not None and seen.status is PodStatus.RUNNING and not seen.ssh_ready
