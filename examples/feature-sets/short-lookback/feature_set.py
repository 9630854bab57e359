"""Faulty example (fails the lookback check): LOOKBACK is shorter than the history used.

An exponential moving average with a span of 200 candles remembers far more than the
declared 5 candles; set LOOKBACK to about 7 x span (1,400) for it to settle to 1e-6.
"""

import numpy as np
import pandas as pd

NAME = "short-lookback"
LOOKBACK = 5


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    out = pd.DataFrame(index=candles.index)
    out["ret_5"] = np.log(close).diff(5)
    out["ema_gap_200"] = close / close.ewm(span=200).mean() - 1.0
    out.iloc[:LOOKBACK] = np.nan
    return out
