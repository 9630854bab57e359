"""The systemd units in ``deploy/systemd/``: one per service, each running that service, each
hardened at least as the agent's, each accepted by ``systemd-analyze verify`` without a
warning (where systemd is installed) and scored no more exposed than the agent by
``systemd-analyze security --offline``."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from touchstone.cli.supervisor import SERVICES

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
AGENT = UNITS / "touchstone-agent.service"
# keys of the agent's unit that are about the agent's own job, not its hardening
AGENT_ONLY = {"Description", "Documentation", "After", "User", "Group", "SupplementaryGroups", "ExecStart",
              "KillMode", "EnvironmentFile", "Environment", "StateDirectory", "ReadWritePaths"}


def parse(path: Path) -> dict[str, list[str]]:
    """Unit keys -> values (a key may repeat), comments and sections dropped."""
    keys: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def service_units() -> dict[str, Path]:
    return {name: UNITS / f"touchstone-{name}.service" for name, _ in SERVICES if name != "agent"}


def test_every_service_has_a_unit_that_runs_it() -> None:
    for name, module in SERVICES:
        if name == "agent":
            continue
        unit = service_units()[name]
        assert unit.exists(), f"no unit for {name}"
        (exec_start,) = parse(unit)["ExecStart"]
        assert exec_start == f"/opt/touchstone/.venv/bin/python -m {module}"
        assert importlib.util.find_spec(f"{module}.__main__") is not None


def test_each_unit_is_hardened_at_least_as_the_agent() -> None:
    agent = parse(AGENT)
    hardening = {k: v for k, v in agent.items() if k not in AGENT_ONLY}
    assert {"NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet", "RestrictAddressFamilies"} <= set(hardening)
    ports = []
    for name, unit in service_units().items():
        keys = parse(unit)
        for key, value in hardening.items():
            assert keys.get(key) == value, f"{unit.name}: {key}={keys.get(key)} (the agent: {value})"
        assert keys["PrivateDevices"] == ["yes"], unit.name  # no GPU, no devices
        assert "SupplementaryGroups" not in keys, unit.name  # never the docker group
        assert keys["StateDirectory"] == [f"touchstone-{name}"]
        assert keys["ReadWritePaths"] == [f"/var/lib/touchstone-{name}"]
        (environment,) = keys["Environment"]
        assert f"TOUCHSTONE_DATA_DIR=/var/lib/touchstone-{name}" in environment
        # secrets only in root-owned environment files, never in the unit
        assert not re.search(r"PASSWORD=|API_KEY=|TOKEN=|SECRET=", environment), unit.name
        assert keys["EnvironmentFile"] == ["/etc/touchstone/touchstone.env", f"-/etc/touchstone/{name}.env"]
        port = re.search(r"TOUCHSTONE_METRICS_PORT=(\d+)", environment)
        if name != "submission":  # the API answers /healthz, /readyz and /metrics itself
            assert port, f"{unit.name}: no health and metrics port"
            ports.append(port.group(1))
    assert len(ports) == len(set(ports)), "two services on one host would take the same port"


def _runnable_copy(unit: Path, folder: Path) -> Path:
    """The unit with its interpreter replaced by one that exists here (verify checks that the
    command is executable; /opt/touchstone is not installed on a test machine)."""
    copy = folder / unit.name
    copy.write_text(re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", unit.read_text(), flags=re.M))
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_every_unit_without_a_warning(tmp_path: Path) -> None:
    for unit in [AGENT, *service_units().values()]:
        result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(_runnable_copy(unit, tmp_path))],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), (
            f"{unit.name}: {result.stdout}{result.stderr}"
        )


def _exposure(unit: Path) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_no_service_is_more_exposed_than_the_agent(tmp_path: Path) -> None:
    agent = _exposure(_runnable_copy(AGENT, tmp_path))
    for unit in service_units().values():
        score = _exposure(_runnable_copy(unit, tmp_path))
        assert score <= agent, f"{unit.name}: exposure {score} > the agent's {agent}"
        assert score < 2.0, f"{unit.name}: exposure {score}"
