"""The pure decisions: keys, metrics, run contents, notices and their payloads."""

from __future__ import annotations

import pytest
from touchstone.results import domain
from touchstone.shared import events as ev
from touchstone.shared.errors import PermanentError
from touchstone.shared.testing import sample_report


def _finished(**kw: object) -> ev.TrainingFinished:
    base: dict[str, object] = dict(
        aggregate_id="s1-pi-60", correlation_id="s1", submission_id="s1", task_id="pi-60", attempt=2
    )
    return ev.TrainingFinished(**(base | kw))  # type: ignore[arg-type]


PREFIX = "attempts/s1/pi-60/attempt-2/"


def test_an_events_keys_are_checked_against_its_attempt() -> None:
    out = domain.checked_outputs("s1", "pi-60", 2, {"long.pkl": f"{PREFIX}models/long.pkl"}, f"{PREFIX}console.log",
                                 None)
    assert out == domain.Outputs({"long.pkl": f"{PREFIX}models/long.pkl"}, f"{PREFIX}console.log")


@pytest.mark.parametrize(("artifacts", "log_key", "log_uri"), [
    ({"a": "/data/artifacts/models/s1/pi-60/attempt-2/long.pkl"}, None, None),
    ({"a": "file:///data/artifacts/long.pkl"}, None, None),
    ({"a": "s3://bucket/attempts/s1/pi-60/attempt-2/long.pkl"}, None, None),
    ({"a": "https://store.example/attempts/s1/pi-60/attempt-2/long.pkl"}, None, None),
    ({"a": f"{PREFIX}../attempt-1/long.pkl"}, None, None),
    ({"a": "attempts/s1/pi-60/attempt-1/long.pkl"}, None, None),
    ({"a": "attempts/s2/pi-60/attempt-2/long.pkl"}, None, None),
    ({}, "attempts/s1/pi-60/attempt-1/console.log", None),
    ({}, f"{PREFIX}models/console.log", None),
    ({}, None, "file:///data/artifacts/logs/s1/pi-60/attempt-2.log"),
    ({}, None, "/etc/passwd"),
])
def test_paths_urls_and_other_attempts_keys_are_refused(artifacts: dict[str, str], log_key: str | None,
                                                        log_uri: str | None) -> None:
    with pytest.raises(PermanentError):
        domain.checked_outputs("s1", "pi-60", 2, artifacts, log_key, log_uri)


def test_metrics_are_flattened_and_only_finite_numbers_kept() -> None:
    flat = domain.flatten_metrics(
        {"long": {"roc_auc": 0.6, "backtest": {"sharpe": 1.5, "note": "x"}, "curve": [1, 2]},
         "short": {"f1": float("nan"), "trades": 7, "hit": True}, "weird key!": 1}
    )
    assert flat == {"long.roc_auc": 0.6, "long.backtest.sharpe": 1.5, "short.trades": 7.0, "short.hit": 1.0,
                    "weird key_": 1.0}


def test_run_spec_carries_params_metrics_and_links() -> None:
    queued = ev.TaskQueued(
        aggregate_id="s1-pi-60", correlation_id="s1", submission_id="s1", task_id="pi-60",
        spec=ev.TaskSpec(git_url="https://git/x", trainer_ref="v1.2", config_file="configs/fast.toml",
                         passthrough_args=("--config_override", "seed=3")),
        prediction_interval=60,
    )
    event = _finished(metrics={"long": {"f1": 0.5}, "short": {"f1": 0.4}}, cost_usd=0.12)
    record = domain.AttemptRecord(event_id=event.event_id, submission_id="s1", task_id="pi-60", attempt=2,
                                  artifacts={"long.pkl": f"{PREFIX}models/long.pkl"},
                                  log_key=f"{PREFIX}console.log")
    spec = domain.run_spec(event, queued, record, lambda key: f"s3://b/{key}")
    assert spec.name == "s1/pi-60/attempt-2"
    assert spec.params["prediction_interval"] == "60"
    assert spec.params["trainer_ref"] == "v1.2"
    assert spec.params["config_file"] == "configs/fast.toml"
    assert spec.params["passthrough_args"] == "--config_override seed=3"
    assert spec.params["submission_id"] == "s1" and spec.params["attempt"] == "2"
    assert spec.metrics == {"long.f1": 0.5, "short.f1": 0.4, "cost_usd": 0.12}
    assert spec.tags[domain.EVENT_ID_TAG] == event.event_id
    assert spec.tags["artifact.long.pkl"] == f"s3://b/{PREFIX}models/long.pkl"
    assert spec.tags["log"] == f"s3://b/{PREFIX}console.log"


def test_run_params_without_the_queued_event() -> None:
    assert set(domain.run_params(_finished(), None)) == {"submission_id", "task_id", "attempt", "exit_code"}


def _created() -> ev.SubmissionCreated:
    return ev.SubmissionCreated(aggregate_id="s1", correlation_id="s1", owner="ana", name="momentum",
                                git_url="https://git/x")


def test_notices_for_the_three_endings() -> None:
    completed = domain.notice_for(ev.SubmissionCompleted(aggregate_id="s1", correlation_id="s1"), _created(),
                                  "https://ts.example/submissions/{submission_id}")
    assert completed is not None and completed.status == "COMPLETED"
    assert "momentum" in completed.title and completed.link == "https://ts.example/submissions/s1"

    failed = domain.notice_for(ev.SubmissionFailed(aggregate_id="s1", correlation_id="s1", reason="pi-60: OOM"),
                               None)
    assert failed is not None and failed.status == "ERROR" and "reason: pi-60: OOM" in failed.lines

    report = sample_report(False, failing="no_lookahead", detail="row 10 changed")
    rejected = domain.notice_for(
        ev.SubmissionValidated(aggregate_id="s1", correlation_id="s1", passed=False, report=report), _created()
    )
    assert rejected is not None and rejected.status == "REJECTED"
    assert "failed check no_lookahead: row 10 changed" in rejected.lines
    assert not any("imports" in line for line in rejected.lines)


def test_no_notice_for_an_accepted_submission() -> None:
    accepted = ev.SubmissionValidated(aggregate_id="s1", correlation_id="s1", passed=True)
    assert domain.notice_for(accepted, None) is None
    assert domain.notice_for(ev.SubmissionStarted(aggregate_id="s1", correlation_id="s1"), None) is None


def test_payload_shapes() -> None:
    notice = domain.Notice("s1", "ERROR", "Submission s1 failed", ("reason: boom",), "https://x/s1")
    slack = domain.slack_payload(notice)
    assert set(slack) == {"text"} and "*Submission s1 failed*" in slack["text"] and "<https://x/s1|" in slack["text"]
    lark = domain.lark_payload(notice)
    assert lark["msg_type"] == "post"
    post = lark["content"]["post"]["en_us"]
    assert post["title"] == "Submission s1 failed"
    assert [{"tag": "text", "text": "reason: boom"}] in post["content"]
    assert [{"tag": "a", "text": "open submission", "href": "https://x/s1"}] in post["content"]


def test_record_keys_are_kv_safe() -> None:
    assert domain.attempt_record_key("s-1", "pi-60", 3) == "attempt.s-1.pi-60.3"
    assert domain.notice_record_key("s-1", "REJECTED") == "notice.s-1.REJECTED"
