"""Evaluating one side's model on the test split: classification metrics and a backtest.

Backtest: the test split is cut into consecutive, non-overlapping holding periods of one
prediction interval. At the start of each, the strategy takes the side's position (long, or
short) when the model's probability exceeds `backtest.decision_threshold`, holds it for the
interval and closes it, paying `backtest.cost_bps` per trade. Per trade it reports the net
return; `sharpe` is the mean over the std of the per-period net returns (zero when flat),
annualised with 365 days of periods (the canned market trades around the clock).
`passive_return` holds the side's position through every period, without costs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

MINUTES_PER_YEAR = 365 * 24 * 60


def classification_metrics(y: np.ndarray, proba: np.ndarray, decision: float) -> dict[str, Any]:
    predicted = (proba > decision).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, average="binary", pos_label=1, zero_division=0
    )
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(roc_auc_score(y, proba)) if both_classes else None,
        "positive_rate": float(np.mean(y)),
        "predicted_positive_rate": float(np.mean(predicted)),
    }


def backtest(
    forward_returns: np.ndarray,
    proba: np.ndarray,
    side: str,
    horizon: int,
    interval_minutes: int,
    decision: float,
    cost_bps: float,
) -> dict[str, Any]:
    sign = 1.0 if side == "long" else -1.0
    starts = np.arange(0, len(forward_returns), horizon)
    market = forward_returns[starts]
    held = proba[starts] > decision
    net = np.where(held, sign * market - cost_bps / 1e4, 0.0)
    trades = net[held]
    equity = np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    sd = float(np.std(net))
    periods_per_year = MINUTES_PER_YEAR / interval_minutes
    sharpe = float(np.mean(net)) / sd * math.sqrt(periods_per_year) if sd > 0 else None
    return {
        "periods": len(starts),
        "trades": len(trades),
        "exposure": float(np.mean(held)),
        "hit_rate": float(np.mean(trades > 0)) if len(trades) else None,
        "mean_return": float(np.mean(trades)) if len(trades) else None,
        "total_return": float(equity[-1] - 1.0),
        "sharpe": sharpe,
        "max_drawdown": float(np.max(1.0 - equity / peak)),
        "passive_return": float(np.prod(1.0 + sign * market) - 1.0),
    }
