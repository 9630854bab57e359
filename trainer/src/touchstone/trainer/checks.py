"""Pure checks on a feature set's output: each returns (passed, detail), no I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Two computations of the same row agree when |a - b| <= RTOL * |b| + ATOL * column scale.
RTOL = 1e-6
ATOL = 1e-9

Result = tuple[bool, str]


def check_index(candles: pd.DataFrame, out: pd.DataFrame) -> Result:
    if len(out.index) != len(candles.index):
        return False, f"output has {len(out.index)} rows, input has {len(candles.index)}"
    if not out.index.equals(candles.index):
        if isinstance(out.index, pd.DatetimeIndex) and out.index.tz is None:
            return False, "output index has no time zone; keep the input's UTC index"
        first = int(np.argmax(np.asarray(out.index != candles.index)))
        return False, (
            f"output index differs from the input index at row {first}: "
            f"{out.index[first]!r} != {candles.index[first]!r}"
        )
    return True, f"{len(out)} rows, same index as the input"


def check_columns(out: pd.DataFrame) -> Result:
    if out.shape[1] == 0:
        return False, "output has no columns"
    if out.columns.has_duplicates:
        dupes = sorted({str(c) for c in out.columns[out.columns.duplicated()]})
        return False, f"duplicate column names: {dupes}"
    not_numeric = [str(c) for c in out.columns if not pd.api.types.is_numeric_dtype(out[c].dtype)]
    if not_numeric:
        return False, f"columns are not numeric: {not_numeric}"
    return True, f"{out.shape[1]} numeric columns: {[str(c) for c in out.columns]}"


def check_finite(out: pd.DataFrame) -> Result:
    values = as_float(out)
    bad = np.isinf(values)
    if bad.any():
        counts = {str(c): int(n) for c, n in zip(out.columns, bad.sum(axis=0), strict=True) if n}
        return False, f"infinite values (count per column): {counts}"
    return True, "no infinite values"


def check_nan_warmup(out: pd.DataFrame, lookback: int) -> Result:
    body = as_float(out)[lookback:]
    nan = np.isnan(body)
    if nan.any():
        rows = np.nonzero(nan)[0]
        first = lookback + int(rows.min())
        counts = {str(c): int(n) for c, n in zip(out.columns, nan.sum(axis=0), strict=True) if n}
        return False, (
            f"NaN after the first LOOKBACK={lookback} rows, first at row {first} "
            f"({out.index[first]}); count per column: {counts}"
        )
    return True, f"NaN only in the first LOOKBACK={lookback} rows"


def check_same(first: pd.DataFrame, second: pd.DataFrame) -> Result:
    """Exact equality (NaN equal to NaN) of two runs on the same input."""
    if list(first.columns) != list(second.columns) or not first.index.equals(second.index):
        return False, "the two runs returned different columns or index"
    a, b = as_float(first), as_float(second)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if not same.all():
        row, col = (int(x[0]) for x in np.nonzero(~same))
        return False, (
            f"two runs on the same input differ, first at row {row} column "
            f"{first.columns[col]!s}: {float(a[row, col])!r} vs {float(b[row, col])!r}"
        )
    return True, "two runs gave identical output"


def compare_rows(reference: pd.DataFrame, other: pd.DataFrame, start: int) -> str | None:
    """Where `other` disagrees with `reference` from row `start` on (same index), or None.

    Both frames cover the same timestamps; NaN must match NaN, numbers agree within the
    tolerance above.
    """
    if list(reference.columns) != list(other.columns):
        return f"columns differ: {list(other.columns)} vs {list(reference.columns)}"
    if not reference.index.equals(other.index):
        return "index differs"
    ref, oth = as_float(reference)[start:], as_float(other)[start:]
    full = as_float(reference)
    scale = np.max(np.abs(np.where(np.isfinite(full), full, 0.0)), axis=0, initial=0.0)
    nan_ref, nan_oth = np.isnan(ref), np.isnan(oth)
    with np.errstate(all="ignore"):
        close = np.abs(ref - oth) <= RTOL * np.abs(ref) + ATOL * np.maximum(scale, 1e-300)
    agree = (nan_ref & nan_oth) | (~nan_ref & ~nan_oth & (close | (ref == oth)))
    if agree.all():
        return None
    row, col = (int(x[0]) for x in np.nonzero(~agree))
    return (
        f"at {reference.index[start + row]} column {reference.columns[col]!s}: "
        f"{float(oth[row, col])!r} vs {float(ref[row, col])!r}"
    )


def as_float(out: pd.DataFrame) -> np.ndarray:
    values: np.ndarray = out.to_numpy(dtype="float64", na_value=np.nan)
    return values
