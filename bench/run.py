"""`make bench`: run every bench/bench_*.py, write JSON under bench/results/, print a table.

Each module has ``async def run() -> dict`` returning ``{"name", "machine", "rows": [{"metric",
"value", "unit", "target"?}]}``. Pass module names to run only some: ``python bench/run.py backbone``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(only: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    failed = 0
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        started = time.time()
        result = asyncio.run(load(path).run())
        result.update(machine=machine(), at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                      wall_s=round(time.time() - started, 1))
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"\n== {result['name']} ({result['wall_s']} s) -> bench/results/{name}.json")
        print(f"{'metric':58} {'value':>12} {'unit':10} target")
        for row in result["rows"]:
            met = row.get("met")
            mark = "" if met is None else ("  ok" if met else "  MISSED")
            print(f"{row['metric']:58} {row['value']:>12} {row['unit']:10} {row.get('target', '')}{mark}")
            failed += met is False
    return 1 if failed and os.environ.get("BENCH_STRICT") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
