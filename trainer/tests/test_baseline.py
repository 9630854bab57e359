"""The baseline on seeded data: a feature set built from the future return beats it with an
interval that excludes zero; pure noise does not. The report says so in words, and the
curves behind the metrics are written beside them."""

from __future__ import annotations

import json
from pathlib import Path

from touchstone.trainer.__main__ import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def train(capsys, fs: Path, out: Path, *extra: str):
    rc = main(["train", "--feature-set", str(fs), "--config", str(CONFIG), "--prediction-interval", "15",
               "--output", str(out), *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())

SMALL = ["--config_override", "data.rows=30000", "--config_override", "baseline.samples=200"]

FUTURE = '''
import numpy as np
import pandas as pd

NAME = "future"
LOOKBACK = 1


def compute(candles):
    close = candles["close"]
    out = pd.DataFrame(index=candles.index)
    out["future_15"] = close.shift(-15) / close - 1.0   # looks 15 candles ahead: cheating
    out.iloc[:LOOKBACK] = np.nan
    return out.astype("float64")
'''

NOISE = '''
import numpy as np
import pandas as pd

NAME = "noise"
LOOKBACK = 1


def compute(candles):
    rng = np.random.default_rng(123)
    out = pd.DataFrame(rng.normal(size=(len(candles), 3)), index=candles.index, columns=["a", "b", "c"])
    out.iloc[:LOOKBACK] = np.nan
    return out
'''


def test_a_feature_set_from_the_future_return_beats_the_baseline(capsys, make_feature_set, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, stdout, stderr = train(capsys, make_feature_set("future", FUTURE), out, *SMALL)
    assert rc == 0, stderr
    m = metrics_of(out)
    assert m["baseline"]["name"] == "returns" and m["baseline"]["samples"] == 200
    for side in ("long", "short"):
        auc = m[side]["vs_baseline"]["roc_auc"]
        assert auc["beats"] and auc["low"] > 0 and auc["low"] <= auc["difference"] <= auc["high"]
        assert auc["model"] > 0.9 and auc["difference"] == auc["model"] - auc["baseline"]
        assert m[side]["vs_baseline"]["total_return"]["beats"]
        assert m[side]["verdict"].startswith(f"The {side} model beats the baseline (returns")
        assert "roc_auc: beats the baseline" in m[side]["verdict"]
        assert m[side]["verdict"] in stdout
    curves = json.loads((out / "curves.json").read_text())
    equity = curves["long"]["cumulative_return"]
    assert len(equity["t"]) == len(equity["model"]) == len(equity["baseline"]) == len(equity["passive"]) > 10
    assert equity["model"][-1] > equity["baseline"][-1]
    roc = curves["long"]["roc"]["model"]
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and len(roc["fpr"]) <= 400


def test_pure_noise_does_not_beat_the_baseline(capsys, make_feature_set, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, _, stderr = train(capsys, make_feature_set("noise", NOISE), out, *SMALL)
    assert rc == 0, stderr
    m = metrics_of(out)
    for side in ("long", "short"):
        compared = m[side]["vs_baseline"]
        assert not any(c["beats"] for c in compared.values()), compared
        assert compared["roc_auc"]["low"] < compared["roc_auc"]["high"]
        assert m[side]["verdict"].startswith(f"The {side} model does not beat the baseline")


def test_the_baseline_can_be_turned_off(capsys, make_feature_set, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, _, stderr = train(capsys, make_feature_set("noise", NOISE), out, *SMALL,
                          "--config_override", "baseline.enabled=false")
    assert rc == 0, stderr
    m = metrics_of(out)
    assert "baseline" not in m and "vs_baseline" not in m["long"]


def test_progress_lines_count_the_steps(capsys, make_feature_set, tmp_path: Path) -> None:
    rc, stdout, stderr = train(capsys, make_feature_set("noise", NOISE), tmp_path / "out", *SMALL)
    assert rc == 0, stderr
    steps = [json.loads(line.split("progress ", 1)[1]) for line in stdout.splitlines()
             if line.startswith("[trainer] progress ")]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4, 5, 6] and {s["steps"] for s in steps} == {6}
    assert [s["stage"] for s in steps][-1] == "done"
