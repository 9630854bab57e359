"""Placement without I/O: order, fairness, platforms, capacity, pauses, back-off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from schedkit import T0
from touchstone.scheduler.domain import (
    Capacity,
    HostReport,
    LivePlacement,
    QueuedTask,
    ServerRoom,
    capacity_of,
    decide,
    fair_order,
    open_platforms,
)
from touchstone.scheduler.gpus import gpu_matches
from touchstone.shared.agents import AgentHeartbeat, GpuStatus
from touchstone.shared.system import Server, SystemSettings

NOW = T0


def task(key: str, order: int, sub: str = "s-a", **kw: object) -> QueuedTask:
    return QueuedTask(key=key, submission_id=sub, attempt=1, order=order, **kw)  # type: ignore[arg-type]


def room(name: str, gpus: int = 0, cpus: int = 0) -> ServerRoom:
    return ServerRoom(name, tuple(range(gpus)), tuple(range(cpus)))


def placed(assignments) -> list[tuple[str, str, str]]:
    return [(a.key, a.platform, a.placement) for a in assignments]


def report(host: str, *, slots: int = 4, free: int | None = None, age_s: float = 1.0,
           running: tuple[str, ...] = ()) -> HostReport:
    hb = AgentHeartbeat(host=host, slots_total=slots, slots_free=slots if free is None else free, running=running)
    return HostReport(hb, NOW - timedelta(seconds=age_s))


def capacity(system: SystemSettings, hosts: dict[str, HostReport], live=()) -> Capacity:
    return capacity_of(system, hosts, live, NOW, heartbeat_timeout_s=15.0, cpu_slots_per_server=2)


# --- order ---------------------------------------------------------------------------------


def test_higher_priority_goes_first_then_fifo() -> None:
    queue = [task("low-1", 1), task("high-2", 2, priority=5), task("low-0", 0), task("high-3", 3, priority=5)]
    got = decide(queue, Capacity(servers=(room("h", gpus=3),)), NOW)
    assert [a.key for a in got] == ["high-2", "high-3", "low-0"]


def test_submissions_take_turns_so_a_big_sweep_cannot_starve_a_small_one() -> None:
    sweep = [task(f"big-{i}", i, sub="s-big") for i in range(10)]
    small = [task("small-0", 20, sub="s-small"), task("small-1", 21, sub="s-small")]
    got = decide(sweep + small, Capacity(servers=(room("h", gpus=5),)), NOW)
    assert [a.key for a in got] == ["big-0", "small-0", "big-1", "small-1", "big-2"]


def test_round_robin_starts_with_the_submission_queued_first_and_stays_within_priority() -> None:
    queue = [task("b-0", 5, sub="s-b"), task("a-0", 1, sub="s-a"), task("a-1", 2, sub="s-a"),
             task("c-0", 9, sub="s-c", priority=1)]
    assert [t.key for t in fair_order(queue, NOW)] == ["c-0", "a-0", "b-0", "a-1"]


# --- platforms -------------------------------------------------------------------------------


def test_any_prefers_onprem_and_overflows_to_runpod() -> None:
    queue = [task(f"t{i}", i, platform="any") for i in range(4)]
    got = decide(queue, Capacity(servers=(room("h", gpus=1),), runpod_free=2), NOW, runpod_default_gpu_type="A40")
    assert placed(got) == [("t0", "onprem", "h/0"), ("t1", "runpod", "A40"), ("t2", "runpod", "A40")]


def test_runpod_is_capped_and_a_requested_gpu_type_is_kept() -> None:
    queue = [task(f"t{i}", i, platform="runpod", gpu_type="H100") for i in range(5)]
    got = decide(queue, Capacity(runpod_free=2), NOW)
    assert placed(got) == [("t0", "runpod", "H100"), ("t1", "runpod", "H100")]
    assert all(a.gpu_type == "H100" for a in got)


def test_runpod_cap_counts_live_runpod_tasks_and_zero_pauses_runpod() -> None:
    live = [LivePlacement("runpod", "A40", "touchstone-s-x-pi-1-1")]
    assert capacity(SystemSettings(runpod_max_running_tasks=3), {}, live).runpod_free == 2
    paused = capacity(SystemSettings(runpod_max_running_tasks=0), {})
    assert decide([task("t", 0, platform="runpod")], paused, NOW) == []


def test_onprem_tasks_never_go_to_runpod_and_runpod_tasks_never_onprem() -> None:
    queue = [task("on", 0, platform="onprem"), task("rp", 1, platform="runpod")]
    assert placed(decide(queue, Capacity(runpod_free=5), NOW)) == [("rp", "runpod", "any")]
    assert placed(decide(queue, Capacity(servers=(room("h", gpus=5),)), NOW)) == [("on", "onprem", "h/0")]


def test_a_task_that_cannot_be_placed_does_not_block_others() -> None:
    queue = [task("rp", 0, platform="runpod", priority=9), task("on", 1, platform="onprem")]
    assert placed(decide(queue, Capacity(servers=(room("h", gpus=1),)), NOW)) == [("on", "onprem", "h/0")]


def test_load_spreads_to_the_emptiest_server_and_cpu_tasks_take_cpu_slots() -> None:
    queue = [task("g0", 0), task("g1", 1), task("v", 2, needs_gpu=False)]
    got = decide(queue, Capacity(servers=(room("a", gpus=1), room("b", gpus=2, cpus=1))), NOW)
    assert placed(got) == [("g0", "onprem", "b/0"), ("g1", "onprem", "a/0"), ("v", "onprem", "b/cpu0")]


# --- pauses, back-off, servers ----------------------------------------------------------------


def test_paused_scheduler_places_nothing() -> None:
    cap = capacity(SystemSettings(scheduler_paused=True, runpod_max_running_tasks=5,
                                  servers=[Server(name="h", num_slots=2)]), {"h": report("h")})
    assert cap.paused
    assert decide([task("t", 0)], cap, NOW) == []


def test_not_before_is_respected() -> None:
    waiting = task("later", 0, not_before=NOW + timedelta(seconds=1))
    due = task("due", 1, not_before=NOW)
    got = decide([waiting, due], Capacity(servers=(room("h", gpus=4),)), NOW)
    assert [a.key for a in got] == ["due"]
    got = decide([waiting], Capacity(servers=(room("h", gpus=4),)), NOW + timedelta(seconds=1))
    assert [a.key for a in got] == ["later"]


def test_server_with_zero_slots_is_paused() -> None:
    system = SystemSettings(servers=[Server(name="off", num_slots=0), Server(name="on", num_slots=1)])
    cap = capacity(system, {"off": report("off"), "on": report("on")})
    assert [s.name for s in cap.servers] == ["on"]
    assert placed(decide([task("a", 0), task("b", 1)], cap, NOW)) == [("a", "onprem", "on/0")]


def test_offline_and_never_heard_from_servers_get_nothing() -> None:
    system = SystemSettings(servers=[Server(name="silent", num_slots=2), Server(name="stale", num_slots=2),
                                     Server(name="fresh", num_slots=1)])
    hosts = {"stale": report("stale", age_s=15.5), "fresh": report("fresh", age_s=14.5)}
    cap = capacity(system, hosts)
    assert [s.name for s in cap.servers] == ["fresh"]
    assert placed(decide([task("a", 0), task("b", 1)], cap, NOW)) == [("a", "onprem", "fresh/0")]


def test_an_undeclared_host_gets_nothing_even_when_it_reports() -> None:
    cap = capacity(SystemSettings(servers=[]), {"rogue": report("rogue")})
    assert cap.servers == ()


def test_slots_in_use_and_the_agents_own_count_limit_free_slots() -> None:
    system = SystemSettings(servers=[Server(name="h", num_slots=4)])
    ours = [LivePlacement("onprem", "h/1", "touchstone-s-a-pi-1-1")]
    # the agent runs our container plus something it did not get from us: only 2 GPUs free
    hosts = {"h": report("h", slots=4, free=2, running=("touchstone-s-a-pi-1-1",))}
    (server,) = capacity(system, hosts, ours).servers
    assert server.gpu_slots == (0, 2)
    # an assignment the agent has not started yet still counts against its free slots
    hosts = {"h": report("h", slots=4, free=4)}
    (server,) = capacity(system, hosts, ours).servers
    assert server.gpu_slots == (0, 2, 3)
    hosts = {"h": report("h", slots=4, free=2)}
    (server,) = capacity(system, hosts, ours).servers
    assert server.gpu_slots == (0,)


def test_a_slot_the_agent_names_busy_is_not_free_even_when_no_live_attempt_sits_there() -> None:
    """Chaos scenarios 2 and 7: an attempt ended in the scheduler's view (failed as stuck,
    cancelled) while its container was still stopping on slot 0. The agent counted one slot free
    (slot 1), but placement took the lowest index the view thought free, slot 0, and the agent
    refused the launch: an attempt burned. The agent's ``slots_busy`` says which slot it holds."""
    system = SystemSettings(servers=[Server(name="h", num_slots=2)])
    holding = AgentHeartbeat(host="h", slots_total=2, slots_free=1, slots_busy=(0,),
                             running=("touchstone-s-a-pi-60-1",))
    (server,) = capacity(system, {"h": HostReport(holding, NOW)}).servers
    assert server.gpu_slots == (1,)
    got = decide([task("pi-15", 1)], Capacity(servers=(server,)), NOW)
    assert placed(got) == [("pi-15", "onprem", "h/1")]
    # and with our own attempt on slot 1 as well, nothing is free
    ours = [LivePlacement("onprem", "h/1", "touchstone-s-b-pi-15-1")]
    (server,) = capacity(system, {"h": HostReport(holding, NOW)}, ours).servers
    assert server.gpu_slots == ()


