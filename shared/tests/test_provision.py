"""``provision`` (every service on start, and ``touchstone nats init``) leaves streams alone when
nothing changed and never shrinks their replicas: a service provisioning with one replica must
not undo ``nats init --replicas 3`` on a cluster (it did: every start rewrote every stream)."""

from __future__ import annotations

import dataclasses

from nats.js import api
from touchstone.shared.jetstream import LogLimits, _differs, plan, provision
from touchstone.shared.settings import Settings


async def test_an_unchanged_stream_is_not_rewritten_and_a_changed_one_is(js, subjects) -> None:
    logs = LogLimits.of(Settings())
    again = await provision(js, subjects, logs=logs)
    assert [line for line in again if line.startswith("stream")] == [
        f"stream {s.name} up to date" for s in plan(subjects, logs=logs).streams
    ]
    bigger = dataclasses.replace(logs, max_bytes=logs.max_bytes * 2)
    changed = await provision(js, subjects, logs=bigger)
    assert f"updated stream {subjects.logs_stream}" in changed
    assert (await js.stream_info(subjects.logs_stream)).config.max_bytes == bigger.max_bytes


def test_replicas_only_grow() -> None:
    current = api.StreamConfig(name="S", subjects=["s.>"], num_replicas=3, max_age=0.0, max_bytes=-1,
                               duplicate_window=120.0, allow_direct=False)
    one = api.StreamConfig(name="S", subjects=["s.>"], num_replicas=1)
    assert not _differs(current, one)  # a service's plan (one replica, defaults unset) changes nothing
    assert _differs(dataclasses.replace(current, num_replicas=1), dataclasses.replace(one, num_replicas=3))
