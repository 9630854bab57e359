"""Market candles: the canned generator, a CSV reader, and the cut at a timestamp.

The canned candles come from a seeded generator, so every container sees the same market
without shipping a data file. The model behind them:

- regimes: a Markov chain over three states (calm uptrend, range, turbulent downtrend), each
  with its own drift, volatility level and short-term autocorrelation (momentum in the
  trends, mean reversion in the range), lasting hours to days;
- volatility clustering: a GARCH(1, 1) variance that pulls towards the regime's level, with
  Student-t (5 degrees of freedom) shocks for fat tails;
- an intraday pattern: volatility and volume rise into the European and US sessions (UTC);
- volume follows the session, the variance and the size of each move, with log-normal noise;
- OHLC: each open is the previous close, highs and lows extend past the body by a random
  share of the bar's volatility, prices are rounded to a 0.01 tick.

The same arguments give identical candles (and bytes, e.g. through `to_csv`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import UsageError

COLUMNS = ["open", "high", "low", "close", "volume"]

# (drift per minute, volatility per minute, lag-1 autocorrelation, mean duration in minutes)
_REGIMES = (
    (+1.5e-5, 0.0006, +0.10, 3000.0),  # calm uptrend
    (0.0, 0.0005, -0.08, 2500.0),  # range
    (-2.5e-5, 0.0014, +0.12, 1200.0),  # turbulent downtrend
)
_GARCH_ALPHA = 0.08
_GARCH_BETA = 0.90
_T_DOF = 5.0
_START_PRICE = 2000.0
_BASE_VOLUME = 40.0


def generate_candles(
    seed: int = 20240101,
    rows: int = 100_000,
    period_minutes: int = 1,
    start: str = "2024-01-01T00:00:00Z",
) -> pd.DataFrame:
    """Seeded synthetic OHLCV candles on a regular UTC index."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(_utc(start), periods=rows, freq=f"{period_minutes}min", name="timestamp")
    scale = math.sqrt(period_minutes)
    hours = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
    vol_season = _session_curve(hours, 0.45)
    volume_season = _session_curve(hours, 0.9)

    regime = _regime_path(rng, rows, period_minutes)
    drift = np.array([r[0] for r in _REGIMES])[regime] * period_minutes
    target_sd = np.array([r[1] for r in _REGIMES])[regime] * scale
    phi = np.array([r[2] for r in _REGIMES])[regime]
    shocks = rng.standard_t(_T_DOF, rows) * math.sqrt((_T_DOF - 2.0) / _T_DOF)
    returns, sigma = _garch_returns(shocks, drift, target_sd, phi, vol_season)

    close = np.round(_START_PRICE * np.exp(np.cumsum(returns)), 2)
    open_ = np.concatenate(([_START_PRICE], close[:-1]))
    wick = np.abs(rng.standard_normal((2, rows))) * 0.6 * sigma
    high = np.round(np.maximum(open_, close) * np.exp(wick[0]), 2)
    low = np.round(np.minimum(open_, close) * np.exp(-wick[1]), 2)
    high = np.maximum(high, np.maximum(open_, close))
    low = np.minimum(low, np.minimum(open_, close))

    surprise = np.abs(returns - drift) / sigma
    noise = rng.lognormal(0.0, 0.35, rows)
    volume = _BASE_VOLUME * period_minutes * volume_season * np.sqrt(sigma / target_sd) * (0.6 + 0.4 * surprise) * noise
    volume = np.maximum(np.round(volume, 4), 0.0001)

    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=index,
    )


@functools.lru_cache(maxsize=4)
def _cached_canned(seed: int, rows: int, period_minutes: int, start: str) -> pd.DataFrame:
    return generate_candles(seed, rows, period_minutes, start)


def canned_candles(config: DataConfig | None = None) -> pd.DataFrame:
    """The canned candles for a data config (generated once per process, then copied)."""
    c = config or DataConfig()
    return _cached_canned(c.seed, c.rows, c.period_minutes, c.start).copy()


