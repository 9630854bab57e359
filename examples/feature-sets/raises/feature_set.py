"""Faulty example (fails the runs check): compute raises a KeyError.

Candle columns are lower case; "Close" does not exist.
"""

import pandas as pd

NAME = "raises"
LOOKBACK = 10


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["Close"]  # KeyError: the column is "close"
    return pd.DataFrame({"ret_10": close.pct_change(10)}, index=candles.index)
