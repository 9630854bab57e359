"""The promise, checked against the record itself (the events stream), not the services' views.

- every task reaches a terminal state;
- at most one ``TaskAssigned`` per attempt, and at most ``max_attempts`` attempts (an assignment
  a provider handed back with ``LaunchDeferred`` started nothing: the attempt's next one is no
  double);
- attempts of one task never overlap: nothing of attempt k happens after attempt k+1 was
  assigned, except the events that report its end;
- every submission the API acknowledged (201) is in the record;
- projections rebuilt from the stream equal the live ones each API replica serves;
- every pod the local RunPod created (its own ledger, not the providers' view) is owned by a
  live attempt or terminated within one reconcile period (plus the reap grace) after its
  attempt ended; here: after the load settled, when no attempt is live, every ``touchstone-``
  pod is terminated within that bound (``pods_settled``); and no attempt ever had two pods;
- every ``TrainingFinished`` names its console log and artifacts by keys under its attempt's
  prefix, and each of them is in the bucket (``objects_missing``, against a listing of the
  object store itself, not the results service's view).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from touchstone.shared import events as ev
from touchstone.shared.jetstream import stream_messages
from touchstone.shared.objects import keys as object_keys
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
    failures: list[str] = field(default_factory=list)  # every failed attempt and why (burns explained)

    @property
    def holds(self) -> bool:
        return not (self.unfinished or self.double_assigned or self.too_many_attempts or self.overlapping
                    or self.missing_submissions)


async def read_record(js: JetStreamContext, subjects: Subjects) -> list[ev.Event]:
    last = (await js.stream_info(subjects.events_stream)).state.last_seq
    return [ev.decode_event(msg.data)
            async for msg in stream_messages(js, subjects.events_stream, subjects.all_events, last, timeout=10)]


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
        handed_back: Counter[int] = Counter()
        for event in history:
            if isinstance(event, ev.TaskAssigned):
                assigned[event.attempt].append(event.occurred_at)
            elif isinstance(event, ev.LaunchDeferred):
                handed_back[event.attempt] += 1
        if any(len(times) - handed_back[attempt] > 1 for attempt, times in assigned.items()):
            verdict.double_assigned.append(task)
        if len(assigned) > max_attempts:
            verdict.too_many_attempts.append(task)
        verdict.attempts_burned += max(0, len(assigned) - 1)
        verdict.failures += [f"{task} attempt {e.attempt}: {e.failure_class}: {e.reason}"
                             for e in history if isinstance(e, ev.TaskFailed)]
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


@dataclass
class PodVerdict:
    created: int = 0
    leaked: list[str] = field(default_factory=list)
    """``touchstone-`` pods not terminated within the bound after every attempt ended."""
    doubled: list[str] = field(default_factory=list)
    """Attempts (pod names) for which the local RunPod created more than one pod."""
    settled_s: float = 0.0
    """Seconds from the load settling until the last of our pods was terminated."""


async def pods_settled(ledger: Callable[[], Awaitable[list[dict]]], bound_s: float) -> PodVerdict:
    """Poll the local RunPod's ledger until every ``touchstone-`` pod is terminated, at most
    ``bound_s`` (one reconcile period plus the reap grace): call once every task is terminal."""
    started = time.monotonic()
    while True:
        pods = [p for p in await ledger() if str(p["name"]).startswith("touchstone-")]
        alive = [str(p["name"]) for p in pods if not p["terminated"]]
        if not alive or time.monotonic() - started > bound_s:
            break
        await asyncio.sleep(0.5)
    names = Counter(str(p["name"]) for p in pods)
    return PodVerdict(created=len(pods), leaked=alive, doubled=sorted(n for n, c in names.items() if c > 1),
                      settled_s=round(time.monotonic() - started, 1))


def bucket_keys(client: Any, bucket: str, prefix: str = "") -> set[str]:
    """Every key in ``bucket`` under ``prefix``, without the prefix (the keys events carry):
    the store's own listing, through a boto3 S3 ``client``."""
    found: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update(str(o["Key"])[len(prefix):] for o in page.get("Contents", []))
    return found


def objects_missing(events: list[ev.Event], stored: set[str]) -> list[str]:
    """What every ``TrainingFinished`` promised and the store lacks: its console log and each
    artifact, by the keys the event names (a key outside the attempt's prefix, or no log key at
    all, counts as missing). ``stored``: every key in the store."""
    missing = []
    for event in events:
        if not isinstance(event, ev.TrainingFinished):
            continue
        where = f"{event.task_id} attempt {event.attempt}"
        named = {"console log": event.log_key, **{f"artifact {n}": k for n, k in event.artifacts.items()}}
        for what, key in named.items():
            if key is None:
                missing.append(f"{where}: no key for its {what}")
                continue
            try:
                object_keys.check_attempt_key(key, event.submission_id, event.task_id, event.attempt)
            except object_keys.UnsafeKey:
                missing.append(f"{where}: {what} {str(key)[:200]!r} is not under the attempt's prefix")
                continue
            if key not in stored:
                missing.append(f"{where}: {what} {key} is not in the bucket")
    return missing
