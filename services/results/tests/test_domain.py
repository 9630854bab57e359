"""The pure decisions: keys, metrics, run contents, notices and their payloads."""

from __future__ import annotations

from pathlib import PurePosixPath

from touchstone.results import domain
from touchstone.shared import events as ev


def _finished(**kw: object) -> ev.TrainingFinished:
    base: dict[str, object] = dict(
        aggregate_id="s1-pi-60", correlation_id="s1", submission_id="s1", task_id="pi-60", attempt=2
    )
    return ev.TrainingFinished(**(base | kw))  # type: ignore[arg-type]


def test_keys_follow_the_layout() -> None:
    assert domain.attempt_prefix("s1", "pi-60", 2) == "models/s1/pi-60/attempt-2"
    assert domain.log_key("s1", "pi-60", 2) == "logs/s1/pi-60/attempt-2.log"


def test_staged_files_keep_their_place_inside_the_attempt() -> None:
    base = "file:///data/artifacts/models/s1/pi-60/attempt-2"
    plan = domain.plan_uploads(
        "s1", "pi-60", 2,
        {"long.pkl": f"{base}/models/long.pkl", "metrics.json": f"{base}/metrics.json",
         "elsewhere": "file:///tmp/x/my%20model.bin", "remote": "s3://bucket/k"},
        "file:///data/artifacts/logs/s1/pi-60/attempt-2.log",
    )
    keys = {u.name: u.key for u in plan.uploads}
    assert keys == {
        "long.pkl": "models/s1/pi-60/attempt-2/models/long.pkl",
        "metrics.json": "models/s1/pi-60/attempt-2/metrics.json",
        "elsewhere": "models/s1/pi-60/attempt-2/my_model.bin",
        "log": "logs/s1/pi-60/attempt-2.log",
    }
    assert plan.kept == {"remote": "s3://bucket/k"}
    assert {u.name: u.source for u in plan.uploads}["elsewhere"] == PurePosixPath("/tmp/x/my model.bin")


def test_keys_never_climb_out_of_the_attempt() -> None:
    plan = domain.plan_uploads("s1", "t", 1, {"a": "file:///x/models/s1/t/attempt-1/../../../etc/passwd"}, None)
    (upload,) = plan.uploads
    assert ".." not in PurePosixPath(upload.key).parts
    assert upload.key.startswith("models/s1/t/attempt-1/")


def test_two_names_with_one_file_name_stay_apart() -> None:
    plan = domain.plan_uploads("s", "t", 1, {"a": "file:///one/model.pkl", "b": "file:///two/model.pkl"}, None)
    assert len({u.key for u in plan.uploads}) == 2


def test_plan_is_deterministic() -> None:
    args = ("s", "t", 3, {"b": "file:///b", "a": "file:///a"}, "file:///l.log")
    assert domain.plan_uploads(*args) == domain.plan_uploads(*args)


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
                                  artifacts={"long.pkl": "s3://b/models/s1/pi-60/attempt-2/models/long.pkl"},
                                  log_uri="s3://b/logs/s1/pi-60/attempt-2.log")
    spec = domain.run_spec(event, queued, record)
    assert spec.name == "s1/pi-60/attempt-2"
    assert spec.params["prediction_interval"] == "60"
    assert spec.params["trainer_ref"] == "v1.2"
    assert spec.params["config_file"] == "configs/fast.toml"
    assert spec.params["passthrough_args"] == "--config_override seed=3"
    assert spec.params["submission_id"] == "s1" and spec.params["attempt"] == "2"
    assert spec.metrics == {"long.f1": 0.5, "short.f1": 0.4, "cost_usd": 0.12}
    assert spec.tags[domain.EVENT_ID_TAG] == event.event_id
    assert spec.tags["artifact.long.pkl"].startswith("s3://")
    assert spec.tags["log"] == "s3://b/logs/s1/pi-60/attempt-2.log"


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

    report = {"passed": False, "checks": [{"name": "imports", "passed": True},
                                          {"name": "no_look_ahead", "passed": False, "detail": "row 10 changed"}]}
    rejected = domain.notice_for(
        ev.SubmissionValidated(aggregate_id="s1", correlation_id="s1", passed=False, report=report), _created()
    )
    assert rejected is not None and rejected.status == "REJECTED"
    assert "failed check no_look_ahead: row 10 changed" in rejected.lines
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
