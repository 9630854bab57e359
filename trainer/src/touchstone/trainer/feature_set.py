"""Loading a submitted feature set and calling its `compute`.

A feature set is a directory with `feature_set.py` defining `NAME: str`, `LOOKBACK: int` and
`compute(candles) -> DataFrame`. It is imported from its file path (its directory first on
`sys.path` while it loads, so it can import its own helper modules).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from .errors import FeatureSetError, UsageError

FILE_NAME = "feature_set.py"
MAX_LOOKBACK = 10_000


@dataclass(frozen=True)
class FeatureSet:
    name: str
    lookback: int
    compute_fn: Callable[[pd.DataFrame], pd.DataFrame]
    directory: Path

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Run `compute` on a private copy of the candles; it must return a DataFrame."""
        try:
            result = self.compute_fn(candles.copy())
        except Exception as e:
            raise FeatureSetError(f"compute raised {describe_exception(e, self.directory)}") from e
        if not isinstance(result, pd.DataFrame):
            raise FeatureSetError(f"compute returned {type(result).__name__}, expected a pandas DataFrame")
        return result


def feature_set_file(directory: Path) -> Path:
    """The feature set's source file; a usage error when the directory does not exist."""
    if not directory.is_dir():
        raise UsageError(f"feature set directory not found: {directory}")
    return directory / FILE_NAME


def import_module(directory: Path) -> ModuleType:
    """Import `feature_set.py` from a directory; FeatureSetError with the cause if it fails."""
    path = feature_set_file(directory)
    if not path.is_file():
        raise FeatureSetError(f"{FILE_NAME} not found in {directory}")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"touchstone_feature_set_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FeatureSetError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(directory.resolve()))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        where = f"{Path(e.filename or path).name} line {e.lineno}"
        raise FeatureSetError(f"syntax error in {where}: {e.msg}") from e
    except (Exception, SystemExit) as e:
        sys.modules.pop(module_name, None)
        raise FeatureSetError(f"import raised {describe_exception(e, directory)}") from e
    finally:
        try:
            sys.path.remove(str(directory.resolve()))
        except ValueError:
            pass
    return module


def interface_of(module: ModuleType, directory: Path) -> FeatureSet:
    """Check NAME, LOOKBACK and compute and wrap them; FeatureSetError names what is wrong."""
    problems = []
    name = getattr(module, "NAME", None)
    lookback = getattr(module, "LOOKBACK", None)
    compute = getattr(module, "compute", None)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"NAME must be a non-empty str, got {name!r}")
    if isinstance(lookback, np.integer):
        lookback = int(lookback)
    if not isinstance(lookback, int) or isinstance(lookback, bool):
        problems.append(f"LOOKBACK must be an int, got {lookback!r}")
    elif not 0 <= lookback <= MAX_LOOKBACK:
        problems.append(f"LOOKBACK must be between 0 and {MAX_LOOKBACK}, got {lookback}")
    if not callable(compute):
        problems.append("compute(candles) must be a function")
    if problems:
        raise FeatureSetError("; ".join(problems))
    assert isinstance(name, str) and isinstance(lookback, int) and callable(compute)
    return FeatureSet(name=name, lookback=lookback, compute_fn=compute, directory=directory)


def load_feature_set(directory: Path) -> FeatureSet:
    return interface_of(import_module(directory), directory)


def describe_exception(e: BaseException, directory: Path) -> str:
    """`Type: message`, plus the innermost line of the feature set's own code it came from."""
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    root = str(directory.resolve())
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(root)]
    if frames:
        f = frames[-1]
        text += f" (at {Path(f.filename).name} line {f.lineno}: {(f.line or '').strip()})"
    return text
