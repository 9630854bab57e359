"""Faulty example (fails the nan_warmup check): NaNs in the middle of the output.

The square root of a return is NaN whenever the return is negative, i.e. about half the rows,
long after the LOOKBACK warm-up.
"""

import numpy as np
import pandas as pd

NAME = "nan-body"
LOOKBACK = 5


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    out = pd.DataFrame(index=candles.index)
    out["ret_5"] = close / close.shift(5) - 1.0
    with np.errstate(invalid="ignore"):
        out["sqrt_ret_5"] = np.sqrt(out["ret_5"])  # NaN for every negative return
    return out
