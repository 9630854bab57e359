"""Events carry a schema version; stored events of an older shape are upcast on read.

The fixtures are events as an older Touchstone stored them: ``RoguePodReaped`` version 1
(its price was ``cost_per_hr``) and a ``TaskQueued`` from before events had versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from touchstone.shared import events as ev
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects

FIXTURES = Path(__file__).parent / "fixtures" / "events"


def test_a_stored_version_1_event_is_read_as_the_current_model() -> None:
    event = ev.decode_event((FIXTURES / "RoguePodReaped-v1.json").read_bytes())
    assert isinstance(event, ev.RoguePodReaped)
    assert event.schema_version == ev.RoguePodReaped.SCHEMA_VERSION == 2
    assert event.cost_per_hour == pytest.approx(0.44)
    assert (event.pod_id, event.pod_name) == ("pod-7xq2m1", "touchstone-s-9c1e-pi-60-2")
    # written back, it is the current shape
    again = ev.decode_event(ev.encode_event(event))
    assert again == event and b'"cost_per_hr"' not in ev.encode_event(event)


def test_an_event_stored_before_versions_existed_is_version_1() -> None:
    event = ev.decode_event((FIXTURES / "TaskQueued-unversioned.json").read_bytes())
    assert isinstance(event, ev.TaskQueued) and event.schema_version == 1
    assert (event.prediction_interval, event.spec.git_ref) == (60, "4f2a9c1")


def test_new_events_are_stamped_with_their_current_version() -> None:
    reaped = ev.RoguePodReaped(aggregate_id="runpod", correlation_id="runpod", pod_id="p", pod_name="n",
                               cost_per_hour=0.3)
    assert reaped.schema_version == 2 and b'"schema_version":2' in ev.encode_event(reaped)
    queued = ev.TaskQueued(aggregate_id="s-1-pi-15", correlation_id="s-1", submission_id="s-1", task_id="pi-15",
                           spec=ev.TaskSpec(git_url="https://x/y.git"))
    assert queued.schema_version == 1 and ev.decode_event(ev.encode_event(queued)) == queued


def test_a_type_whose_version_and_default_disagree_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="SCHEMA_VERSION"):
        class Careless(ev.TaskEvent):  # raised while the class is made
            SCHEMA_VERSION = 3


@pytest.mark.parametrize("version", [3, 0, -1, None, True, "x"])
def test_a_version_this_code_does_not_know_is_refused_not_guessed(version) -> None:
    doc = json.loads((FIXTURES / "RoguePodReaped-v1.json").read_text())
    doc["schema_version"] = version
    with pytest.raises(ValueError, match="version"):
        ev.decode_event(json.dumps(doc).encode())


async def test_an_old_event_in_the_stream_reads_back_current_through_the_publisher(js, subjects: Subjects) -> None:
    """The old bytes as they sit in a real stream, read by the code every service uses."""
    raw = (FIXTURES / "RoguePodReaped-v1.json").read_bytes()
    await js.publish(subjects.event("platform", "runpod", "RoguePodReaped"), raw, stream=subjects.events_stream)
    history = await EventPublisher(js, subjects).load("platform", "runpod")
    (recorded,) = history
    assert isinstance(recorded.event, ev.RoguePodReaped) and recorded.event.cost_per_hour == pytest.approx(0.44)
