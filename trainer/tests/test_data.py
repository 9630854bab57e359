"""The canned candles: size, shape, OHLC consistency, determinism, market-like behaviour."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from touchstone.trainer.__main__ import main
from touchstone.trainer.config import DataConfig
from touchstone.trainer.data import (
    canned_candles,
    cut_at,
    generate_candles,
    read_candles_csv,
)
from touchstone.trainer.errors import UsageError


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return canned_candles()


def test_canned_data_is_a_regular_utc_series_of_at_least_50k_candles(candles):
    assert len(candles) >= 50_000
    assert list(candles.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in candles.dtypes)
    index = candles.index
    assert isinstance(index, pd.DatetimeIndex)
    assert str(index.tz) == "UTC"
    assert index.is_monotonic_increasing and not index.has_duplicates
    steps = index[1:] - index[:-1]
    assert (steps == pd.Timedelta(minutes=DataConfig().period_minutes)).all()


def test_ohlc_is_consistent(candles):
    o, h, lo, c, v = (candles[k].to_numpy() for k in ["open", "high", "low", "close", "volume"])
    assert np.isfinite(candles.to_numpy()).all()
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    assert (o[1:] == c[:-1]).all()  # each candle opens at the previous close


def test_same_seed_gives_identical_bytes_and_another_seed_differs():
    first = generate_candles(seed=7, rows=5_000)
    second = generate_candles(seed=7, rows=5_000)
    other = generate_candles(seed=8, rows=5_000)
    digest = [hashlib.sha256(f.to_csv().encode()).hexdigest() for f in (first, second, other)]
    assert digest[0] == digest[1]
    assert digest[0] != digest[2]


def test_cached_candles_are_private_copies():
    a = canned_candles()
    a.iloc[0, 0] = -1.0
    assert canned_candles().iloc[0, 0] > 0


def test_market_has_volatility_clustering_fat_tails_regimes_and_sessions(candles):
    returns = np.log(candles["close"]).diff().dropna()
    size = returns.abs()
    assert size.autocorr(1) > 0.1  # volatility clustering
    assert size.autocorr(60) > 0.05  # ... that persists
    assert returns.kurt() > 3.0  # fat tails
    daily_vol = returns.groupby(returns.index.floor("D")).std()
    assert daily_vol.max() / daily_vol.min() > 1.8  # calm and turbulent regimes
    by_hour = candles["volume"].groupby(candles.index.hour).mean()
    assert by_hour.max() / by_hour.min() > 1.5  # intraday volume pattern
    assert by_hour.idxmax() in range(12, 19)  # busiest in the US session


def test_period_rows_and_start_follow_the_config():
    frame = canned_candles(DataConfig(rows=3_000, period_minutes=5, start="2023-06-01T12:00:00Z"))
    assert len(frame) == 3_000
    assert frame.index[0] == pd.Timestamp("2023-06-01T12:00:00Z")
    assert ((frame.index[1:] - frame.index[:-1]) == pd.Timedelta(minutes=5)).all()


def test_cut_at_keeps_candles_up_to_and_including_the_time(candles):
    cut = cut_at(candles, "2024-01-15T12:30:00Z")
    assert cut.index[-1] == pd.Timestamp("2024-01-15T12:30:00Z")
    assert cut.index.equals(candles.index[: len(cut)])
    naive = cut_at(candles, "2024-01-15 12:30")  # no zone means UTC
    assert naive.index.equals(cut.index)
    with pytest.raises(UsageError, match="before the first candle"):
        cut_at(candles, "2020-01-01")
    with pytest.raises(UsageError, match="not an ISO timestamp"):
        cut_at(candles, "yesterday-ish")


def test_data_command_writes_a_csv_that_reads_back_equal(tmp_path, capsys):
    path = tmp_path / "candles.csv"
    rc = main(["data", "--output", str(path), "--config_override", "data.rows=4000"])
    assert rc == 0
    assert "4000 candles" in capsys.readouterr().out
    back = read_candles_csv(path)
    original = canned_candles(DataConfig(rows=4_000))
    assert back.index.equals(original.index)
    np.testing.assert_allclose(back.to_numpy(), original.to_numpy(), rtol=1e-12)
