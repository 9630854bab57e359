"""The provider's pure decisions, with no I/O and no fakes."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest
from touchstone.runpod_provider import domain
from touchstone.runpod_provider.api import GpuType, Stock
from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask
from touchstone.shared.reports import ValidationReport
from touchstone.shared.testing import sample_report

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def gate(**fields: object) -> domain.LaunchGate:
    values: dict[str, object] = {"limit": 2, "ours": frozenset(), "listed": frozenset()}
    values.update(fields)
    return domain.LaunchGate(**values)  # type: ignore[arg-type]


def launch(**fields: object) -> LaunchTask:
    values: dict[str, object] = {"submission_id": "s1", "task_id": "validation", "attempt": 1, "kind": "validation",
                                 "spec": ev.TaskSpec(git_url="/src"), "placement": "NVIDIA A40"}
    values.update(fields)
    return LaunchTask.model_validate(values)


@pytest.mark.parametrize(
    ("fields", "go"),
    [
        ({}, True),
        ({"limit": 0}, False),
        ({"ours": frozenset({"touchstone-a-1"}), "listed": frozenset({"touchstone-b-1"})}, False),
        ({"ours": frozenset({"touchstone-a-1"}), "listed": frozenset({"touchstone-a-1"})}, True),
        ({"listed": frozenset({"touchstone-me-1", "touchstone-b-1"})}, True),  # its own pod is adopted
        ({"balance": domain.BalanceLevel.LOW}, True),
        ({"balance": domain.BalanceLevel.STOP}, False),
        ({"key_rejected": True}, False),
        ({"paused": True}, False),
    ],
)
def test_launch_gate(fields, go):
    assert domain.decide_launch("touchstone-me-1", gate(**fields)).go is go


def test_balance_levels():
    assert domain.balance_level(60, 50, 10) is domain.BalanceLevel.OK
    assert domain.balance_level(49.99, 50, 10) is domain.BalanceLevel.LOW
    assert domain.balance_level(9, 50, 10) is domain.BalanceLevel.STOP


def test_reaper_waits_out_the_grace_and_never_touches_foreign_pods():
    pods = [("p1", "touchstone-s-t-1"), ("p2", "touchstone-s-t-2"), ("p3", "my-notebook")]
    owned = frozenset({"touchstone-s-t-2"})

    first = domain.decide_reap(pods, owned, {}, now=100.0, grace_s=15)
    later = domain.decide_reap(pods, owned, first.unowned_since, now=110.0, grace_s=15)
    due = domain.decide_reap(pods, owned, later.unowned_since, now=115.0, grace_s=15)

    assert first.terminate == () and first.unowned_since == {"p1": 100.0}
    assert later.terminate == ()
    assert due.terminate == ("p1",)
    # once owned again, the clock starts over
    assert "p1" not in domain.decide_reap(pods, frozenset({"touchstone-s-t-1"}), {"p1": 0.0}, 115.0, 15).unowned_since


def test_pod_names_split_into_the_task_aggregate_and_attempt():
    assert domain.split_pod_name("touchstone-s-7f3a-pi-60-2") == ("s-7f3a-pi-60", 2)
    assert domain.split_pod_name("touchstone-x") is None
    assert domain.split_pod_name("notebook-1") is None


def test_an_attempt_is_live_only_while_placed_on_runpod_and_unfinished():
    common = {"aggregate_id": "s1-validation", "correlation_id": "s1", "submission_id": "s1", "task_id": "validation"}
    queued = ev.TaskQueued(**common, kind="validation", spec=ev.TaskSpec(git_url="/x"))
    assigned = ev.TaskAssigned(**common, attempt=1, platform="runpod", placement="A40")
    onprem = ev.TaskAssigned(**common, attempt=1, platform="onprem", placement="h1/0")
    failed = ev.TaskFailed(**common, attempt=1, reason="x")

    assert domain.attempt_live(domain.fold_lenient([queued, assigned], NOW), 1)
    assert not domain.attempt_live(domain.fold_lenient([queued, assigned], NOW), 2)
    assert not domain.attempt_live(domain.fold_lenient([queued, onprem], NOW), 1)
    assert not domain.attempt_live(domain.fold_lenient([queued, assigned, failed], NOW), 1)
    assert not domain.attempt_live(None, 1)
    # an event the lifecycle refuses is skipped, not fatal
    assert domain.fold_lenient([queued, failed, assigned], NOW).status.value == "ASSIGNED"


def test_gpu_type_named_or_cheapest_in_stock():
    def gpu(id_: str, price: float, stock: Stock = Stock.HIGH) -> GpuType:
        return GpuType(id=id_, display_name=id_, manufacturer="NVIDIA", memory_gb=24, price_per_hour=price,
                       offered=True, max_count=8, stock=stock)

    catalog = [gpu("A", 0.9), gpu("B", 0.3, Stock.NONE), gpu("C", 0.5)]
    assert domain.pick_gpu_type(launch(), catalog, "D") == "NVIDIA A40"
    assert domain.pick_gpu_type(launch(placement="any"), catalog, "D") == "C"
    assert domain.pick_gpu_type(launch(placement="any"), [], "D") == "D"


def test_cost_is_price_times_run_time():
    assert domain.cost_usd(0.69, 3600) == 0.69
    assert domain.cost_usd(0.69, 1800) == 0.345
    assert domain.cost_usd(0.69, -5) == 0.0


def test_trainer_argv_is_one_quoted_command_line():
    layout = domain.PodLayout()
    hostile = launch(kind="training", task_id="pi-60", prediction_interval=60,
                     spec=ev.TaskSpec(git_url="/x", feature_set_path="fs; rm -rf ~",
                                      passthrough_args=("--config_override", "a=$(id)")))

    argv = domain.trainer_argv(hostile, layout, "python3", "touchstone.trainer")
    line = domain.command_line(argv)

    assert shlex.split(line) == argv
    assert argv[:2] == ["env", "PYTHONPATH=touchstone/trainer/src"]
    assert "touchstone/feature-set/fs; rm -rf ~" in argv and argv[-2:] == ["--output", "touchstone/out"]
    validate = domain.trainer_argv(launch(), layout, "python3", "m")
    assert validate[-5:] == ["validate", "--feature-set", "touchstone/feature-set", "--report",
                             "touchstone/out/report.json"]
    with pytest.raises(ValueError):
        domain.trainer_argv(launch(spec=ev.TaskSpec(git_url="/x", feature_set_path="../..")), layout, "p", "m")


@pytest.mark.parametrize(
    ("exit_status", "kind", "report", "succeeded", "failure_class"),
    [
        (0, "training", None, True, None),
        (0, "validation", sample_report(), True, None),
        (0, "validation", None, False, "trainer"),
        (1, "validation", sample_report(False), True, None),
        (1, "training", None, False, "trainer"),
        (2, "validation", sample_report(False), False, "trainer"),
        (None, "training", None, False, "infrastructure"),
    ],
)
def test_outcome_table(exit_status, kind, report, succeeded, failure_class):
    result = domain.outcome(exit_status, kind, ValidationReport.model_validate(report) if report else None)
    assert result.succeeded is succeeded
    if not succeeded:
        assert result.failure_class == failure_class


@pytest.mark.parametrize(
    ("balance", "key_rejected", "expected"),
    [
        (domain.BalanceLevel.OK, False, None),
        (domain.BalanceLevel.LOW, False, None),
        (domain.BalanceLevel.STOP, False, "RunPod balance below the stop threshold"),
        (domain.BalanceLevel.OK, True, "RunPod rejected the API key"),
        (domain.BalanceLevel.STOP, True, "RunPod rejected the API key"),
    ],
)
def test_why_launches_are_stopped_is_what_the_gate_refuses_with(balance, key_rejected, expected):
    assert domain.launches_stopped(balance, key_rejected) == expected
    decision = domain.decide_launch("touchstone-s-t-1", gate(balance=balance, key_rejected=key_rejected))
    assert decision.go is (expected is None) and (expected is None or decision.reason == expected)


def test_spend_counts_only_our_running_pods():
    pods = [("touchstone-s-t-1", 0.44, True), ("touchstone-s-t-2", 0.31, True),
            ("touchstone-s-u-1", 0.0, False), ("jupyter", 2.0, True)]

    assert domain.spend(pods) == (2, 0.75)
    assert domain.spend([]) == (0, 0.0)
