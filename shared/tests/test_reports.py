"""The typed validation report: what a platform accepts from report.json, how a hostile one
fails the attempt (short reason, class trainer, no payload), and how old events and views with
an untyped report still read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from touchstone.shared import events as ev
from touchstone.shared.attempt import judge_exit
from touchstone.shared.reports import MAX_REPORT_BYTES, ValidationReport, read_report
from touchstone.shared.testing import sample_report
from touchstone.shared.views import SubmissionView

FIXTURES = Path(__file__).parent / "fixtures" / "events"
HUGE = "x" * 100_000


def _write(work: Path, body: str | bytes) -> Path:
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def test_a_report_as_the_trainer_writes_it_reads_typed_and_drops_unknown_fields(tmp_path: Path) -> None:
    _write(tmp_path, json.dumps({**sample_report(False), "from_a_newer_trainer": HUGE}))
    report, problem = read_report(tmp_path, "out/report.json")
    assert problem is None and report is not None
    assert report.passed is False and [c.name for c in report.failed()] == ["no_lookahead"]
    assert report.feature_set.lookback == 20 and report.data.rows == 8000
    assert "from_a_newer_trainer" not in report.model_dump_json()
    assert judge_exit(1, "validation", report).succeeded  # a verdict, not a fault


def _with(**changes: object) -> str:
    return json.dumps({**sample_report(), **changes})


def _check(**changes: object) -> str:
    return _with(checks=[{**sample_report()["checks"][0], **changes}])


HOSTILE = {
    "a huge detail": (_check(detail=HUGE), "checks.0.detail"),
    "a huge feature-set name": (_with(feature_set={"name": HUGE}), "feature_set.name"),
    "a million checks": (json.dumps({**sample_report(), "checks": [{}] * 1_000_000}), "bytes, more than"),
    "a thousand columns": (_with(feature_set={"columns": ["c"] * 1000}), "feature_set.columns"),
    "NaN duration": (_with(duration_s=float("nan")), "duration_s"),
    "infinite duration": (_with(duration_s=float("inf")), "duration_s"),
    "a string for a bool": (_with(passed="yes"), "passed"),
    "a string for an int": (_with(feature_set={"lookback": "20"}), "feature_set.lookback"),
    "checks not a list": (_with(checks="all good"), "checks"),
    "no checks": (_with(checks=[]), "checks"),
    "passed missing": (json.dumps({k: v for k, v in sample_report().items() if k != "passed"}), "passed"),
    "a JSON list": ("[1, 2, 3]", "not a JSON object but list"),
    "not JSON": ("{'passed': True}", "not JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not JSON"),
    "nested too deep": ("[" * 100_000 + "]" * 100_000, "not JSON"),
    "over the byte cap": (_check(detail="y" * 300_000), "bytes, more than"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_report_is_a_short_problem_and_the_attempts_failure(tmp_path: Path, name: str) -> None:
    body, says = HOSTILE[name]
    _write(tmp_path, body)
    report, problem = read_report(tmp_path, "out/report.json")
    assert report is None and problem is not None
    assert problem.startswith("report.json is not a valid validation report: ") and says in problem
    assert len(problem) < 400 and "xxxxxxxx" not in problem and "yyyyyyyy" not in problem
    for exit_status in (0, 1):
        outcome = judge_exit(exit_status, "validation", report, problem)
        assert (outcome.succeeded, outcome.failure_class, outcome.reason) == (False, "trainer", problem)


def test_a_link_or_a_special_file_is_refused_not_followed(tmp_path: Path) -> None:
    elsewhere = _write(tmp_path / "other-attempt", json.dumps(sample_report()))
    (tmp_path / "work" / "out").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / "work" / "out" / "report.json")
    report, problem = read_report(tmp_path / "work", "out/report.json")
    assert report is None and problem is not None and problem.startswith("report.json refused: ")
    assert judge_exit(0, "validation", report, problem).failure_class == "trainer"

    (tmp_path / "work2").mkdir()
    os.symlink(tmp_path / "other-attempt" / "out", tmp_path / "work2" / "out")  # a link on the way
    assert read_report(tmp_path / "work2", "out/report.json")[0] is None

    (tmp_path / "work3" / "out").mkdir(parents=True)
    os.mkfifo(tmp_path / "work3" / "out" / "report.json")  # would block a naive reader forever
    report, problem = read_report(tmp_path / "work3", "out/report.json")
    assert report is None and problem == "report.json refused: report.json: not a regular file"


def test_no_report_is_no_problem_for_the_reader_but_a_fault_for_the_judge(tmp_path: Path) -> None:
    assert read_report(tmp_path, "out/report.json") == (None, None)
    outcome = judge_exit(0, "validation", None, None)
    assert (outcome.succeeded, outcome.failure_class) == (False, "trainer")
    assert judge_exit(0, "training", None, None).succeeded


def test_the_bounds_keep_every_valid_report_far_under_an_events_limit() -> None:
    worst = sample_report()
    worst["checks"] = [{"name": "n" * 64, "passed": False, "detail": "é" * 1000, "skipped": False}] * 32
    worst["feature_set"] = {"name": "n" * 200, "columns": ["c" * 100] * 200}
    report = ValidationReport.model_validate(worst)
    event = ev.TrainingFinished(aggregate_id="s.v", correlation_id="s", submission_id="s", task_id="v",
                                attempt=1, report=report)
    assert len(ev.encode_event(event)) < MAX_REPORT_BYTES + 2_000 < ev.MAX_DOC_BYTES
    controls = {**worst, "checks": [{"name": "n", "passed": False, "detail": "\x00" * 1000}] * 32}
    with pytest.raises(ValueError, match="bytes as JSON"):  # 6 bytes a character once escaped
        ValidationReport.model_validate(controls)


def _v1(cls: type[ev.Event], report: object, **fields: object) -> bytes:
    """An event as a Touchstone of before the typed report stored it."""
    current = json.loads(cls(aggregate_id="s.v", correlation_id="s", **fields).model_dump_json())
    return json.dumps({**current, "schema_version": 1, "report": report}).encode()


TASK = {"submission_id": "s", "task_id": "validation", "attempt": 1}


def test_old_events_with_a_dict_report_still_decode() -> None:
    finished = ev.decode_event(_v1(ev.TrainingFinished, sample_report(False), **TASK))
    assert isinstance(finished, ev.TrainingFinished) and finished.schema_version == 2
    assert finished.report is not None and [c.name for c in finished.report.failed()] == ["no_lookahead"]
    omitted = ev.decode_event(_v1(ev.TrainingFinished, {"omitted": "200000 bytes, more than 131072"}, **TASK))
    assert isinstance(omitted, ev.TrainingFinished) and omitted.report is None
    validated = ev.decode_event(_v1(ev.SubmissionValidated, {}, passed=True))
    assert isinstance(validated, ev.SubmissionValidated) and validated.passed and validated.report is None
    loose = ev.decode_event(_v1(ev.SubmissionValidated, {"passed": False, "checks": [{"name": "x"}]}, passed=False))
    assert isinstance(loose, ev.SubmissionValidated) and not loose.passed and loose.report is None
    # written back, it is the current shape and reads as itself
    assert ev.decode_event(ev.encode_event(finished)) == finished


def test_a_view_stored_with_a_dict_report_still_reads() -> None:
    base = {"id": "s", "owner": "a", "name": "n", "git_url": "/x", "status": "ACCEPTED",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
    good = SubmissionView.model_validate({**base, "validation_report": sample_report()})
    assert good.validation_report is not None and good.validation_report.passed
    odd = SubmissionView.model_validate({**base, "validation_report": {"passed": True, "commit": "abc"}})
    assert odd.validation_report is None
