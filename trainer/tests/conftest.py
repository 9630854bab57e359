"""Shared fixtures: where the trainer and the examples live, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

TRAINER_DIR = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = TRAINER_DIR.parent / "examples" / "feature-sets"


@pytest.fixture
def examples() -> Path:
    return EXAMPLES_DIR


@pytest.fixture
def trainer_dir() -> Path:
    return TRAINER_DIR


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m touchstone.trainer ARGS` the way containers do: PYTHONPATH=trainer/src."""

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(TRAINER_DIR / "src")}
        return subprocess.run(
            [sys.executable, "-m", "touchstone.trainer", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    return run


@pytest.fixture
def make_feature_set(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a feature set directory with the given feature_set.py source."""

    def make(name: str, source: str) -> Path:
        directory = tmp_path / "feature-sets" / name
        directory.mkdir(parents=True)
        (directory / "feature_set.py").write_text(source)
        return directory

    return make
