"""Faulty example (fails the imports check): a syntax error (a missing closing parenthesis)."""

import pandas as pd

NAME = "syntax-error"
LOOKBACK = 10


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    return pd.DataFrame({"ret_10": close / close.shift(10) - 1.0}, index=candles.index
