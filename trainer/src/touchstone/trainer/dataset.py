"""From candles and features to labelled, chronologically split training data.

Row t is labelled with the return from its close to the close `h` candles later, where `h`
is the prediction interval in candles: long label = return > threshold, short label =
return < -threshold. Rows before LOOKBACK (feature warm-up) and the last `h` rows (no future
yet) are not labelled. The most recent `test_fraction` of labelled rows is the test split;
the `h` rows before it are purged from training, since their labels look into the test
period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import TrainingError, UsageError

MIN_TRAIN_ROWS = 1_000
MIN_TEST_INTERVALS = 10


@dataclass(frozen=True)
class SplitPlan:
    horizon: int
    """Prediction interval in candles."""
    first: int
    """First labelled row (the feature warm-up ends)."""
    test_start: int
    """First test row."""
    end: int
    """One past the last labelled row."""

    @property
    def train_end(self) -> int:
        """One past the last training row (purged of rows whose label reaches the test)."""
        return self.test_start - self.horizon


@dataclass(frozen=True)
class Dataset:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    return_train: pd.Series
    """Future return over the interval of each training row."""
    return_test: pd.Series
    horizon: int
    dropped_nan_rows: int
    purged_rows: int

    def labels(self, side: str, threshold: float, split: str) -> np.ndarray:
        returns = self.return_train if split == "train" else self.return_test
        values = returns.to_numpy()
        hit: np.ndarray = values > threshold if side == "long" else values < -threshold
        return hit.astype(int)


def horizon_candles(interval_minutes: int, period_minutes: float) -> int:
    """The prediction interval in candles; a usage error unless it is a positive multiple."""
    if interval_minutes <= 0:
        raise UsageError(f"--prediction-interval must be positive, got {interval_minutes}")
    ratio = interval_minutes / period_minutes
    if abs(ratio - round(ratio)) > 1e-9:
        raise UsageError(
            f"--prediction-interval {interval_minutes} min is not a multiple of the "
            f"{period_minutes:g} min candle period"
        )
    return round(ratio)


def plan_split(rows: int, lookback: int, horizon: int, test_fraction: float) -> SplitPlan:
    """Where the splits fall; a usage error when the interval is too long for the data."""
    first, end = lookback, rows - horizon
    labelled = end - first
    test_rows = math.ceil(labelled * test_fraction) if labelled > 0 else 0
    test_start = end - test_rows
    train_rows = test_start - horizon - first
    if train_rows < MIN_TRAIN_ROWS or test_rows < MIN_TEST_INTERVALS * horizon:
        raise UsageError(
            f"prediction interval of {horizon} candles is too long for the data: {rows} "
            f"candles (LOOKBACK {lookback}) leave {max(train_rows, 0)} training rows (need "
            f"{MIN_TRAIN_ROWS}) and {max(test_rows, 0)} test rows (need "
            f"{MIN_TEST_INTERVALS} intervals = {MIN_TEST_INTERVALS * horizon})"
        )
    return SplitPlan(horizon=horizon, first=first, test_start=test_start, end=end)


def build_dataset(candles: pd.DataFrame, features: pd.DataFrame, plan: SplitPlan) -> Dataset:
    close = candles["close"].to_numpy(dtype="float64")
    future = np.full(len(close), np.nan)
    future[: len(close) - plan.horizon] = close[plan.horizon :] / close[: -plan.horizon] - 1.0
    forward = pd.Series(future, index=candles.index, name="forward_return")
    x = features.astype("float64")
    if np.isinf(x.to_numpy()).any():
        raise TrainingError("the feature set returned infinite values; run validate on it")

    def rows(start: int, stop: int) -> tuple[pd.DataFrame, pd.Series, int]:
        part = x.iloc[start:stop]
        keep = ~part.isna().any(axis=1).to_numpy()
        return part[keep], forward.iloc[start:stop][keep], int((~keep).sum())

    x_train, r_train, nan_train = rows(plan.first, plan.train_end)
    x_test, r_test, nan_test = rows(plan.test_start, plan.end)
    if len(x_train) < MIN_TRAIN_ROWS or len(x_test) < MIN_TEST_INTERVALS:
        raise TrainingError(f"too few rows without NaN features: {len(x_train)} train, {len(x_test)} test")
    return Dataset(
        x_train=x_train,
        x_test=x_test,
        return_train=r_train,
        return_test=r_test,
        horizon=plan.horizon,
        dropped_nan_rows=nan_train + nan_test,
        purged_rows=plan.horizon,
    )