def test_declared_slots_beyond_the_hosts_gpus_are_not_used() -> None:
    system = SystemSettings(servers=[Server(name="h", num_slots=8)])
    (server,) = capacity(system, {"h": report("h", slots=2)}).servers
    assert server.gpu_slots == (0, 1)


# --- GPU types on-prem ------------------------------------------------------------------------


def gpu_report(host: str, *names: str, namespace: str | None = None) -> HostReport:
    gpus = tuple(GpuStatus(index=i, name=n) for i, n in enumerate(names))
    hb = AgentHeartbeat(host=host, namespace=namespace, slots_total=len(names), slots_free=len(names), gpus=gpus)
    return HostReport(hb, NOW - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("requested", "model", "match"),
    [
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", True),  # RunPod id = nvidia-smi name
        ("RTX 4090", "NVIDIA GeForce RTX 4090", True),  # RunPod display name
        ("rtx 4090", "RTX 4090", True),  # case does not matter
        ("NVIDIA A100-SXM4-80GB", "A100", True),  # a declared model shorter than the request
        ("A100", "NVIDIA A100 80GB PCIe", True),
        ("H100 SXM", "NVIDIA H100 80GB HBM3", False),  # SXM is not a word of that name
        ("NVIDIA RTX A6000", "RTX A6000", True),
        ("A40", "NVIDIA RTX A4000", False),  # whole words: A40 is not A4000
        ("RTX 4090", "NVIDIA GeForce RTX 4080", False),
        ("A100 80GB PCIe", "NVIDIA A100-SXM4-80GB", False),
        ("NVIDIA", "NVIDIA A40", False),  # a vendor alone names no model
        ("A40", "", False),  # an unknown model matches no named type
        ("any", "", True),
        (None, "NVIDIA A40", True),
    ],
)
def test_gpu_type_matching(requested: str | None, model: str, match: bool) -> None:
    assert gpu_matches(requested, model) is match


