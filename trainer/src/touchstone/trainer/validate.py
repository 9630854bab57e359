"""`validate`: import a feature set, run it on the canned data, check what it returns.

Checks, in order (a failed `imports`, `interface`, `runs`, `index` or `columns` skips the
rest, which are then reported with `skipped: true`):

    imports       feature_set.py imports without error
    interface     NAME (non-empty str), LOOKBACK (int, 0..10000) and compute are defined
    runs          compute returns a DataFrame without raising
    index         the output index equals the input index
    columns       at least one column, all numeric, names unique
    finite        no +/- infinity
    nan_warmup    NaN only in the first LOOKBACK rows
    deterministic two runs on the same input give identical output
    no_lookahead  computing on the first k rows gives the same values for those rows as
                  computing on all rows, for several k
    lookback      computing on rows s.. gives the same values from row s + LOOKBACK on as
                  computing on all rows (the output depends on LOOKBACK rows of history only)
    time_budget   the whole validation finished within the time budget

Validation runs on the last VALIDATION_ROWS canned candles (more for a long LOOKBACK).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import checks
from .data import canned_candles
from .errors import FeatureSetError
from .feature_set import FeatureSet, import_module, interface_of
from .paths import shown

VALIDATION_ROWS = 8_000
# What the platform accepts in report.json (touchstone.shared.reports, which this package does
# not import: it runs from source on a bare image). The feature set chooses its NAME, column
# names and exception messages, so the report cuts them to these bounds rather than be refused.
MAX_DETAIL_CHARS = 1000
MAX_NAME_CHARS = 200
MAX_COLUMNS = 200
MAX_COLUMN_CHARS = 100
DEFAULT_TIME_BUDGET_S = 60.0

CHECK_NAMES = (
    "imports",
    "interface",
    "runs",
    "index",
    "columns",
    "finite",
    "nan_warmup",
    "deterministic",
    "no_lookahead",
    "lookback",
    "time_budget",
)
_BLOCKING = {"imports", "interface", "runs", "index", "columns"}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    skipped: bool = False


@dataclass
class ValidationReport:
    passed: bool
    checks: list[Check]
    duration_s: float
    feature_set: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as written to report.json, every text and list cut to its bound."""
        doc = asdict(self)
        for check in doc["checks"]:
            check["detail"] = _cut(check["detail"], MAX_DETAIL_CHARS)
        fs = doc["feature_set"]
        if isinstance(fs.get("name"), str):
            fs["name"] = _cut(fs["name"], MAX_NAME_CHARS)
        columns = fs.get("columns") or []
        fs["columns"] = [_cut(c, MAX_COLUMN_CHARS) for c in columns[:MAX_COLUMNS]]
        fs["columns_total"] = len(columns)
        return doc

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed and not c.skipped]


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, its cut said with a trailing ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TimeBudgetExceeded(BaseException):
    """Raised inside the running check when the budget runs out (BaseException, so a feature
    set's `except Exception` cannot swallow it)."""


@dataclass
class _State:
    directory: Path
    candles: pd.DataFrame
    module: Any = None
    fs: FeatureSet | None = None
    out: pd.DataFrame | None = None


def validation_candles(lookback: int = 0) -> pd.DataFrame:
    candles = canned_candles()
    rows = max(VALIDATION_ROWS, 4 * (lookback + 1))
    return candles.iloc[-rows:]


_Step = Callable[["_State"], tuple[bool, str]]


