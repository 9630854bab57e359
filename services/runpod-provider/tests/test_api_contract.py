"""The client against the fake over real HTTP: shapes, lifecycle, idempotent terminate; and one
contract run against both the fake and, when ``RUNPOD_API_KEY`` is set, the real RunPod API."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from touchstone.runpod_local import FakeRunpod
from touchstone.runpod_provider.api import (
    DEFAULT_BASE_URL,
    DEFAULT_GRAPHQL_URL,
    STATUS_MAP,
    Cloud,
    Pod,
    PodSpec,
    PodStateConflictError,
    PodStatus,
    RunpodApiClient,
    Stock,
)
from touchstone.shared.errors import AuthError, NoCapacityError

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

    stopping = await api.stop_pod(pod.id)
    assert stopping.status is PodStatus.RUNNING  # a stop passes through its own moment first
    stopped = await api.get_pod(pod.id)
    assert stopped is not None and stopped.status is PodStatus.STOPPED
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


# --- the same contract against the local fake and, with a key, the real RunPod ----------------
#
# Read-only calls only, unless TOUCHSTONE_RUNPOD_CONTRACT_CREATE=1 as well: then one pod of the
# cheapest GPU type in stock is created and deleted (it bills for a few seconds; the image is
# TOUCHSTONE_RUNPOD_CONTRACT_IMAGE or RunPod's pytorch image). The real API is reached only when
# RUNPOD_API_KEY is set; nothing here runs against it otherwise.

REAL_KEY_VAR = "RUNPOD_API_KEY"
CREATE_VAR = "TOUCHSTONE_RUNPOD_CONTRACT_CREATE"
IMAGE_VAR = "TOUCHSTONE_RUNPOD_CONTRACT_IMAGE"
CONTRACT_PREFIX = "touchstone-contract-"


@dataclass
class Target:
    """One implementation of the RunPod API under the contract."""

    kind: str
    api: RunpodApiClient
    base_url: str
    graphql_url: str
    key: str


@pytest.fixture(params=["fake", "runpod"])
async def target(request, tmp_path) -> AsyncIterator[Target]:
    if request.param == "runpod":
        key = os.environ.get(REAL_KEY_VAR, "")
        if not key:
            pytest.skip(f"{REAL_KEY_VAR} is not set: the contract against the real RunPod API is skipped "
                        "(it ran against the local fake); set it to run the read-only calls, and "
                        f"{CREATE_VAR}=1 as well to create and delete one pod")
        async with RunpodApiClient(DEFAULT_BASE_URL, key, graphql_url=DEFAULT_GRAPHQL_URL, timeout=30,
                                   max_retries=2) as client:
            yield Target("runpod", client, DEFAULT_BASE_URL, DEFAULT_GRAPHQL_URL, key)
        return
    async with FakeRunpod(api_key="rpa_CONTRACT_0123456789", root=tmp_path / "pods", pod_backend="ssh") as fake, \
            RunpodApiClient(fake.base_url, fake.api_key, graphql_url=fake.graphql_url, timeout=10,
                            max_retries=0) as client:
        yield Target("fake", client, fake.base_url, fake.graphql_url, fake.api_key)


async def test_contract_list_pods_is_a_list_of_our_models(target):
    pods = await target.api.list_pods()
    ours = await target.api.list_pods(name_prefix=CONTRACT_PREFIX)

    assert all(isinstance(p, Pod) and p.id and p.status is not PodStatus.TERMINATED for p in pods)
    assert all(p.name.startswith(CONTRACT_PREFIX) for p in ours)
    assert {p.id for p in ours} <= {p.id for p in pods}


async def test_contract_an_unknown_pod_is_gone_and_deleting_it_is_silent(target):
    missing = "zz" + uuid.uuid4().hex[:12]

    assert await target.api.get_pod(missing) is None
    await target.api.terminate_pod(missing)


async def test_contract_the_catalog_prices_pod_gpu_types(target):
    gpus = await target.api.list_gpu_types(cloud=Cloud.SECURE)

    assert gpus and len({g.id for g in gpus}) == len(gpus)
    offered = [g for g in gpus if g.offered]
    assert offered and all(g.price_per_hour >= 0 and g.memory_gb > 0 for g in offered)
    assert any(g.price_per_hour > 0 for g in offered)
    assert all(isinstance(g.stock, Stock) for g in gpus)
    assert all(g.data_center_ids == () for g in gpus if g.stock is Stock.NONE)


async def test_contract_the_balance_is_read_over_graphql(target):
    balance = await target.api.get_balance()

    assert isinstance(balance.balance, float) and balance.spend_per_hour >= 0


async def test_contract_a_wrong_key_is_rejected(target):
    async with RunpodApiClient(target.base_url, "rpa_" + "0" * 40, graphql_url=target.graphql_url, timeout=30,
                               max_retries=0) as wrong:
        with pytest.raises(AuthError) as listing:
            await wrong.list_pods()
        with pytest.raises(AuthError):
            await wrong.get_balance()

    assert target.key not in str(listing.value)


async def test_contract_create_and_delete_the_cheapest_pod(target, ssh_key):
    if target.kind == "runpod" and os.environ.get(CREATE_VAR) != "1":
        pytest.skip(f"{CREATE_VAR} is not 1: no pod is created on the real RunPod account (it would bill)")
    gpus = await target.api.list_gpu_types(cloud=Cloud.SECURE)
    candidates = sorted((g for g in gpus if g.offered and g.stock not in (Stock.NONE,)),
                        key=lambda g: (g.price_per_hour, g.id))[:5]
    assert candidates, "no GPU type in stock on the secure cloud"
    name = f"{CONTRACT_PREFIX}{uuid.uuid4().hex[:10]}"
    image = os.environ.get(IMAGE_VAR, "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
    spec = PodSpec(name=name, image=image, gpu_type_id=candidates[0].id, disk_gb=10,
                   public_key=ssh_key.export_public_key().decode().strip())
    pod: Pod | None = None
    try:
        for gpu in candidates:  # stock is advisory: a type can still be out of capacity (400)
            try:
                pod = await target.api.create_pod(spec.model_copy(update={"gpu_type_id": gpu.id}))
                break
            except NoCapacityError:
                continue
        assert pod is not None, "every candidate was out of capacity"
        assert pod.name == name and pod.gpu_type_id in {g.id for g in candidates}
        assert pod.status in (PodStatus.PENDING, PodStatus.STARTING, PodStatus.RUNNING)
        assert pod.cost_per_hour > 0 and "PUBLIC_KEY" in pod.env_keys
        async with asyncio.timeout(60):  # the list may lag the create a little
            while not (listed := await target.api.list_pods(name_prefix=name)):
                await asyncio.sleep(2)
        assert [p.id for p in listed] == [pod.id]
        seen = await target.api.get_pod(pod.id)
        assert seen is not None and seen.id == pod.id

        await target.api.terminate_pod(pod.id)
        async with asyncio.timeout(120):
            while await target.api.get_pod(pod.id) is not None:
                await asyncio.sleep(2)
        assert await target.api.list_pods(name_prefix=name) == []
    finally:  # never leave a billing pod behind, whatever failed above
        for left in await target.api.list_pods(name_prefix=name):
            await target.api.terminate_pod(left.id)