@pytest.mark.parametrize(
    ("platform", "gpu_type", "expected"),
    [
        ("onprem", "RTX 4090", ("onprem", "b/0")),  # skips the A40 server although it is emptier
        ("onprem", "NVIDIA A40", ("onprem", "a/0")),
        ("onprem", "H100", None),  # no such GPU on-prem: waits queued
        ("any", "H100", ("runpod", "H100")),  # overflows to RunPod with the type it asked for
        ("any", "RTX 4090", ("onprem", "b/0")),
        ("any", None, ("onprem", "a/0")),  # no type asked: the emptiest server
        ("runpod", "RTX 4090", ("runpod", "RTX 4090")),
    ],
)
def test_a_gpu_type_is_placed_only_on_matching_onprem_gpus(
    platform: str, gpu_type: str | None, expected: tuple[str, str] | None
) -> None:
    system = SystemSettings(runpod_max_running_tasks=1, servers=[Server(name="a", num_slots=3),
                                                                  Server(name="b", num_slots=2)])
    hosts = {"a": gpu_report("a", *["NVIDIA A40"] * 3), "b": gpu_report("b", *["NVIDIA GeForce RTX 4090"] * 2)}
    got = placed(decide([task("t", 0, platform=platform, gpu_type=gpu_type)], capacity(system, hosts), NOW))
    assert got == ([("t", *expected)] if expected else [])


