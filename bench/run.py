"""`make bench`: run every bench/bench_*.py, write JSON under bench/results/, print a table.

Each module has ``async def run() -> dict`` returning ``{"name", "rows": [{"metric", "value",
"unit", "target"?, "met"?}]}``, built with ``touchstone.bench.harness`` (one percentile, one row
shape); the harness writes each result with the machine and its load average. Pass module names
to run only some: ``python bench/run.py backbone``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

from touchstone.bench.harness import Run, table

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(only: list[str]) -> int:
    failed = 0
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        run = Run()
        result = asyncio.run(load(path).run())
        written = run.write(RESULTS, name, result)
        print(f"\n== {result['name']} -> {written.relative_to(HERE.parent)}")
        print(table(result["rows"]))
        failed += sum(row.get("met") is False for row in result["rows"])
    return 1 if failed and os.environ.get("BENCH_STRICT") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
