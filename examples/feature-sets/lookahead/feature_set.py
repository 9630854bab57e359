"""Faulty example (fails the no_lookahead check): a centred rolling mean peeks at future candles.

`rolling(..., center=True)` averages 7 candles ahead as well as 7 behind; the forward fill
hides the NaNs that would otherwise appear at the end, so only the look-ahead check catches it.
"""

import numpy as np
import pandas as pd

NAME = "lookahead"
LOOKBACK = 15


def compute(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    out = pd.DataFrame(index=candles.index)
    out["ret_5"] = np.log(close).diff(5)
    smooth = close.rolling(15, center=True).mean().ffill()  # look-ahead: centred window
    out["smooth_gap"] = close / smooth - 1.0
    out.iloc[:LOOKBACK] = np.nan
    return out