def test_declared_gpus_stand_in_when_the_heartbeat_names_none_and_mixed_servers_match_per_slot() -> None:
    system = SystemSettings(servers=[Server(name="d", num_slots=2, gpus=["RTX 4090"]),
                                     Server(name="m", num_slots=3, gpus=["A40", "RTX 4090", "A40"])])
    cap = capacity(system, {"d": report("d", slots=2), "m": report("m", slots=3)})
    queue = [task(f"t{i}", i, platform="onprem", gpu_type="NVIDIA GeForce RTX 4090") for i in range(4)]
    # the emptiest server first (m), but only its RTX 4090 slot; then d's two; t3 waits
    assert placed(decide(queue, cap, NOW)) == [("t0", "onprem", "m/1"), ("t1", "onprem", "d/0"),
                                               ("t2", "onprem", "d/1")]


def test_typed_and_untyped_tasks_share_slots_without_taking_one_twice() -> None:
    hosts = {"a": gpu_report("a", "A40", "RTX 4090"), "b": gpu_report("b", "A40")}
    system = SystemSettings(servers=[Server(name="a", num_slots=2), Server(name="b", num_slots=1)])
    queue = [task("any-0", 0), task("4090", 1, gpu_type="RTX 4090"), task("any-1", 2), task("any-2", 3)]
    got = placed(decide(queue, capacity(system, hosts), NOW))
    assert sorted(p for _, _, p in got) == ["a/0", "a/1", "b/0"]
    assert ("4090", "onprem", "a/1") in got and len(got) == 3


# --- one namespace per server -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claimed", "declared", "placed_there"),
    [
        ("ns-a", True, True),
        (None, True, True),  # an older agent that names no namespace counts as ours
        ("ns-b", True, False),  # its agent serves another namespace now
        ("ns-a", False, False),  # not declared in this namespace's settings
    ],
)
def test_a_server_is_used_only_by_the_namespace_it_serves(claimed: str | None, declared: bool,
                                                           placed_there: bool) -> None:
    system = SystemSettings(servers=[Server(name="h", num_slots=1)] if declared else [])
    hosts = {"h": gpu_report("h", "A40", namespace=claimed)}
    cap = capacity_of(system, hosts, (), NOW, heartbeat_timeout_s=15.0, cpu_slots_per_server=2, namespace="ns-a")
    assert bool(decide([task("t", 0, platform="onprem")], cap, NOW)) is placed_there


def test_only_platforms_with_room_are_open() -> None:
    assert open_platforms(Capacity(paused=True, servers=(room("h", gpus=1),), runpod_free=1)) == ()
    assert open_platforms(Capacity(servers=(room("h"),), runpod_free=0)) == ()
    assert open_platforms(Capacity(servers=(room("h", cpus=1),))) == ("onprem", "any")
    assert open_platforms(Capacity(runpod_free=2)) == ("runpod", "any")
