"""The baseline: a built-in feature set of past returns only, trained with the same config,
interval, data window and seed as the submitted one, and each side's metrics compared to it
on the same test rows with a block-bootstrap interval (see ``bootstrap``).

A side "beats the baseline" on a metric only when the difference's whole interval lies above
zero; the words in ``verdict`` say so, metric by metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import models
from .bootstrap import Interval, auto_block, difference_interval
from .config import TrainerConfig
from .dataset import Dataset, SplitPlan, build_dataset
from .feature_set import FeatureSet

NAME = "returns"
DESCRIPTION = "past log returns over 1, 5, 15 and 60 candles"
LOOKBACK = 60
COMPARED = ("roc_auc", "accuracy", "sharpe", "total_return")
PERIODS_PER_YEAR_MINUTES = 365 * 24 * 60


def returns_only(candles: pd.DataFrame) -> pd.DataFrame:
    log_close = np.log(candles["close"])
    out = pd.DataFrame({f"ret_{n}": log_close.diff(n) for n in (1, 5, 15, 60)}, index=candles.index)
    out.iloc[:LOOKBACK] = np.nan
    return out.astype("float64")


FEATURE_SET = FeatureSet(name=f"baseline:{NAME}", lookback=LOOKBACK, compute_fn=returns_only,
                         directory=Path("<built-in>"))


@dataclass(frozen=True)
class Paired:
    """One side's two models on the test rows both have, in time order."""

    y: np.ndarray
    returns: np.ndarray
    model: np.ndarray
    baseline: np.ndarray
    index: pd.DatetimeIndex


def fit_baseline(cfg: TrainerConfig, candles: pd.DataFrame, plan: SplitPlan, side: str) -> tuple[Dataset, np.ndarray]:
    """The baseline's dataset on the same split and its probabilities on the test rows."""
    ds = build_dataset(candles, FEATURE_SET.compute(candles), plan)
    y = ds.labels(side, cfg.labels.threshold, "train")
    model = models.fit(cfg, ds.x_train, y)
    return ds, model.predict_proba(ds.x_test)


def pair(cfg: TrainerConfig, side: str, ds: Dataset, proba: np.ndarray, base_ds: Dataset,
         base_proba: np.ndarray) -> Paired:
    common = ds.x_test.index.intersection(base_ds.x_test.index)
    model = pd.Series(proba, index=ds.x_test.index).loc[common].to_numpy()
    base = pd.Series(base_proba, index=base_ds.x_test.index).loc[common].to_numpy()
    returns = ds.return_test.loc[common].to_numpy()
    hit = returns > cfg.labels.threshold if side == "long" else returns < -cfg.labels.threshold
    return Paired(hit.astype(int), returns, model, base, pd.DatetimeIndex(common))


def period_returns(p: Paired, proba: np.ndarray, side: str, horizon: int, cfg: TrainerConfig) -> np.ndarray:
    """Net return of each holding period (as the backtest trades it)."""
    sign = 1.0 if side == "long" else -1.0
    starts = np.arange(0, len(p.returns), horizon)
    held = proba[starts] > cfg.backtest.decision_threshold
    return np.where(held, sign * p.returns[starts] - cfg.backtest.cost_bps / 1e4, 0.0)


def _sharpe(net: np.ndarray, interval_minutes: int) -> float | None:
    sd = float(np.std(net))
    return float(np.mean(net)) / sd * math.sqrt(PERIODS_PER_YEAR_MINUTES / interval_minutes) if sd > 0 else None


class RankedScores:
    """A score's distinct values, ranked once, so the AUC of any resample (rows drawn with
    repeats) is two weighted counts, not a new sort: the Mann-Whitney form, P(a positive row
    scores above a negative one) with ties counting one half. Equal to scikit-learn's
    ``roc_auc_score(y, score, sample_weight=counts)`` (a test checks)."""

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        self.y = y.astype(bool)
        _, self.group = np.unique(score, return_inverse=True)
        self.groups = int(self.group.max()) + 1 if len(score) else 0

    def auc(self, rows: np.ndarray) -> float | None:
        counts = np.bincount(rows, minlength=len(self.y)).astype(float)
        pos = np.bincount(self.group, weights=counts * self.y, minlength=self.groups)
        neg = np.bincount(self.group, weights=counts * ~self.y, minlength=self.groups)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.cumsum(neg) - neg
        return float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))


