"""The curves behind the metrics, written to ``curves.json`` beside ``metrics.json``:

- per side, the out-of-sample cumulative return of the model's signals (and of the baseline's
  and of holding the side's position throughout), one point per holding period;
- per side, the ROC curve of the model (and of the baseline).

Each curve is cut to at most ``MAX_POINTS`` points so the file stays small for the UI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

MAX_POINTS = 400
FORMAT = "touchstone.curves.v1"


def thin(n: int, most: int = MAX_POINTS) -> np.ndarray:
    """At most ``most`` indices spread over ``range(n)``, first and last kept."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def equity(times: list[str], nets: dict[str, np.ndarray]) -> dict[str, Any]:
    """Cumulative return (equity minus one) after each period, for each named series."""
    keep = thin(len(times))
    out: dict[str, Any] = {"t": [times[i] for i in keep]}
    for name, net in nets.items():
        out[name] = _rounded((np.cumprod(1.0 + net) - 1.0)[keep])
    return out


def roc(y: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """ROC points (false and true positive rates) of each named score; empty with one class."""
    if not 0 < int(y.sum()) < len(y):
        return {}
    out: dict[str, Any] = {}
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        keep = thin(len(fpr))
        out[name] = {"fpr": _rounded(fpr[keep]), "tpr": _rounded(tpr[keep])}
    return out
