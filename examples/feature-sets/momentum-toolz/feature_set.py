"""Momentum, composed with toolz: a good example with a ``requirements.txt``.

The agent installs the requirements (wheels only, cached by the file's hash) before the task
runs; the task itself has no network. Every feature looks backwards only; the longest window is
60 candles, so LOOKBACK = 60.
"""

import numpy as np
import pandas as pd
from toolz import merge, valmap

NAME = "momentum-toolz"
LOOKBACK = 60


def _returns(log_close: pd.Series) -> dict[str, pd.Series]:
    return {f"ret_{n}": log_close.diff(n) for n in (1, 5, 15, 60)}


def _volatility(log_close: pd.Series) -> dict[str, pd.Series]:
    ret_1 = log_close.diff()
    vol = {f"vol_{n}": ret_1.rolling(n).std() for n in (15, 60)}
    return {**vol, "vol_ratio": vol["vol_15"] / vol["vol_60"]}


def _trend(close: pd.Series) -> dict[str, pd.Series]:
    return {f"trend_{n}": close / close.rolling(n).mean() - 1.0 for n in (15, 60)}


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    log_close = np.log(close)
    features = merge(_returns(log_close), _volatility(log_close), _trend(close))
    out = pd.DataFrame(valmap(lambda s: s.astype("float64"), features), index=candles.index)
    out.iloc[:LOOKBACK] = np.nan  # one warm-up for every column
    return out
