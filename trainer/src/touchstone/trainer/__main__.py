"""Command line: `trainer validate|train|data ...` (also `python -m touchstone.trainer`).

Exit status: 0 success; 1 a check failed (validate) or the feature set / training failed
(train); 2 a usage error (arguments, config, interval, missing paths), message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import TrainerError, UsageError

FS_HELP = "feature set directory (feature_set.py with NAME, LOOKBACK, compute)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainer",
        description="Touchstone reference trainer: validate feature sets, train models.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = commands.add_parser("validate", help="check a feature set on the canned data", allow_abbrev=False)
    v.add_argument("--feature-set", required=True, type=Path, metavar="DIR", help=FS_HELP)
    v.add_argument("--report", required=True, type=Path, metavar="FILE", help="JSON report to write")
    v.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-clock budget of the whole validation (default 60)",
    )

    t = commands.add_parser("train", help="train the long and short models", allow_abbrev=False)
    t.add_argument("--feature-set", required=True, type=Path, metavar="DIR", help=FS_HELP)
    t.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="TOML config; relative paths try the cwd, then the trainer's folder",
    )
    t.add_argument(
        "--prediction-interval",
        required=True,
        type=int,
        metavar="MINUTES",
        help="how far ahead the labels look; a positive multiple of the candle period",
    )
    t.add_argument(
        "--fetched-data-end-to", default=None, metavar="ISO_TIME", help="use candles up to and including this time"
    )
    t.add_argument(
        "--config_override",
        "--config-override",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="edit a config key, e.g. model.kind=hist_gradient_boosting",
    )
    t.add_argument("--output", required=True, type=Path, metavar="DIR", help="writes models/ and metrics.json")

    d = commands.add_parser("data", help="write the canned candles as CSV", allow_abbrev=False)
    d.add_argument("--output", required=True, type=Path, metavar="FILE")
    d.add_argument("--config", default="configs/default.toml", metavar="FILE")
    d.add_argument(
        "--config_override",
        "--config-override",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "train":
            return _train(args)
        return _data(args)
    except TrainerError as e:
        print(f"trainer {args.command}: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code


def _validate(args: argparse.Namespace) -> int:
    from .feature_set import feature_set_file
    from .paths import shown
    from .validate import DEFAULT_TIME_BUDGET_S, validate

    budget = DEFAULT_TIME_BUDGET_S if args.time_budget is None else args.time_budget
    if budget <= 0:
        raise UsageError(f"--time-budget must be positive, got {budget:g}")
    feature_set_file(args.feature_set)  # a missing directory is a usage error
    report = validate(args.feature_set, time_budget_s=budget)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    for check in report.checks:
        mark = "skip" if check.skipped else ("ok" if check.passed else "FAIL")
        print(f"[validate] {mark:4} {check.name}: {check.detail}", flush=True)
    verdict = "passed" if report.passed else f"failed: {', '.join(report.failed())}"
    print(f"[validate] {verdict} in {report.duration_s:.2f} s; report {shown(args.report)}", flush=True)
    return 0 if report.passed else 1


def _train(args: argparse.Namespace) -> int:
    from .config import load_config, resolve_config_path
    from .paths import shown
    from .train import TrainRequest, log, train

    path = resolve_config_path(args.config)
    config = load_config(path, args.overrides)
    log(f"config {shown(path)}" + (f" with overrides {args.overrides}" if args.overrides else ""))
    train(
        TrainRequest(
            feature_set_dir=args.feature_set,
            config=config,
            prediction_interval=args.prediction_interval,
            output=args.output,
            fetched_data_end_to=args.fetched_data_end_to,
            config_file=str(path),
            config_overrides=list(args.overrides),
        )
    )
    return 0


def _data(args: argparse.Namespace) -> int:
    from .config import load_config, resolve_config_path
    from .data import load_candles

    config = load_config(resolve_config_path(args.config), args.overrides)
    candles = load_candles(config.data)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    candles.to_csv(args.output)
    print(f"[trainer] wrote {len(candles)} candles to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
