"""The promise, checked against the record itself (the events stream), not the services' views.

- every task reaches a terminal state;
- at most one ``TaskAssigned`` per attempt, and at most ``max_attempts`` attempts;
- attempts of one task never overlap: nothing of attempt k happens after attempt k+1 was
  assigned, except the events that report its end;
- every submission the API acknowledged (201) is in the record;
- projections rebuilt from the stream equal the live ones each API replica serves.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from nats.js import JetStreamContext, api
from touchstone.shared import events as ev
from touchstone.shared.subjects import Subjects

TERMINAL_TASK = (ev.TrainingFinished, ev.TaskErrored, ev.TaskCancelled)
# what a superseded attempt may still report after the next one was assigned: its own end
ENDINGS = (ev.TaskFailed, ev.ContainerTerminated, ev.TrainingFinished)


@dataclass
class Verdict:
    tasks: int = 0
    submissions: int = 0
    unfinished: list[str] = field(default_factory=list)
    double_assigned: list[str] = field(default_factory=list)
    too_many_attempts: list[str] = field(default_factory=list)
    overlapping: list[str] = field(default_factory=list)
    missing_submissions: list[str] = field(default_factory=list)
    attempts_burned: int = 0  # attempts beyond the first, over all tasks

    @property
    def holds(self) -> bool:
        return not (self.unfinished or self.double_assigned or self.too_many_attempts or self.overlapping
                    or self.missing_submissions)


async def read_record(js: JetStreamContext, subjects: Subjects) -> list[ev.Event]:
    last = (await js.stream_info(subjects.events_stream)).state.last_seq
    sub = await js.subscribe(subjects.all_events, stream=subjects.events_stream, ordered_consumer=True,
                             config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL))
    events: list[ev.Event] = []
    seq = 0
    try:
        while seq < last:
            msg = await sub.next_msg(timeout=10)
            seq = msg.metadata.sequence.stream
            events.append(ev.decode_event(msg.data))
    finally:
        await sub.unsubscribe()
    return events


def check(events: list[ev.Event], acknowledged: list[str], max_attempts: int = 3) -> Verdict:
    verdict = Verdict()
    tasks: dict[str, list[ev.Event]] = defaultdict(list)
    submissions = set()
    for event in events:
        if isinstance(event, ev.SubmissionCreated):
            submissions.add(event.aggregate_id)
        elif event.aggregate == "task":
            tasks[event.aggregate_id].append(event)
    verdict.tasks, verdict.submissions = len(tasks), len(submissions)
    verdict.missing_submissions = [s for s in acknowledged if s not in submissions]
    for task, history in tasks.items():
        assigned: dict[int, list[datetime]] = defaultdict(list)
        for event in history:
            if isinstance(event, ev.TaskAssigned):
                assigned[event.attempt].append(event.occurred_at)
        if any(len(times) > 1 for times in assigned.values()):
            verdict.double_assigned.append(task)
        if len(assigned) > max_attempts:
            verdict.too_many_attempts.append(task)
        verdict.attempts_burned += max(0, len(assigned) - 1)
        if not any(isinstance(e, TERMINAL_TASK) for e in history):
            verdict.unfinished.append(task)
        starts = {attempt: min(times) for attempt, times in assigned.items()}
        for event in history:
            attempt = getattr(event, "attempt", None)
            if attempt is None or isinstance(event, (*ENDINGS, ev.TaskQueued, ev.TaskAssigned, ev.TaskRetried)):
                continue
            later = starts.get(attempt + 1)
            if later is not None and event.occurred_at > later:
                verdict.overlapping.append(f"{task}: {event.event_type} of attempt {attempt} after attempt "
                                           f"{attempt + 1} was assigned")
    return verdict
