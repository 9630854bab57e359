"""The monitoring kit under deploy/: alert rules checked and unit-tested by promtool, the
Alertmanager routes checked by amtool, and every metric the rules and the dashboard name is one
the services export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from touchstone.scheduler import telemetry
from touchstone.shared.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "touchstone.json"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
REQUIRE = "TOUCHSTONE_REQUIRE_PROMTOOL"
"""Set (CI does): a missing promtool or amtool fails the tests instead of skipping them."""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get(REQUIRE):
            pytest.fail(f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)")
        pytest.skip(f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)")
    return path


def run(*argv: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r for group in doc["groups"] for r in group["rules"]]


# --- promtool -------------------------------------------------------------------------------


def test_the_rules_and_the_scrape_config_pass_promtool_check() -> None:
    promtool = tool("promtool")
    checked = run(promtool, "check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = run(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_rule_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = run(tool("promtool"), "test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_rule_that_no_longer_fires_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: flip the low-balance comparison and promtool must object."""
    promtool = tool("promtool")
    broken = (PROMETHEUS / "alerts.yml").read_text().replace(
        "touchstone_runpod_balance_usd < touchstone_runpod_balance_low_threshold_usd",
        "touchstone_runpod_balance_usd > touchstone_runpod_balance_low_threshold_usd")
    assert broken != (PROMETHEUS / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path / "alerts.test.yml")
    tested = run(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "TouchstoneRunpodBalanceLow" in tested.stdout + tested.stderr


def test_every_alert_has_a_test_where_it_fires_and_one_where_it_does_not() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    fires, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - fires == set(), "alerts never seen firing in a unit test"
    assert names - quiet == set(), "alerts never seen staying quiet in a unit test"
    required = {"TouchstoneServiceDown", "TouchstoneHandlerErrors", "TouchstoneDeadLetters", "TouchstoneTaskStuck",
                "TouchstoneQueueWaitHigh", "TouchstoneAgentOffline", "TouchstoneRunpodBalanceLow",
                "TouchstoneRunpodKeyRejected", "TouchstoneRunpodSpendHigh"}
    assert required <= names


def test_every_alert_has_a_severity_the_routes_know_and_a_runbook_section() -> None:
    doc = MONITORING_DOC.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc, flags=re.MULTILINE)}
    for rule in rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/monitoring.md"


# --- Alertmanager ---------------------------------------------------------------------------


def test_alertmanager_config_is_valid_and_routes_pages_to_oncall_and_tickets_to_the_team() -> None:
    amtool = tool("amtool")
    checked = run(amtool, "check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for labels, receiver in ((["severity=page", "alertname=TouchstoneDeadLetters"], "oncall"),
                             (["severity=ticket", "alertname=TouchstoneTaskStuck"], "team")):
        routed = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        assert routed.returncode == 0, routed.stdout + routed.stderr
        assert routed.stdout.strip() == receiver


# --- metric names ---------------------------------------------------------------------------


def exported_series() -> set[str]:
    """Every series name the services can export (their modules register at import)."""
    import touchstone.results.alarms
    import touchstone.runpod_provider.adapters
    import touchstone.shared.consumer
    import touchstone.shared.projector
    import touchstone.submission.app  # noqa: F401

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("_count", "_sum", "_created"), "info": ("_info",)}
    names = {"up"}
    for family in [*REGISTRY.collect(), *telemetry.COLLECTOR.describe()]:
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def named_metrics(expr: str) -> set[str]:
    """The metric names an expression reads (ours, the process collectors', and ``up``)."""
    return set(re.findall(r"\b(?:touchstone_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?!\s*\()", expr))


def test_every_metric_the_rules_name_is_exported() -> None:
    exported = exported_series()
    for rule in rules():
        missing = named_metrics(rule["expr"]) - exported
        assert not missing, f"{rule['alert']} reads metrics no service exports: {missing}"


def test_the_dashboard_loads_and_every_expression_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "touchstone"
    exported = exported_series()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    seen: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = named_metrics(target["expr"])
            assert names, f"{panel['title']}: {target['expr']} reads no metric"
            assert names <= exported, f"{panel['title']} reads metrics no service exports: {names - exported}"
            seen |= names
    for family in ("touchstone_queue_depth", "touchstone_runpod_balance_usd", "touchstone_agent_gpu_utilization_ratio",
                   "touchstone_dead_letters_total", "touchstone_attempts_total"):
        assert family in seen


def test_every_touchstone_metric_is_documented() -> None:
    doc = MONITORING_DOC.read_text()
    families = {f.name for f in [*REGISTRY.collect(), *telemetry.COLLECTOR.describe()]
                if f.name.startswith("touchstone_")}
    exported_series()  # imports every module that registers metrics
    families |= {f.name for f in REGISTRY.collect() if f.name.startswith("touchstone_")}
    undocumented = {name for name in families if name not in doc}
    assert not undocumented, f"docs/monitoring.md does not list: {sorted(undocumented)}"
