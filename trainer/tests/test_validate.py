"""`validate`: the good example passes, each faulty one fails the check named for its fault."""

from __future__ import annotations

import json
import textwrap

import pytest
from touchstone.trainer.__main__ import main
from touchstone.trainer.validate import CHECK_NAMES, validate

HEADER = "import time\nimport numpy as np\nimport pandas as pd\n"


def source(body: str, name: str = "tmp", lookback: int = 10) -> str:
    return (
        HEADER
        + f"NAME = {name!r}\nLOOKBACK = {lookback}\n\n"
        + "def compute(candles):\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\n"
    )


def failed(report) -> set[str]:
    return {c.name for c in report.checks if not c.passed and not c.skipped}


def test_good_example_passes_through_the_real_cli(run_cli, examples, tmp_path):
    report_path = tmp_path / "report" / "validation.json"
    proc = run_cli("validate", "--feature-set", str(examples / "momentum"), "--report", str(report_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert all(c["passed"] and not c["skipped"] and c["detail"] for c in report["checks"])
    assert report["feature_set"]["name"] == "momentum"
    assert report["feature_set"]["lookback"] == 60
    assert "ret_1" in report["feature_set"]["columns"]
    assert 0 < report["duration_s"] < 60
    assert report["data"]["rows"] >= 5_000
    assert "[validate] passed" in proc.stdout


@pytest.mark.parametrize(
    ("example", "check"),
    [
        ("lookahead", "no_lookahead"),
        ("nan-body", "nan_warmup"),
        ("raises", "runs"),
        ("syntax-error", "imports"),
        ("short-lookback", "lookback"),
    ],
)
def test_faulty_example_fails_exactly_its_check(example, check, examples, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    rc = main(["validate", "--feature-set", str(examples / example), "--report", str(report_path)])
    assert rc == 1
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert {c["name"] for c in report["checks"] if not c["passed"] and not c["skipped"]} == {check}
    assert f"failed: {check}" in capsys.readouterr().out


def test_syntax_error_and_exception_details_point_at_the_line(examples):
    syntax = validate(examples / "syntax-error")
    assert "line 11" in syntax.checks[0].detail
    raises = next(c for c in validate(examples / "raises").checks if c.name == "runs")
    assert "KeyError" in raises.detail and 'candles["Close"]' in raises.detail


@pytest.mark.parametrize(
    ("body", "lookback", "check"),
    [
        # look-ahead by normalising with statistics of the whole series
        (
            "r = candles['close'].pct_change()\nreturn pd.DataFrame({'z': (r - r.mean()) / r.std()}).fillna(0.0)",
            0,
            "no_lookahead",
        ),
        # look-ahead by next candle's return (also leaves a NaN at the end)
        (
            "r = candles['close'].pct_change()\nreturn pd.DataFrame({'next': r.shift(-1)}).fillna(0.0)",
            0,
            "no_lookahead",
        ),
        ("return pd.DataFrame({'x': candles['close'].diff() / 0.0})", 1, "finite"),
        (
            "return pd.DataFrame({'noise': np.random.standard_normal(len(candles))}, index=candles.index)",
            0,
            "deterministic",
        ),
        ("return pd.DataFrame({'c': candles['close'].to_numpy()})", 0, "index"),
        ("return pd.DataFrame({'s': 'up'}, index=candles.index)", 0, "columns"),
        ("return pd.DataFrame(index=candles.index)", 0, "columns"),
        ("return candles['close']", 0, "runs"),
        ("return pd.DataFrame({'cum': candles['volume'].cumsum()})", 0, "lookback"),
    ],
)
def test_other_faults_fail_the_right_check(body, lookback, check, make_feature_set):
    directory = make_feature_set("faulty", source(body, lookback=lookback))
    report = validate(directory)
    assert not report.passed
    assert check in failed(report), [(c.name, c.detail) for c in report.checks]


def test_missing_interface_fails_the_interface_check(make_feature_set):
    directory = make_feature_set("no-name", "LOOKBACK = 'ten'\ndef compute(c):\n    return c\n")
    report = validate(directory)
    assert failed(report) == {"interface"}
    detail = next(c.detail for c in report.checks if c.name == "interface")
    assert "NAME" in detail and "LOOKBACK" in detail


def test_missing_feature_set_file_fails_imports(tmp_path):
    (tmp_path / "empty").mkdir()
    assert failed(validate(tmp_path / "empty")) == {"imports"}


def test_a_slow_feature_set_is_interrupted_at_the_time_budget(make_feature_set, tmp_path):
    body = "time.sleep(0.6)\nreturn pd.DataFrame({'c': candles['close']})"
    directory = make_feature_set("slow", source(body, lookback=0))
    report_path = tmp_path / "r.json"
    rc = main(["validate", "--feature-set", str(directory), "--report", str(report_path), "--time-budget", "1.5"])
    assert rc == 1
    report = json.loads(report_path.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert not checks["time_budget"]["passed"]
    assert any("budget ran out" in c["detail"] for c in report["checks"])
    assert checks["lookback"]["skipped"]
    assert report["duration_s"] < 3.0


def test_feature_set_can_import_a_helper_module_beside_it(make_feature_set):
    directory = make_feature_set(
        "helper",
        source("return pd.DataFrame({'r': helpers.ret(candles)}).fillna(0.0)", lookback=1).replace(
            "import time", "import time\nimport helpers"
        ),
    )
    (directory / "helpers.py").write_text("def ret(c):\n    return c['close'].pct_change()\n")
    report = validate(directory)
    assert report.passed, [(c.name, c.detail) for c in report.checks]


def test_usage_errors_exit_2(tmp_path, capsys):
    rc = main(["validate", "--feature-set", str(tmp_path / "missing"), "--report", str(tmp_path / "r.json")])
    assert rc == 2
    assert "feature set directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--feature-set", str(tmp_path)])  # no --report
    assert exit_info.value.code == 2