def statistics(p: Paired, side: str, horizon: int, interval_minutes: int,
               cfg: TrainerConfig) -> dict[str, Callable[[np.ndarray, np.ndarray], tuple[float | None, float | None]]]:
    """Per compared metric: (period indices, row indices) -> (model's value, baseline's value)."""
    decision = cfg.backtest.decision_threshold
    net_m = period_returns(p, p.model, side, horizon, cfg)
    net_b = period_returns(p, p.baseline, side, horizon, cfg)
    ranked_m, ranked_b = RankedScores(p.y, p.model), RankedScores(p.y, p.baseline)
    right_m = (p.model > decision) == p.y.astype(bool)
    right_b = (p.baseline > decision) == p.y.astype(bool)
    return {
        "roc_auc": lambda _, rows: (ranked_m.auc(rows), ranked_b.auc(rows)),
        "accuracy": lambda _, rows: (float(np.mean(right_m[rows])), float(np.mean(right_b[rows]))),
        "sharpe": lambda per, _: (_sharpe(net_m[per], interval_minutes), _sharpe(net_b[per], interval_minutes)),
        "total_return": lambda per, _: (float(np.prod(1 + net_m[per]) - 1), float(np.prod(1 + net_b[per]) - 1)),
    }


def _difference(pair_fn: Callable[[np.ndarray, np.ndarray], tuple[float | None, float | None]]):
    def diff(periods: np.ndarray, rows: np.ndarray) -> float | None:
        m, b = pair_fn(periods, rows)
        return None if m is None or b is None else m - b

    return diff


def compare(p: Paired, side: str, horizon: int, interval_minutes: int, cfg: TrainerConfig) -> dict[str, Any]:
    """``{metric: comparison}`` of one side, every interval from the same seed."""
    rows = len(p.y)
    periods = math.ceil(rows / horizon)
    block = cfg.baseline.block_periods or auto_block(periods)
    out: dict[str, Any] = {}
    all_rows = np.arange(rows)
    for name, fn in statistics(p, side, horizon, interval_minutes, cfg).items():
        model_value, base_value = fn(np.arange(periods), all_rows)
        iv = difference_interval(_difference(fn), rows=rows, horizon=horizon, block=block,
                                 samples=cfg.baseline.samples, confidence=cfg.baseline.confidence, seed=cfg.seed)
        out[name] = comparison(model_value, base_value, iv, block)
    return out


def comparison(model_value: float | None, base_value: float | None, iv: Interval, block: int) -> dict[str, Any]:
    return {
        "model": model_value, "baseline": base_value, "difference": iv.estimate, "low": iv.low,
        "high": iv.high, "confidence": iv.confidence, "beats": iv.beats, "worse": iv.worse,
        "samples": iv.samples, "block_periods": block,
    }


def verdict(side: str, compared: dict[str, Any]) -> str:
    """The comparison in words, one clause per metric."""
    parts = []
    for name, c in compared.items():
        if c["difference"] is None or c["low"] is None:
            parts.append(f"{name}: not comparable (undefined on these rows)")
            continue
        ci = f"{c['difference']:+.4g}, {c['confidence']:.0%} interval {c['low']:+.4g} to {c['high']:+.4g}"
        if c["beats"]:
            parts.append(f"{name}: beats the baseline ({ci})")
        elif c["worse"]:
            parts.append(f"{name}: worse than the baseline ({ci})")
        else:
            parts.append(f"{name}: does not beat the baseline, the interval holds zero ({ci})")
    won = [n for n, c in compared.items() if c["beats"]]
    head = (f"The {side} model beats the baseline ({NAME}: {DESCRIPTION}) on {', '.join(won)}"
            if won else f"The {side} model does not beat the baseline ({NAME}: {DESCRIPTION}) on any metric")
    return head + ". " + "; ".join(parts) + "."
