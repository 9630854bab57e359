"""Training configuration: one typed object built from a TOML file plus overrides.

The dataclass defaults are the values in `configs/default.toml` (a test keeps the two equal).
A file may leave keys out (the defaults fill them) but may not add unknown ones;
`--config_override key.sub=value` edits one key, the value read as a TOML literal and, when
that fails or the key holds a string, taken as plain text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

MODEL_KINDS = ("logistic", "hist_gradient_boosting")
DATA_SOURCES = ("canned", "csv")
CLASS_WEIGHTS = ("balanced", "none")

PACKAGE_DIR = Path(__file__).resolve().parent
TRAINER_DIR = PACKAGE_DIR.parents[2]  # trainer/src/touchstone/trainer -> trainer/


@dataclass(frozen=True)
class DataConfig:
    source: str = "canned"
    """Where candles come from: "canned" (the seeded generator) or "csv"."""
    csv_path: str = ""
    """With source "csv": a file with columns timestamp, open, high, low, close, volume."""
    seed: int = 20240101
    """Seed of the canned-data generator."""
    rows: int = 100_000
    """Number of canned candles."""
    period_minutes: int = 1
    """Period of the canned candles, in minutes."""
    start: str = "2024-01-01T00:00:00Z"
    """Timestamp (UTC) of the first canned candle."""


@dataclass(frozen=True)
class LabelConfig:
    threshold: float = 0.001
    """Long label: future return > threshold; short label: future return < -threshold."""


@dataclass(frozen=True)
class SplitConfig:
    test_fraction: float = 0.25
    """Share of the labelled rows, the most recent ones, held out for evaluation."""


@dataclass(frozen=True)
class LogisticConfig:
    C: float = 0.1
    """Inverse L2 regularisation strength."""
    max_iter: int = 500
    """Iteration cap of the lbfgs solver."""


@dataclass(frozen=True)
class HistGradientBoostingConfig:
    max_iter: int = 100
    """Number of boosting rounds (fewer when early stopping ends it)."""
    learning_rate: float = 0.05
    """Shrinkage of each tree."""
    max_leaf_nodes: int = 15
    """Leaves per tree."""
    min_samples_leaf: int = 1000
    """Smallest leaf, in rows."""
    l2_regularization: float = 1.0
    """L2 penalty on leaf values."""
    early_stopping: bool = False
    """Stop when the loss on a held-out share of the training rows stops improving (off by
    default: that share is drawn at random, so neighbouring candles leak across it)."""
    validation_fraction: float = 0.1
    """Share of the training rows used for early stopping."""
    n_iter_no_change: int = 10
    """Rounds without improvement before stopping."""


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "logistic"
    """"logistic" (JSON model files) or "hist_gradient_boosting" (pickle model files)."""
    class_weight: str = "balanced"
    """"balanced" reweights the rarer class; "none" leaves rows unweighted."""
    logistic: LogisticConfig = field(default_factory=LogisticConfig)
    hist_gradient_boosting: HistGradientBoostingConfig = field(default_factory=HistGradientBoostingConfig)


@dataclass(frozen=True)
class BacktestConfig:
    decision_threshold: float = 0.5
    """Probability above which the strategy takes the position (and the label is predicted)."""
    cost_bps: float = 1.0
    """Round-trip cost of one trade, in basis points of its notional."""


@dataclass(frozen=True)
class BaselineConfig:
    enabled: bool = True
    """Train the built-in baseline (returns only) with this config and compare each side to it."""
    samples: int = 300
    """Block bootstrap resamples of the test periods behind each difference's interval."""
    block_periods: int = 0
    """Holding periods per bootstrap block; 0 picks the cube root of the number of periods."""
    confidence: float = 0.95
    """Coverage of each difference's interval."""


