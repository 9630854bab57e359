"""`train`: models and metrics written, sane, deterministic, configurable, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from touchstone.trainer import models
from touchstone.trainer.__main__ import main
from touchstone.trainer.config import DataConfig
from touchstone.trainer.data import canned_candles
from touchstone.trainer.dataset import build_dataset, plan_split
from touchstone.trainer.feature_set import load_feature_set

pytestmark = pytest.mark.integration  # trains real models through the trainer's CLI

SMALL = ["data.rows=30000"]  # in-process runs train on fewer candles to stay fast
# Gradient boosting with class weights bins its data slowly in recent scikit-learn: tests of
# other behaviour train it unweighted, briefly, on fewer candles.
QUICK_HGB = [
    "model.kind=hist_gradient_boosting",
    "model.class_weight=none",
    "model.hist_gradient_boosting.max_iter=20",
    "data.rows=15000",
]
UNIT_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "positive_rate",
    "predicted_positive_rate",
    "train_roc_auc",
    "train_positive_rate",
)


def train(capsys, fs: Path, out: Path, *extra: str, interval: str = "15", config: str = ""):
    config = config or str(Path(__file__).resolve().parents[1] / "configs" / "default.toml")
    rc = main(
        [
            "train",
            "--feature-set",
            str(fs),
            "--config",
            config,
            "--prediction-interval",
            interval,
            "--output",
            str(out),
            *extra,
        ]
    )
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_sane(m: dict) -> None:
    rows, interval = m["rows"], m["prediction_interval_candles"]
    assert rows["train"] > 0 and rows["test"] > 0
    assert (
        rows["train"] + rows["test"] + rows["purged"] + rows["dropped_nan"] + m["feature_set"]["lookback"] + interval
    ) == m["data"]["candles"]
    for side in ("long", "short"):
        s = m[side]
        for key in UNIT_METRICS:
            assert 0.0 <= s[key] <= 1.0, (side, key, s[key])
        bt = s["backtest"]
        assert bt["periods"] == math.ceil(rows["test"] / interval)
        assert 0 <= bt["trades"] <= bt["periods"]
        assert bt["exposure"] == pytest.approx(bt["trades"] / bt["periods"])
        assert bt["hit_rate"] is None or 0.0 <= bt["hit_rate"] <= 1.0
        assert bt["trades"] == 0 or abs(bt["mean_return"]) < 0.05
        assert bt["total_return"] > -1.0 and 0.0 <= bt["max_drawdown"] < 1.0
        assert bt["sharpe"] is None or math.isfinite(bt["sharpe"])
        assert s["model_file"] == f"models/{side}.json" or s["model_file"].endswith(".pkl")


def test_train_through_the_real_cli_writes_models_and_sane_metrics(run_cli, examples, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        "train",
        "--feature-set",
        str(examples / "momentum"),
        "--config",
        "configs/default.toml",  # not in the cwd: found in the trainer's folder
        "--prediction-interval",
        "15",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "models" / "long.json").is_file()
    assert (out / "models" / "short.json").is_file()
    m = metrics_of(out)
    assert set(m) >= {"feature_set", "prediction_interval", "config", "rows", "long", "short", "duration_s"}
    assert m["feature_set"]["name"] == "momentum"
    assert m["prediction_interval"] == 15
    assert m["config"]["model"]["kind"] == "logistic"
    assert m["data"]["candles"] == DataConfig().rows
    assert_sane(m)
    # volatility clustering makes big moves predictable: both sides must beat chance, and
    # nothing in this market allows near-certainty (that would mean labels leak into features)
    for side in ("long", "short"):
        assert 0.52 < m[side]["roc_auc"] < 0.7
    for phrase in ("[trainer] data:", "[trainer] features:", "[trainer] long:", "[trainer] short:", "metrics.json"):
        assert phrase in proc.stdout


def test_same_seed_same_metrics_and_models(capsys, examples, tmp_path):
    runs = []
    for name in ("a", "b"):
        rc, _, err = train(capsys, examples / "momentum", tmp_path / name, "--config_override", *SMALL)
        assert rc == 0, err
        m = metrics_of(tmp_path / name)
        m.pop("duration_s")
        runs.append(m)
    assert runs[0] == runs[1]
    for side in ("long", "short"):
        a = (tmp_path / "a" / "models" / f"{side}.json").read_bytes()
        assert a == (tmp_path / "b" / "models" / f"{side}.json").read_bytes()


def test_seed_drives_the_gradient_boosting_randomness(capsys, examples, tmp_path):
    hgb = [
        *QUICK_HGB,
        "model.hist_gradient_boosting.early_stopping=true",
        "model.hist_gradient_boosting.n_iter_no_change=50",
    ]
    results = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        rc, _, err = train(capsys, examples / "momentum", tmp_path / name, "--config_override", *hgb, f"seed={seed}")
        assert rc == 0, err
        results[name] = metrics_of(tmp_path / name)["long"]
    assert results["a"] == results["b"]
    assert results["a"]["roc_auc"] != results["c"]["roc_auc"]


def test_overrides_change_labels_and_model(capsys, examples, tmp_path):
    rc, _, _ = train(capsys, examples / "momentum", tmp_path / "base", "--config_override", *SMALL)
    assert rc == 0
    rc, out, _ = train(
        capsys,
        examples / "momentum",
        tmp_path / "wide",
        "--config_override",
        *SMALL,
        "labels.threshold=0.003",
        "--config_override",
        *QUICK_HGB[:3],
        "data.rows=30000",
    )
    assert rc == 0
    base, wide = metrics_of(tmp_path / "base"), metrics_of(tmp_path / "wide")
    assert wide["config"]["labels"]["threshold"] == 0.003
    assert "model.kind=hist_gradient_boosting" in wide["config_overrides"]
    assert wide["config"]["model"]["kind"] == "hist_gradient_boosting"
    for side in ("long", "short"):
        assert wide[side]["positive_rate"] < base[side]["positive_rate"]
        assert wide[side]["model_file"] == f"models/{side}.pkl"
        assert wide[side]["n_iter"] == 20
    assert (tmp_path / "wide" / "models" / "long.pkl").is_file()
    assert not (tmp_path / "wide" / "models" / "long.json").exists()
    assert_sane(wide)
    assert "with overrides" in out


@pytest.mark.parametrize("kind", ["logistic", "hist_gradient_boosting"])
def test_saved_models_reproduce_the_reported_test_auc(kind, capsys, examples, tmp_path):
    extra = QUICK_HGB[1:3] if kind != "logistic" else []
    rc, _, err = train(
        capsys, examples / "momentum", tmp_path, "--config_override", *SMALL, f"model.kind={kind}", *extra
    )
    assert rc == 0, err
    m = metrics_of(tmp_path)
    candles = canned_candles(DataConfig(rows=30_000))
    fs = load_feature_set(examples / "momentum")
    plan = plan_split(len(candles), fs.lookback, 15, m["config"]["split"]["test_fraction"])
    ds = build_dataset(candles, fs.compute(candles), plan)
    for side in ("long", "short"):
        model = models.load(tmp_path / m[side]["model_file"])
        y = ds.labels(side, m["config"]["labels"]["threshold"], "test")
        proba = model.predict_proba(ds.x_test)
        assert np.all((proba >= 0) & (proba <= 1))
        assert roc_auc_score(y, proba) == pytest.approx(m[side]["roc_auc"], abs=1e-12)


def test_csv_source_trains_like_the_same_canned_candles(capsys, examples, tmp_path):
    csv = tmp_path / "candles.csv"
    assert main(["data", "--output", str(csv), "--config_override", *SMALL]) == 0
    rc, _, err = train(capsys, examples / "momentum", tmp_path / "canned", "--config_override", *SMALL)
    assert rc == 0, err
    rc, _, err = train(
        capsys, examples / "momentum", tmp_path / "csv", "--config_override", "data.source=csv", f"data.csv_path={csv}"
    )
    assert rc == 0, err
    canned, from_csv = metrics_of(tmp_path / "canned"), metrics_of(tmp_path / "csv")
    assert from_csv["data"]["source"] == "csv"
    assert from_csv["data"]["candles"] == canned["data"]["candles"]
    for side in ("long", "short"):
        assert from_csv[side] == canned[side]


def test_fetched_data_end_to_cuts_the_data(capsys, examples, tmp_path):
    rc, _, err = train(
        capsys,
        examples / "momentum",
        tmp_path,
        "--fetched-data-end-to",
        "2024-01-20T00:00:00Z",
        "--config_override",
        *SMALL,
    )
    assert rc == 0, err
    data = metrics_of(tmp_path)["data"]
    assert data["end"] == "2024-01-20T00:00:00+00:00"
    assert data["candles"] == 19 * 24 * 60 + 1


@pytest.mark.parametrize(
    ("extra", "interval", "message"),
    [
        (["--config_override", "model.depth=3"], "15", "unknown config key 'model.depth'"),
        ([], "0", "--prediction-interval must be positive"),
        ([], "-15", "--prediction-interval must be positive"),
        (["--config_override", "data.period_minutes=5"], "7", "not a multiple of the 5 min"),
        ([], "20000", "too long for the data"),
        (["--fetched-data-end-to", "2024-01-01T06:00:00Z"], "15", "too long for the data"),
        (["--fetched-data-end-to", "soon"], "15", "not an ISO timestamp"),
        (["--config", "configs/absent.toml"], "15", "config file not found"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(extra, interval, message, capsys, examples, tmp_path):
    rc, _, err = train(capsys, examples / "momentum", tmp_path / "out", *extra, interval=interval)
    assert rc == 2
    assert message in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_feature_set_exits_2(capsys, tmp_path):
    rc, _, err = train(capsys, tmp_path / "nowhere", tmp_path / "out")
    assert rc == 2 and "feature set directory not found" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = train(capsys, tmp_path / "empty", tmp_path / "out")
    assert rc == 2 and "feature set not found" in err


@pytest.mark.parametrize("argv_tail", [["--bogus", "1"], ["extra-positional"], ["--conf", "x"]])
def test_unknown_passthrough_args_exit_2(argv_tail, capsys, examples, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--feature-set",
                str(examples / "momentum"),
                "--config",
                "configs/default.toml",
                "--prediction-interval",
                "15",
                "--output",
                str(tmp_path),
                *argv_tail,
            ]
        )
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_feature_set_that_raises_exits_1(capsys, examples, tmp_path):
    rc, _, err = train(capsys, examples / "raises", tmp_path)
    assert rc == 1
    assert "KeyError" in err
