"""The contract between the trainer and the platform: whatever feature set it validates, the
report.json the real trainer writes is a valid ``touchstone.shared.reports.ValidationReport``.

The trainer runs from source on a bare image without ``touchstone-shared`` (its pyproject has
no such dependency), so it cannot import the model; it cuts its report to the same bounds
itself. This runs the real trainer CLI the way a task does (``PYTHONPATH=trainer/src``) on
every example and on feature sets that push each bound (a huge NAME, a huge exception, a
thousand long column names), and checks that the two copies of the bounds agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from touchstone.shared import reports
from touchstone.shared.attempt import judge_exit
from touchstone.shared.workdir import read_bounded

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (REPO / "examples" / "feature-sets").iterdir() if p.is_dir())

HOSTILE = {
    "huge-name": '''
import pandas as pd
NAME = "n" * 100_000
LOOKBACK = 0
def compute(c):
    return pd.DataFrame({"a": c["close"]}, index=c.index)
''',
    "huge-exception": '''
NAME = "boom"
LOOKBACK = 0
def compute(c):
    raise ValueError("\\x00é" * 500_000)
''',
    "many-long-columns": '''
import pandas as pd
NAME = "wide"
LOOKBACK = 0
def compute(c):
    return pd.DataFrame({("col_" + "w" * 300 + str(i)): c["close"] for i in range(1000)}, index=c.index)
''',
    "columns-not-numeric": '''
import pandas as pd
NAME = "text"
LOOKBACK = 0
def compute(c):
    return pd.DataFrame({("t" * 5000 + str(i)): "x" for i in range(300)}, index=c.index)
''',
}


def _validate(feature_set: Path, report: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "trainer" / "src")}
    return subprocess.run(
        [sys.executable, "-m", "touchstone.trainer", "validate", "--feature-set", str(feature_set),
         "--report", str(report), "--time-budget", "60"],
        env=env, capture_output=True, text=True, timeout=180,
    )


def _read(work: Path) -> reports.ValidationReport:
    """The report as the platform reads it (the agent's and RunPod's reader)."""
    report, problem = reports.read_report(work, "out/report.json")
    assert problem is None, problem
    assert report is not None
    return report


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_trainers_report_on_every_example_is_a_valid_report(tmp_path: Path, example: Path) -> None:
    done = _validate(example, tmp_path / "out" / "report.json")
    assert done.returncode in (0, 1), done.stderr
    report = _read(tmp_path)
    assert report.passed is (done.returncode == 0)
    assert [c.name for c in report.checks][-1] == "time_budget" and len(report.checks) == 11
    assert judge_exit(done.returncode, "validation", report).succeeded  # a verdict either way


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_feature_set_pushing_the_bounds_still_gets_a_valid_report(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "fs"
    folder.mkdir()
    (folder / "feature_set.py").write_text(HOSTILE[name])
    done = _validate(folder, tmp_path / "out" / "report.json")
    assert done.returncode in (0, 1), done.stderr
    report = _read(tmp_path)
    assert report.passed is (done.returncode == 0)
    assert judge_exit(done.returncode, "validation", report).succeeded  # a verdict, not a fault
    if name in ("huge-exception", "columns-not-numeric"):
        (failed,) = report.failed()
        assert failed.name == ("runs" if name == "huge-exception" else "columns")
        assert failed.detail.endswith("…") and len(failed.detail) == reports.MAX_DETAIL_CHARS
    assert len(read_bounded(tmp_path, "out/report.json", 1 << 20)) < reports.MAX_REPORT_FILE_BYTES
    if name == "huge-name":
        assert report.feature_set.name == "n" * (reports.MAX_NAME_CHARS - 1) + "…"
    if name == "many-long-columns":
        assert report.feature_set.columns_total == 1000
        assert len(report.feature_set.columns) == reports.MAX_COLUMNS
        assert all(c.endswith("…") for c in report.feature_set.columns)


def test_the_trainer_cuts_to_the_bounds_the_platform_accepts() -> None:
    sys.path.insert(0, str(REPO / "trainer" / "src"))
    from touchstone.trainer import validate

    for bound in ("MAX_DETAIL_CHARS", "MAX_NAME_CHARS", "MAX_COLUMNS", "MAX_COLUMN_CHARS"):
        assert getattr(validate, bound) == getattr(reports, bound), bound
    assert len(validate.CHECK_NAMES) <= reports.MAX_CHECKS
    assert max(map(len, validate.CHECK_NAMES)) <= reports.MAX_CHECK_NAME_CHARS
