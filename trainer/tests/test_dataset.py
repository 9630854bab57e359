"""Labels, the chronological split with its purge, and the backtest, on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from touchstone.trainer.dataset import build_dataset, horizon_candles, plan_split
from touchstone.trainer.errors import UsageError
from touchstone.trainer.evaluation import backtest, classification_metrics


def frame(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = pd.date_range("2024-01-01", periods=rows, freq="1min", tz="UTC")
    close = 100.0 * np.exp(np.cumsum(np.sin(np.arange(rows) / 7.0) * 0.002))
    candles = pd.DataFrame({"close": close}, index=index)
    features = pd.DataFrame({"f": np.arange(rows, dtype=float)}, index=index)
    return candles, features


def test_labels_look_forward_by_the_interval_and_the_split_is_purged():
    candles, features = frame(3_000)
    plan = plan_split(len(candles), lookback=20, horizon=5, test_fraction=0.25)
    ds = build_dataset(candles, features, plan)
    close = candles["close"].to_numpy()
    # row ids survive as the feature value: check the forward return of a few rows
    for split_x, split_r in ((ds.x_train, ds.return_train), (ds.x_test, ds.return_test)):
        rows = split_x["f"].to_numpy().astype(int)
        np.testing.assert_allclose(split_r.to_numpy(), close[rows + 5] / close[rows] - 1.0)
    train_rows, test_rows = ds.x_train["f"].astype(int), ds.x_test["f"].astype(int)
    assert train_rows.iloc[0] == 20  # warm-up dropped
    assert test_rows.iloc[-1] == 3_000 - 5 - 1  # last rows have no future
    assert test_rows.iloc[0] - train_rows.iloc[-1] == 5 + 1  # purged: labels never reach test
    assert len(ds.x_test) == pytest.approx(0.25 * (3_000 - 20 - 5), abs=1)
    long = ds.labels("long", 0.001, "test")
    short = ds.labels("short", 0.001, "test")
    np.testing.assert_array_equal(long, (ds.return_test > 0.001).astype(int))
    np.testing.assert_array_equal(short, (ds.return_test < -0.001).astype(int))
    assert not (long & short).any()


def test_rows_with_nan_features_are_dropped_and_counted():
    candles, features = frame(3_000)
    features.iloc[100:110, 0] = np.nan
    ds = build_dataset(candles, features, plan_split(3_000, 0, 5, 0.25))
    assert ds.dropped_nan_rows == 10
    assert not ds.x_train.isna().any().any()


@pytest.mark.parametrize(
    ("interval", "period", "message"),
    [(0, 1, "must be positive"), (7, 5, "not a multiple"), (-5, 5, "must be positive")],
)
def test_bad_intervals(interval, period, message):
    with pytest.raises(UsageError, match=message):
        horizon_candles(interval, period)


def test_interval_multiples_of_the_period():
    assert horizon_candles(15, 5) == 3
    assert horizon_candles(60, 1) == 60


def test_too_long_an_interval_for_the_data():
    with pytest.raises(UsageError, match="too long"):
        plan_split(rows=3_000, lookback=0, horizon=200, test_fraction=0.25)


def test_backtest_holds_non_overlapping_intervals_and_pays_costs():
    returns = np.array([0.01, 0.5, 0.5, -0.02, 0.5, 0.5, 0.03])  # rows 0, 3, 6 start periods
    always = backtest(returns, np.ones(7), "long", 3, 15, 0.5, cost_bps=10.0)
    net = np.array([0.01, -0.02, 0.03]) - 0.001
    assert always["periods"] == 3 and always["trades"] == 3
    assert always["total_return"] == pytest.approx(np.prod(1 + net) - 1)
    assert always["mean_return"] == pytest.approx(net.mean())
    assert always["hit_rate"] == pytest.approx(2 / 3)
    assert always["max_drawdown"] == pytest.approx(0.021)
    assert always["passive_return"] == pytest.approx(np.prod([1.01, 0.98, 1.03]) - 1)
    short = backtest(returns, np.ones(7), "short", 3, 15, 0.5, cost_bps=0.0)
    assert short["total_return"] == pytest.approx(np.prod([0.99, 1.02, 0.97]) - 1)
    never = backtest(returns, np.zeros(7), "long", 3, 15, 0.5, cost_bps=10.0)
    assert never["trades"] == 0 and never["total_return"] == 0.0
    assert never["sharpe"] is None and never["hit_rate"] is None


def test_classification_metrics_on_a_known_case():
    y = np.array([1, 0, 1, 0])
    m = classification_metrics(y, np.array([0.9, 0.8, 0.7, 0.1]), decision=0.5)
    assert m["accuracy"] == 0.75 and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0 and m["roc_auc"] == 0.75
    assert classification_metrics(np.zeros(4, int), np.full(4, 0.2), 0.5)["roc_auc"] is None
