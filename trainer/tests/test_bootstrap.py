"""The circular block bootstrap: blocks are consecutive and wrap, and its interval covers a
known difference and excludes zero only when there is one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from touchstone.trainer.bootstrap import auto_block, circular_blocks, difference_interval, rows_of


def test_blocks_are_runs_of_consecutive_periods_that_wrap_around() -> None:
    idx = circular_blocks(10, 4, np.random.default_rng(1))
    assert len(idx) == 10
    for start in range(0, 8, 4):
        run = idx[start : start + 4]
        assert all((b - a) % 10 == 1 for a, b in itertools.pairwise(run))
    assert auto_block(1000) == 10 and auto_block(1) == 1
    assert rows_of(np.array([0, 2]), 3, 8).tolist() == [0, 1, 2, 6, 7]


def _mean_difference(a: np.ndarray, b: np.ndarray):
    return lambda periods, rows: float(np.mean(a[periods]) - np.mean(b[periods]))


def test_an_autocorrelated_real_difference_is_found_and_noise_is_not() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    shock = np.convolve(rng.normal(size=n + 20), np.ones(20) / 20, mode="valid")[:n]  # strongly autocorrelated
    better = shock + 0.05
    same = shock + rng.normal(scale=0.01, size=n)
    kw = {"rows": n, "horizon": 1, "block": 20, "samples": 300, "confidence": 0.95, "seed": 3}
    found = difference_interval(_mean_difference(better, shock), **kw)
    assert found.beats and found.low < 0.05 < found.high
    noise = difference_interval(_mean_difference(same, shock), **kw)
    assert not noise.beats and not noise.worse and noise.low < 0 < noise.high
    worse = difference_interval(_mean_difference(shock, better), **kw)
    assert worse.worse and not worse.beats


def test_blocks_widen_the_interval_of_autocorrelated_data() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    series = np.convolve(rng.normal(size=n + 50), np.ones(50) / 50, mode="valid")[:n]
    zero = np.zeros(n)
    kw = {"rows": n, "horizon": 1, "samples": 300, "confidence": 0.95, "seed": 5}
    single = difference_interval(_mean_difference(series, zero), block=1, **kw)
    blocks = difference_interval(_mean_difference(series, zero), block=50, **kw)
    assert (blocks.high - blocks.low) > 2 * (single.high - single.low)


def test_the_resample_auc_equals_scikit_learns_weighted_auc() -> None:
    from sklearn.metrics import roc_auc_score
    from touchstone.trainer.baseline import RankedScores

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=500)
    score = np.round(rng.random(500) + 0.3 * y, 1)  # rounded: many ties
    ranked = RankedScores(y, score)
    for _ in range(5):
        rows = rng.integers(0, 500, size=500)
        counts = np.bincount(rows, minlength=500)
        assert ranked.auc(rows) == pytest.approx(roc_auc_score(y, score, sample_weight=counts))
    assert ranked.auc(np.arange(500)) == pytest.approx(roc_auc_score(y, score))
    assert RankedScores(np.ones(3, dtype=int), np.arange(3.0)).auc(np.arange(3)) is None