@dataclass(frozen=True)
class TrainerConfig:
    seed: int = 42
    """Seed of every random choice in training."""
    data: DataConfig = field(default_factory=DataConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_config_path(path: str, cwd: Path | None = None) -> Path:
    """A config path as given, else against the cwd, else against the trainer's folder."""
    candidate = Path(path)
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate
    else:
        for base in (cwd or Path.cwd(), TRAINER_DIR, PACKAGE_DIR):
            if (base / candidate).is_file():
                return base / candidate
    raise UsageError(f"config file not found: {path} (looked in the current directory and {TRAINER_DIR})")


def load_config(path: Path, overrides: list[str] | None = None) -> TrainerConfig:
    """Read a TOML config, apply `key.sub=value` overrides, and check every value."""
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config {path} is not valid TOML: {e}") from e
    return build_config(raw, overrides or [], source=str(path))


def build_config(raw: dict[str, Any], overrides: list[str], source: str = "config") -> TrainerConfig:
    merged = dataclasses.asdict(TrainerConfig())
    _merge(merged, raw, TrainerConfig, prefix="", source=source)
    for item in overrides:
        _apply_override(merged, item)
    config: TrainerConfig = _build(TrainerConfig, merged, prefix="")
    _check_values(config)
    return config


def _merge(target: dict[str, Any], raw: dict[str, Any], cls: type, prefix: str, source: str) -> None:
    nested = _nested_types(cls)
    for key, value in raw.items():
        name = prefix + key
        if key not in target:
            raise UsageError(f"unknown config key {name!r} in {source}")
        if key in nested:
            if not isinstance(value, dict):
                raise UsageError(f"config key {name!r} in {source} must be a table")
            _merge(target[key], value, nested[key], name + ".", source)
        else:
            target[key] = value


def _apply_override(merged: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"config override {item!r} is not of the form key.sub=value")
    parts = key.split(".")
    table: Any = merged
    cls: type = TrainerConfig
    for depth, part in enumerate(parts):
        if not isinstance(table, dict) or part not in table:
            known = ", ".join(sorted(_leaf_keys(TrainerConfig)))
            raise UsageError(f"unknown config key {key!r} in override; known keys: {known}")
        if depth < len(parts) - 1:
            table = table[part]
            cls = _nested_types(cls).get(part, type(None))
    last = parts[-1]
    if last in _nested_types(cls):
        raise UsageError(f"config key {key!r} is a table; override one of its keys")
    expected = typing.get_type_hints(cls)[last]
    table[last] = _parse_value(text.strip(), expected)


def _parse_value(text: str, expected: type) -> Any:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if expected is str and not isinstance(value, str):
        return text  # e.g. a date-time literal meant as a string
    return value


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        value = values[f.name]
        expected = hints[f.name]
        if dataclasses.is_dataclass(expected):
            kwargs[f.name] = _build(expected, value, name + ".")  # type: ignore[arg-type]
        else:
            kwargs[f.name] = _coerce(name, value, expected)
    return cls(**kwargs)


def _coerce(name: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise UsageError(f"config key {name!r} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_values(c: TrainerConfig) -> None:
    problems = []
    if c.data.source not in DATA_SOURCES:
        problems.append(f"data.source must be one of {DATA_SOURCES}, got {c.data.source!r}")
    if c.data.source == "csv" and not c.data.csv_path:
        problems.append('data.csv_path is required when data.source = "csv"')
    if c.data.rows < 2_000:
        problems.append(f"data.rows must be at least 2000, got {c.data.rows}")
    if c.data.period_minutes < 1:
        problems.append(f"data.period_minutes must be positive, got {c.data.period_minutes}")
    if not c.labels.threshold >= 0:
        problems.append(f"labels.threshold must be >= 0, got {c.labels.threshold}")
    if not 0.0 < c.split.test_fraction < 1.0:
        problems.append(f"split.test_fraction must be in (0, 1), got {c.split.test_fraction}")
    if c.model.kind not in MODEL_KINDS:
        problems.append(f"model.kind must be one of {MODEL_KINDS}, got {c.model.kind!r}")
    if c.model.class_weight not in CLASS_WEIGHTS:
        problems.append(f"model.class_weight must be one of {CLASS_WEIGHTS}, got {c.model.class_weight!r}")
    if not c.model.logistic.C > 0:
        problems.append(f"model.logistic.C must be positive, got {c.model.logistic.C}")
    hgb = c.model.hist_gradient_boosting
    if hgb.max_iter < 1 or hgb.max_leaf_nodes < 2 or hgb.min_samples_leaf < 1:
        problems.append(
            "model.hist_gradient_boosting: max_iter >= 1, max_leaf_nodes >= 2 and min_samples_leaf >= 1 are required"
        )
    if not 0.0 < hgb.validation_fraction < 1.0:
        problems.append("model.hist_gradient_boosting.validation_fraction must be in (0, 1)")
    if not 0.0 <= c.backtest.decision_threshold <= 1.0:
        problems.append("backtest.decision_threshold must be in [0, 1]")
    if not c.backtest.cost_bps >= 0:
        problems.append("backtest.cost_bps must be >= 0")
    if c.baseline.samples < 20 or c.baseline.block_periods < 0 or not 0.5 <= c.baseline.confidence < 1.0:
        problems.append("baseline: samples >= 20, block_periods >= 0 and confidence in [0.5, 1) are required")
    if problems:
        raise UsageError("invalid config: " + "; ".join(problems))


def _nested_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    nested = _nested_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in nested:
            keys += _leaf_keys(nested[f.name], prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys
