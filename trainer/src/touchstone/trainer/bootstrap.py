"""A circular block bootstrap over time, for the difference of a statistic between two models
evaluated on the same test rows.

The test rows are a time series: neighbouring rows share most of their future-return window
and markets cluster in volatility, so rows are not independent draws. The unit here is the
holding period (``horizon`` consecutive rows, as in the backtest); a resample concatenates
blocks of ``block`` consecutive periods from random starts, wrapping around the end (Politis
and Romano's circular blocks), until it has as many periods as the data. Each resample
evaluates ``statistic`` on the same rows for both models, so the interval is of the paired
difference. The interval is the percentile interval of the resampled differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    """The difference on the data as they are."""
    low: float | None
    high: float | None
    confidence: float
    samples: int
    """Resamples on which the statistic was defined (for example both classes present)."""

    @property
    def beats(self) -> bool:
        return self.low is not None and self.low > 0

    @property
    def worse(self) -> bool:
        return self.high is not None and self.high < 0


def auto_block(periods: int) -> int:
    """The cube root of the series length: the usual rate for a block bootstrap of a mean."""
    return max(1, round(periods ** (1 / 3)))


def circular_blocks(periods: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Period indices of one resample: ``ceil(periods / block)`` blocks from random starts,
    wrapping around, cut to ``periods``."""
    block = max(1, min(block, periods))
    starts = rng.integers(0, periods, size=math.ceil(periods / block))
    return ((starts[:, None] + np.arange(block)[None, :]) % periods).ravel()[:periods]


def rows_of(periods: np.ndarray, horizon: int, rows: int) -> np.ndarray:
    """The row indices covered by the given periods (period k holds rows k*h .. k*h+h-1)."""
    idx = (periods[:, None] * horizon + np.arange(horizon)[None, :]).ravel()
    return idx[idx < rows]


def difference_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float | None],
    *,
    rows: int,
    horizon: int,
    block: int,
    samples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """``statistic(period_idx, row_idx)`` returns model minus baseline on those rows (or None
    where undefined); the interval of that difference over ``samples`` block resamples."""
    periods = math.ceil(rows / horizon)
    all_periods = np.arange(periods)
    estimate = statistic(all_periods, np.arange(rows))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        chosen = circular_blocks(periods, block, rng)
        value = statistic(chosen, rows_of(chosen, horizon, rows))
        if value is not None and math.isfinite(value):
            values.append(value)
    if len(values) < max(10, samples // 2):
        return Interval(estimate, None, None, confidence, len(values))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), confidence, len(values))