def validate(directory: Path, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> ValidationReport:
    """Run every check on the feature set in `directory`; never raises for its faults."""
    started = time.monotonic()
    state = _State(directory=directory, candles=validation_candles())
    results, timed_out = _run_steps(state, time_budget_s)
    elapsed = time.monotonic() - started
    within = not timed_out and elapsed <= time_budget_s
    results.append(Check("time_budget", within, f"{elapsed:.2f} s of a {time_budget_s:g} s budget"))
    fs = state.fs
    return ValidationReport(
        passed=all(c.passed for c in results),
        checks=results,
        duration_s=round(elapsed, 3),
        feature_set={
            "name": fs.name if fs else None,
            "lookback": fs.lookback if fs else None,
            "columns": [str(c) for c in state.out.columns] if state.out is not None else [],
        },
        data={
            "source": "canned",
            "rows": len(state.candles),
            "note": f"validated on the last {len(state.candles)} canned candles",
            "start": state.candles.index[0].isoformat(),
            "end": state.candles.index[-1].isoformat(),
        },
    )


def _steps() -> list[tuple[str, _Step]]:
    return [
        ("imports", _imports),
        ("interface", _interface),
        ("runs", _runs),
        ("index", lambda s: checks.check_index(s.candles, _out(s))),
        ("columns", lambda s: checks.check_columns(_out(s))),
        ("finite", lambda s: checks.check_finite(_out(s))),
        ("nan_warmup", lambda s: checks.check_nan_warmup(_out(s), _fs(s).lookback)),
        ("deterministic", _deterministic),
        ("no_lookahead", _no_lookahead),
        ("lookback", _lookback),
    ]


def _run_steps(state: _State, budget_s: float) -> tuple[list[Check], bool]:
    """Every check but time_budget, in order; returns them and whether the budget ran out."""
    results: list[Check] = []
    blocked: str | None = None
    timed_out = False
    try:
        with _time_limit(budget_s):
            for name, step in _steps():
                if blocked:
                    results.append(Check(name, False, f"skipped: {blocked!r} failed", True))
                    continue
                try:
                    passed, detail = step(state)
                except FeatureSetError as e:
                    passed, detail = False, str(e)
                except Exception as e:  # an output too odd to check is a failure, not a crash
                    passed, detail = False, f"could not check the output: {e!r}"
                results.append(Check(name, passed, detail))
                if not passed and name in _BLOCKING:
                    blocked = name
    except TimeBudgetExceeded:
        timed_out = True
        running = _steps()[len(results)][0] if len(results) < len(_steps()) else None
        if running:
            results.append(Check(running, False, f"interrupted: the {budget_s:g} s budget ran out"))
    for name, _ in _steps()[len(results) :]:
        results.append(Check(name, False, "skipped: time budget exceeded", skipped=True))
    return results, timed_out


def _fs(s: _State) -> FeatureSet:
    assert s.fs is not None
    return s.fs


def _out(s: _State) -> pd.DataFrame:
    assert s.out is not None
    return s.out


def _imports(s: _State) -> tuple[bool, str]:
    s.module = import_module(s.directory)
    return True, f"imported {shown(s.directory / 'feature_set.py')}"


def _interface(s: _State) -> tuple[bool, str]:
    s.fs = interface_of(s.module, s.directory)
    if 4 * (s.fs.lookback + 1) > len(s.candles):
        s.candles = validation_candles(s.fs.lookback)
    return True, f"NAME={s.fs.name!r}, LOOKBACK={s.fs.lookback}, compute defined"


def _runs(s: _State) -> tuple[bool, str]:
    t0 = time.monotonic()
    s.out = _fs(s).compute(s.candles)
    took = time.monotonic() - t0
    return True, f"compute on {len(s.candles)} rows took {took:.3f} s"


def _deterministic(s: _State) -> tuple[bool, str]:
    return checks.check_same(_out(s), _fs(s).compute(s.candles))


def _prefix_lengths(n: int, lookback: int) -> list[int]:
    ks = {n // 3, n // 2 + 17, (2 * n) // 3 + 1, n - 1}
    return sorted(k for k in ks if lookback < k < n)


def _no_lookahead(s: _State) -> tuple[bool, str]:
    fs, full = _fs(s), _out(s)
    ks = _prefix_lengths(len(s.candles), fs.lookback)
    for k in ks:
        prefix = fs.compute(s.candles.iloc[:k])
        if not prefix.index.equals(s.candles.index[:k]):
            return False, f"on the first {k} rows the output index differs from the input's"
        where = checks.compare_rows(full.iloc[:k], prefix, start=0)
        if where:
            return False, (
                f"values for the first {k} rows change when later rows are added: {where} "
                "(computed on the first k rows vs on all rows): the features use future data"
            )
    return True, f"prefixes of {ks} rows give the same values as the full run"


def _lookback(s: _State) -> tuple[bool, str]:
    fs, full = _fs(s), _out(s)
    n = len(s.candles)
    starts = [n // 4 + 3, n // 2]
    for start in starts:
        suffix = fs.compute(s.candles.iloc[start:])
        if not suffix.index.equals(s.candles.index[start:]):
            return False, f"from row {start} on, the output index differs from the input's"
        where = checks.compare_rows(full.iloc[start:], suffix, start=fs.lookback)
        if where:
            return False, (
                f"starting the data at row {start} changes values more than LOOKBACK="
                f"{fs.lookback} rows later: {where} (from row {start} vs from row 0): "
                "the features depend on more history than LOOKBACK declares"
            )
    return True, f"values depend on at most LOOKBACK={fs.lookback} rows of history"


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the running check after `seconds` (main thread on POSIX; elsewhere the
    budget is only measured)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeBudgetExceeded

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
