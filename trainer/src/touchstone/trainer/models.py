"""The two model kinds: fitting, writing to `models/`, and reading back.

File formats (one file per side, `models/long.<ext>` and `models/short.<ext>`):

- `logistic` -> `.json`: standardisation and coefficients, readable without scikit-learn:
  p = 1 / (1 + exp(-(sum(coef * (x - mean) / scale) + intercept))), x ordered as `features`.
- `hist_gradient_boosting` -> `.pkl`: a stdlib pickle of a dict with the same metadata and
  the fitted scikit-learn estimator under "estimator"; load it with the same scikit-learn
  version (recorded as "sklearn_version"), and only from a trusted source.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .config import TrainerConfig

EXTENSIONS = {"logistic": "json", "hist_gradient_boosting": "pkl"}
JSON_FORMAT = "touchstone.logistic.v1"
PICKLE_FORMAT = "touchstone.pickle.v1"


@dataclass
class TrainedModel:
    kind: str
    features: list[str]
    params: dict[str, Any]
    """Everything needed to predict: JSON fields for logistic, {"estimator": ...} otherwise."""
    notes: list[str]
    """Warnings raised while fitting (e.g. no convergence)."""

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        """Probability of the positive label for each row of x (columns named as features)."""
        values = x[self.features].to_numpy(dtype="float64")
        if self.kind == "logistic":
            p = self.params
            z = ((values - p["mean"]) / p["scale"]) @ np.asarray(p["coef"]) + p["intercept"]
            proba: np.ndarray = 1.0 / (1.0 + np.exp(-z))
            return proba
        estimator = self.params["estimator"]
        proba = estimator.predict_proba(pd.DataFrame(values, columns=self.features))[:, 1]
        return proba

    def n_iter(self) -> int | None:
        return self.params.get("n_iter")


def fit(config: TrainerConfig, x: pd.DataFrame, y: np.ndarray) -> TrainedModel:
    m = config.model
    class_weight = None if m.class_weight == "none" else m.class_weight
    features = [str(c) for c in x.columns]
    values = x.to_numpy(dtype="float64")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if m.kind == "logistic":
            scaler = StandardScaler().fit(values)
            lr = LogisticRegression(
                C=m.logistic.C,
                max_iter=m.logistic.max_iter,
                class_weight=class_weight,
                random_state=config.seed,
            ).fit(scaler.transform(values), y)
            params: dict[str, Any] = {
                "mean": scaler.mean_.tolist(),
                "scale": scaler.scale_.tolist(),
                "coef": lr.coef_[0].tolist(),
                "intercept": float(lr.intercept_[0]),
                "n_iter": int(lr.n_iter_[0]),
            }
        else:
            h = m.hist_gradient_boosting
            est = HistGradientBoostingClassifier(
                max_iter=h.max_iter,
                learning_rate=h.learning_rate,
                max_leaf_nodes=h.max_leaf_nodes,
                min_samples_leaf=h.min_samples_leaf,
                l2_regularization=h.l2_regularization,
                early_stopping=h.early_stopping,
                validation_fraction=h.validation_fraction,
                n_iter_no_change=h.n_iter_no_change,
                class_weight=class_weight,
                random_state=config.seed,
            ).fit(pd.DataFrame(values, columns=features), y)
            params = {"estimator": est, "n_iter": int(est.n_iter_)}
    notes = [str(w.message).splitlines()[0] for w in caught]
    return TrainedModel(kind=m.kind, features=features, params=params, notes=notes)


def save(model: TrainedModel, path_stem: Path, meta: dict[str, Any]) -> Path:
    """Write the model next to `path_stem` with its kind's extension; returns the path."""
    path = path_stem.with_suffix("." + EXTENSIONS[model.kind])
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": model.kind, "features": model.features, **meta}
    if model.kind == "logistic":
        doc = {"format": JSON_FORMAT, **header, **model.params}
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    else:
        doc = {
            "format": PICKLE_FORMAT,
            **header,
            "sklearn_version": sklearn.__version__,
            **model.params,
        }
        with path.open("wb") as f:
            pickle.dump(doc, f, protocol=4)
    return path


def load(path: Path) -> TrainedModel:
    """Read a model written by `save` (pickles only from a trusted source)."""
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        if doc.get("format") != JSON_FORMAT:
            raise ValueError(f"{path}: not a {JSON_FORMAT} model")
    else:
        with path.open("rb") as f:
            doc = pickle.load(f)
        if not isinstance(doc, dict) or doc.get("format") != PICKLE_FORMAT:
            raise ValueError(f"{path}: not a {PICKLE_FORMAT} model")
    params = {k: doc[k] for k in ("mean", "scale", "coef", "intercept", "estimator", "n_iter") if k in doc}
    return TrainedModel(kind=doc["kind"], features=doc["features"], params=params, notes=[])
