"""Momentum: returns, volatility, trend and volume features (a good example; passes validate).

Every feature looks backwards only; the longest window is 60 candles, so LOOKBACK = 60.
"""

import numpy as np
import pandas as pd

NAME = "momentum"
LOOKBACK = 60


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    log_close = np.log(close)
    ret_1 = log_close.diff()
    out = pd.DataFrame(index=candles.index)
    for n in (1, 5, 15, 60):
        out[f"ret_{n}"] = log_close.diff(n)
    out["vol_15"] = ret_1.rolling(15).std()
    out["vol_60"] = ret_1.rolling(60).std()
    out["vol_ratio"] = out["vol_15"] / out["vol_60"]
    out["trend_60"] = close / close.rolling(60).mean() - 1.0
    gain = ret_1.clip(lower=0.0).rolling(14).mean()
    loss = (-ret_1).clip(lower=0.0).rolling(14).mean()
    out["rsi_14"] = gain / (gain + loss)
    out["range_15"] = (np.log(candles["high"] / candles["low"])).rolling(15).mean()
    log_volume = np.log(candles["volume"])
    out["volume_z_60"] = (log_volume - log_volume.rolling(60).mean()) / log_volume.rolling(60).std()
    hour = candles.index.hour + candles.index.minute / 60.0
    out["hour_sin"] = np.sin(2 * np.pi * hour / 24.0)
    out["hour_cos"] = np.cos(2 * np.pi * hour / 24.0)
    out.iloc[:LOOKBACK] = np.nan  # one warm-up for every column
    return out.astype("float64")