def load_candles(config: DataConfig) -> pd.DataFrame:
    """Candles from the configured source, checked for shape and order."""
    if config.source == "csv":
        return read_candles_csv(Path(config.csv_path))
    return canned_candles(config)


def read_candles_csv(path: Path) -> pd.DataFrame:
    """Candles from a CSV with a `timestamp` column (UTC) and the OHLCV columns."""
    if not path.is_file():
        raise UsageError(f"candles CSV not found: {path}")
    frame = pd.read_csv(path)
    missing = [c for c in ["timestamp", *COLUMNS] if c not in frame.columns]
    if missing:
        raise UsageError(f"candles CSV {path} lacks columns {missing}")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True))
    frame.index.name = "timestamp"
    frame = frame[COLUMNS].astype("float64")
    if not frame.index.is_monotonic_increasing or frame.index.has_duplicates:
        raise UsageError(f"candles CSV {path}: timestamps must be strictly ascending")
    if len(frame) < 3:
        raise UsageError(f"candles CSV {path} has too few rows ({len(frame)})")
    steps = np.diff(frame.index.asi8)
    if np.any(steps != steps[0]):
        raise UsageError(f"candles CSV {path}: timestamps must be regularly spaced")
    return frame


def period_minutes_of(candles: pd.DataFrame) -> float:
    """The candle period in minutes (the data is regular)."""
    delta = candles.index[1] - candles.index[0]
    return float(delta.total_seconds()) / 60.0


def cut_at(candles: pd.DataFrame, end: str) -> pd.DataFrame:
    """Candles up to and including `end` (an ISO timestamp, UTC when it has no zone)."""
    try:
        stamp = _utc(end)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--fetched-data-end-to {end!r} is not an ISO timestamp: {e}") from e
    cut = candles.loc[candles.index <= stamp]
    if len(cut) == 0:
        raise UsageError(f"--fetched-data-end-to {end} is before the first candle ({candles.index[0]})")
    return cut


def _utc(text: str) -> pd.Timestamp:
    stamp = pd.Timestamp(text)
    if stamp is pd.NaT:
        raise ValueError("not a time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _session_curve(hours: np.ndarray, strength: float) -> np.ndarray:
    """Activity by UTC hour: quiet Asian night, a European bump, the US session peak."""
    europe = np.exp(-(((hours - 8.5) / 2.0) ** 2))
    us = np.exp(-(((hours - 15.0) / 2.5) ** 2))
    curve = 1.0 + strength * (0.6 * europe + 1.2 * us)
    normalised: np.ndarray = curve / curve.mean()
    return normalised


def _regime_path(rng: np.random.Generator, rows: int, period_minutes: int) -> np.ndarray:
    path = np.empty(rows, dtype=np.int64)
    state, filled = 1, 0
    while filled < rows:
        mean_rows = max(_REGIMES[state][3] / period_minutes, 2.0)
        length = int(rng.geometric(1.0 / mean_rows))
        path[filled : filled + length] = state
        filled += length
        state = (state + 1 + int(rng.integers(0, len(_REGIMES) - 1))) % len(_REGIMES)
    return path


def _garch_returns(
    shocks: np.ndarray,
    drift: np.ndarray,
    target_sd: np.ndarray,
    phi: np.ndarray,
    season: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Log returns with GARCH(1, 1) variance pulled to each regime's level, and their sd."""
    a, b = _GARCH_ALPHA, _GARCH_BETA
    omega = (target_sd**2 * (1.0 - a - b)).tolist()
    z, mu, ar, s = shocks.tolist(), drift.tolist(), phi.tolist(), season.tolist()
    n = len(z)
    returns = [0.0] * n
    sds = [0.0] * n
    var = float(target_sd[0]) ** 2
    eps = prev_excess = 0.0
    for t in range(n):
        var = omega[t] + a * eps * eps + b * var
        sd = math.sqrt(var)
        eps = sd * z[t]
        excess = ar[t] * prev_excess + s[t] * eps
        returns[t] = mu[t] + excess
        sds[t] = s[t] * sd
        prev_excess = excess
    return np.array(returns), np.array(sds)
