"""A submission's validation report on the terminal: the verdict, what was validated, and every
check with a mark (✓ passed, ✗ failed, - skipped) and its detail.

The report comes from the API in the typed shape (``touchstone.shared.reports``); its texts were
written by the trainer in the feature set's process, so they are printed as plain text (no rich
markup) and without terminal control sequences."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from rich.console import Group
from rich.table import Table
from rich.text import Text
from touchstone.shared.reports import Check, ValidationReport

from touchstone.cli.terminal import safe_text


def _plain(text: str, style: str = "") -> Text:
    return Text(safe_text(text), style=style)


def _mark(check: Check) -> Text:
    if check.skipped:
        return Text("-", style="dim")
    return Text("✓", style="green") if check.passed else Text("✗", style="bold red")


def summary(report: ValidationReport) -> str:
    """One line: the verdict, how many checks, how long, on which data."""
    failed = report.failed()
    n = len(report.checks)
    verdict = f"passed all {n} checks" if report.passed else f"failed {len(failed)} of {n} checks"
    line = f"{verdict} ({report.duration_s:g} s"
    data = report.data
    if data.rows is not None:
        line += f", {data.rows} {safe_text(data.source or '')} candles".replace("  ", " ")
    return line + ")"


def report_table(raw: dict[str, Any]) -> Group | Text:
    """The report as lines and a table of checks; a line saying so when it is not a report
    this CLI can read (a newer server's)."""
    try:
        report = ValidationReport.model_validate(raw)
    except ValidationError:
        return Text("(a report this version of the CLI cannot read: see --json)", style="dim")
    lines: list[Text | Table] = [Text(summary(report), style="green" if report.passed else "bold red")]
    fs = report.feature_set
    if fs.name is not None:
        total = fs.columns_total if fs.columns_total is not None else len(fs.columns)
        lines.append(_plain(f"feature set {fs.name!r}, LOOKBACK {fs.lookback}, {total} columns"))
    checks = Table.grid(padding=(0, 1))
    checks.add_column(no_wrap=True)
    checks.add_column(no_wrap=True)
    checks.add_column(overflow="fold")
    for check in report.checks:
        checks.add_row(_mark(check), Text(safe_text(check.name), style="bold"), _plain(check.detail))
    return Group(*lines, checks)
