"""`train`: features -> labels -> long and short models -> `models/` and `metrics.json`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from . import baseline, checks, evaluation, models
from . import curves as curves_mod
from .config import TrainerConfig
from .data import cut_at, load_candles, period_minutes_of
from .dataset import Dataset, SplitPlan, build_dataset, horizon_candles, plan_split
from .errors import FeatureSetError, TrainingError, UsageError
from .feature_set import FeatureSet, feature_set_file, load_feature_set
from .paths import shown

SIDES = ("long", "short")


@dataclass(frozen=True)
class TrainRequest:
    feature_set_dir: Path
    config: TrainerConfig
    prediction_interval: int
    """Minutes ahead that the labels look."""
    output: Path
    fetched_data_end_to: str | None = None
    config_file: str = ""
    config_overrides: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[trainer] {message}", flush=True)


def progress(say: Callable[[str], None], step: int, steps: int, stage: str) -> None:
    """One machine-readable progress line (touchstone.shared.progress reads it)."""
    say("progress " + json.dumps({"step": step, "steps": steps, "stage": stage}))


def train(req: TrainRequest, say: Callable[[str], None] = log) -> dict[str, Any]:
    """Train both sides and write their models and metrics; returns the metrics."""
    started = time.monotonic()
    cfg = req.config
    if not feature_set_file(req.feature_set_dir).is_file():
        raise UsageError(f"feature set not found: no feature_set.py in {req.feature_set_dir}")

    candles = load_candles(cfg.data)
    if req.fetched_data_end_to:
        candles = cut_at(candles, req.fetched_data_end_to)
    period = period_minutes_of(candles)
    horizon = horizon_candles(req.prediction_interval, period)
    say(
        f"data: {cfg.data.source}, {len(candles)} candles of {period:g} min, "
        f"{candles.index[0].isoformat()} .. {candles.index[-1].isoformat()}"
    )

    steps = 4 + (2 if cfg.baseline.enabled else 0)
    progress(say, 0, steps, "features")
    fs = load_feature_set(req.feature_set_dir)
    say(f"feature set {fs.name!r} (LOOKBACK {fs.lookback}) from {shown(req.feature_set_dir)}")
    plan = plan_split(len(candles), fs.lookback, horizon, cfg.split.test_fraction)
    t0 = time.monotonic()
    features = _features(fs, candles)
    say(f"features: {features.shape[1]} columns in {time.monotonic() - t0:.2f} s")

    ds = build_dataset(candles, features, plan)
    say(
        f"labels: {req.prediction_interval} min ahead ({horizon} candles), threshold "
        f"{cfg.labels.threshold:g}; split: {len(ds.x_train)} train, {len(ds.x_test)} test, "
        f"{ds.purged_rows} purged, {ds.dropped_nan_rows} dropped for NaN"
    )
    fitted = {}
    for i, side in enumerate(SIDES, start=1):
        progress(say, i, steps, f"fit {side}")
        fitted[side] = _train_side(req, ds, side, say)
    sides = {side: result for side, (result, _) in fitted.items()}
    curves: dict[str, Any] = {"format": curves_mod.FORMAT, "prediction_interval": req.prediction_interval}
    baseline_block = None
    if cfg.baseline.enabled:
        baseline_block = _against_baseline(req, candles, plan, ds, fitted, curves, say)

    metrics: dict[str, Any] = {
        "feature_set": {
            "name": fs.name,
            "lookback": fs.lookback,
            "columns": [str(c) for c in features.columns],
        },
        "prediction_interval": req.prediction_interval,
        "prediction_interval_candles": horizon,
        "config": cfg.to_dict(),
        "config_file": req.config_file,
        "config_overrides": list(req.config_overrides),
        "data": {
            "source": cfg.data.source,
            "candles": len(candles),
            "period_minutes": period,
            "start": candles.index[0].isoformat(),
            "end": candles.index[-1].isoformat(),
            "fetched_data_end_to": req.fetched_data_end_to,
        },
        "rows": {
            "train": len(ds.x_train),
            "test": len(ds.x_test),
            "purged": ds.purged_rows,
            "dropped_nan": ds.dropped_nan_rows,
        },
        **sides,
        **({"baseline": baseline_block} if baseline_block else {}),
        "versions": {
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    progress(say, steps - 1, steps, "write")
    metrics["duration_s"] = round(time.monotonic() - started, 3)
    req.output.mkdir(parents=True, exist_ok=True)
    path = req.output / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    curves_path = req.output / "curves.json"
    curves_path.write_text(json.dumps(curves, allow_nan=False) + "\n")
    say(f"wrote {shown(path)} and {shown(curves_path)} in {metrics['duration_s']:.2f} s")
    progress(say, steps, steps, "done")
    return metrics


def _against_baseline(
    req: TrainRequest, candles: pd.DataFrame, plan: SplitPlan, ds: Dataset,
    fitted: dict[str, tuple[dict[str, Any], np.ndarray]], curves: dict[str, Any], say: Callable[[str], None],
) -> dict[str, Any]:
    """Train the baseline per side, compare each side to it (adding ``vs_baseline`` and
    ``verdict`` to the side's metrics) and fill ``curves``."""
    cfg = req.config
    t0 = time.monotonic()
    for i, (side, (result, proba)) in enumerate(fitted.items(), start=3):
        progress(say, i, 6, f"baseline {side}")
        base_ds, base_proba = baseline.fit_baseline(cfg, candles, plan, side)
        p = baseline.pair(cfg, side, ds, proba, base_ds, base_proba)
        compared = baseline.compare(p, side, ds.horizon, req.prediction_interval, cfg)
        result["vs_baseline"] = compared
        result["verdict"] = baseline.verdict(side, compared)
        say(result["verdict"])
        starts = np.arange(0, len(p.returns), ds.horizon)
        sign = 1.0 if side == "long" else -1.0
        curves[side] = {
            "cumulative_return": curves_mod.equity(
                [t.isoformat() for t in p.index[starts]],
                {"model": baseline.period_returns(p, p.model, side, ds.horizon, cfg),
                 "baseline": baseline.period_returns(p, p.baseline, side, ds.horizon, cfg),
                 "passive": sign * p.returns[starts]},
            ),
            "roc": curves_mod.roc(p.y, {"model": p.model, "baseline": p.baseline}),
        }
    say(f"baseline ({baseline.NAME}) trained and compared in {time.monotonic() - t0:.2f} s")
    return {"name": baseline.NAME, "description": baseline.DESCRIPTION, "lookback": baseline.LOOKBACK,
            "samples": cfg.baseline.samples, "confidence": cfg.baseline.confidence,
            "method": "circular block bootstrap over holding periods, percentile interval"}


def _features(fs: FeatureSet, candles: pd.DataFrame) -> pd.DataFrame:
    out = fs.compute(candles)
    for passed, detail in (checks.check_index(candles, out), checks.check_columns(out)):
        if not passed:
            raise FeatureSetError(f"feature set output unusable: {detail}; run validate on it")
    return out


def _train_side(
    req: TrainRequest, ds: Dataset, side: str, say: Callable[[str], None]
) -> tuple[dict[str, Any], np.ndarray]:
    """The side's metrics and its model's probabilities on the test rows."""
    cfg = req.config
    threshold = cfg.labels.threshold
    y_train = ds.labels(side, threshold, "train")
    y_test = ds.labels(side, threshold, "test")
    if len(np.unique(y_train)) < 2:
        raise TrainingError(
            f"{side}: every training label is {int(y_train[0])} with threshold "
            f"{threshold:g}; lower labels.threshold or lengthen the interval"
        )
    t0 = time.monotonic()
    model = models.fit(cfg, ds.x_train, y_train)
    fit_s = time.monotonic() - t0
    for note in model.notes:
        say(f"{side}: warning: {note}")
    decision = cfg.backtest.decision_threshold
    proba_test = model.predict_proba(ds.x_test)
    proba_train = model.predict_proba(ds.x_train)
    result = evaluation.classification_metrics(y_test, proba_test, decision)
    train_metrics = evaluation.classification_metrics(y_train, proba_train, decision)
    result["train_roc_auc"] = train_metrics["roc_auc"]
    result["train_positive_rate"] = train_metrics["positive_rate"]
    result["backtest"] = evaluation.backtest(
        ds.return_test.to_numpy(),
        proba_test,
        side,
        ds.horizon,
        req.prediction_interval,
        decision,
        cfg.backtest.cost_bps,
    )
    meta = {
        "side": side,
        "prediction_interval": req.prediction_interval,
        "label_threshold": threshold,
        "decision_threshold": decision,
    }
    path = models.save(model, req.output / "models" / side, meta)
    result["model_file"] = path.relative_to(req.output).as_posix()
    result["model_kind"] = model.kind
    result["n_iter"] = model.n_iter()
    result["warnings"] = model.notes
    bt = result["backtest"]
    auc = "n/a" if result["roc_auc"] is None else f"{result['roc_auc']:.3f}"
    say(
        f"{side}: {model.kind} fitted in {fit_s:.2f} s; test AUC {auc}, accuracy "
        f"{result['accuracy']:.3f}, F1 {result['f1']:.3f}; backtest {bt['trades']} trades, "
        f"total return {bt['total_return']:+.4f}; wrote {shown(path)}"
    )
    return result, proba_test
