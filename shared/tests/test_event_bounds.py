"""Every event stays under the broker's payload limit by construction, whatever a task wrote:
free text is cut (a log snippet keeps its end), oversized documents become a note."""

from __future__ import annotations

from touchstone.shared import console
from touchstone.shared import events as ev
from touchstone.shared.jetstream import MAX_EVENT_BYTES

TASK = {"aggregate_id": "s-1-validation", "correlation_id": "s-1", "submission_id": "s-1", "task_id": "validation"}
HUGE = "é" * 5_000_000  # 10 MB of two-byte characters


def test_free_text_from_a_task_is_cut_and_the_snippet_keeps_its_end() -> None:
    failed = ev.TaskFailed(**TASK, attempt=1, reason=HUGE, log_snippet=HUGE + "Traceback: the real error")
    assert len(failed.model_dump_json().encode()) < 40_000 < MAX_EVENT_BYTES
    assert failed.log_snippet is not None and failed.log_snippet.endswith("the real error")
    for event in (ev.TaskErrored(**TASK, reason=HUGE), ev.TaskCancelled(**TASK, reason=HUGE),
                  ev.SubmissionFailed(aggregate_id="s-1", correlation_id="s-1", reason=HUGE)):
        assert len(event.model_dump_json().encode()) < 10_000


def test_documents_from_a_task_over_their_bound_become_a_note() -> None:
    big = {f"k{i}": "v" * 1000 for i in range(5000)}
    finished = ev.TrainingFinished(**TASK, attempt=1, metrics=big, artifacts={f"m{i}": "s3://b/" + "x" * 900
                                                                               for i in range(5000)})
    assert len(finished.model_dump_json().encode()) < 2_000
    assert "omitted" in finished.metrics and "omitted" in finished.artifacts
    small = ev.TrainingFinished(**TASK, attempt=1, metrics={"long": {"accuracy": 0.6}})
    assert small.metrics == {"long": {"accuracy": 0.6}}  # within bounds nothing changes


def test_console_messages_are_bounded_per_line_and_per_message() -> None:
    lines = ["a" * 10_000_000, *("b" * 1000 for _ in range(500)), "short"]
    bodies = list(console.messages(lines))
    assert all(len(b) <= console.MAX_MESSAGE_BYTES for b in bodies)
    assert all(len(line) <= console.MAX_LINE_BYTES for b in bodies for line in b.split(b"\n"))
    assert b"bytes cut]" in bodies[0] and bodies[-1].endswith(b"short")
    assert sum(body.count(b"\n") + 1 for body in bodies) == len(lines)  # no line lost, none split
