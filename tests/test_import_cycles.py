"""`make lint` fails on an import cycle: the contract in pyproject.toml holds for the tree, and
the same check finds a cycle planted in a package of the same shape."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(config: Path, cwd: Path, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else dict(os.environ)
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(config)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_the_tree_has_no_import_cycle() -> None:
    found = lint(REPO / "pyproject.toml", REPO)
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-2000:]
    assert "no import cycles KEPT" in found.stdout and " kept, 0 broken" in found.stdout


def test_a_planted_cycle_breaks_the_contract(tmp_path: Path) -> None:
    package = tmp_path / "src" / "planted"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "service.py").write_text("from planted import handlers, typed\n")
    (package / "handlers.py").write_text("def bind():\n    from planted.service import handlers  # noqa\n")
    (package / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from planted.service import handlers  # noqa\n")
    # the contract as the tree states it, pointed at the planted package
    tree = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = tree["contracts"][0]
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["planted"]\n'
        f'exclude_type_checking_imports = {str(tree["exclude_type_checking_imports"]).lower()}\n'
        f'[[tool.importlinter.contracts]]\nname = "{contract["name"]}"\ntype = "{contract["type"]}"\n'
        'ancestors = ["planted"]\n')
    found = lint(config, tmp_path, pythonpath=str(tmp_path / "src"))
    assert found.returncode != 0, found.stdout
    assert "No cycles are allowed in planted" in found.stdout
    assert ".handlers -> .service" in found.stdout or ".service -> .handlers" in found.stdout
    assert ".typed" not in found.stdout  # a type checker's import alone is no cycle
