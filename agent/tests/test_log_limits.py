"""A task that prints far more than the logs stream keeps, while events keep being written.

The logs stream has its own budget (``LogLimits``: total bytes, messages per task, message
size, oldest first); console lines are bounded per line and per message by the publisher.
Scaled down for test speed: a 2 MiB budget and 40 messages per task against a task that prints
64 MiB (with single lines of 8 MiB), so the bounds are exceeded 30-fold, the same as 1 GB would
exceed the production defaults' per-task share. Real agent, real nats-server.
"""

from __future__ import annotations

import asyncio
import time

from touchstone.agent.testing import launch, send
from touchstone.shared import events as ev
from touchstone.shared.console import MAX_LINE_BYTES, MAX_MESSAGE_BYTES
from touchstone.shared.jetstream import LogLimits, provision
from touchstone.shared.publisher import EventPublisher

NOISY = '''\
import sys
block = ("x" * 1023 + "\\n") * 1024  # 1 MiB of 1 KiB lines
for i in range(56):
    sys.stdout.write(block)
for i in range(1):
    sys.stdout.write("y" * (8 * 1024 * 1024) + "\\n")  # one line of 8 MiB, no newline inside
sys.stdout.flush()
print("noisy done", flush=True)
'''

LIMITS = LogLimits(max_bytes=2 * 1024 * 1024, max_msgs_per_task=40)


async def test_a_noisy_task_stays_in_its_budget_and_events_keep_being_written(
    nc, js, subjects, agent_settings, start_agent, eventually, tmp_path
):
    await provision(js, subjects, logs=LIMITS)
    trainer = tmp_path / "noisy-trainer"
    (trainer / "src").mkdir(parents=True)
    (trainer / "src" / "noisy_trainer.py").write_text(NOISY)
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "feature_set.py").write_text("NAME = 'x'\n")
    settings = agent_settings(trainer_dir=trainer, trainer_module="noisy_trainer")
    await start_agent(settings)
    publisher = EventPublisher(js, subjects)
    written: list[int] = []
    done = asyncio.Event()

    async def write_events() -> None:
        while not done.is_set():
            sid = f"s-{len(written)}"
            written.append(await publisher.append(ev.SubmissionCreated(
                aggregate_id=sid, correlation_id=sid, owner="o", name="n", git_url="https://example.com/x.git")))
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(write_events())
    command = launch(str(fs))
    streamed = [0]

    async def count(msg) -> None:
        streamed[0] += len(msg.data)

    await nc.subscribe(subjects.logs(f"{command.submission_id}-{command.task_id}"), cb=count)
    started = time.monotonic()
    assert (await send(nc, subjects, command)).ok
    aggregate = f"{command.submission_id}-{command.task_id}"
    last_seen: dict[str, int] = {}

    async def printed_and_streamed() -> bool:
        info = await js.stream_info(subjects.logs_stream, subjects_filter=subjects.logs(aggregate))
        last_seen["bytes"] = info.state.bytes
        assert info.state.bytes <= LIMITS.max_bytes, "the logs stream went over its budget"
        try:
            tail = await js.get_last_msg(subjects.logs_stream, subjects.logs(aggregate))
        except Exception:
            return False
        return b"noisy done" in tail.data

    await eventually(printed_and_streamed, timeout=120, interval=0.2)
    done.set()
    await writer
    elapsed = time.monotonic() - started
    assert streamed[0] > 50 * 1024 * 1024, streamed  # the flood really went through the broker

    info = await js.stream_info(subjects.logs_stream, subjects_filter=subjects.logs(aggregate))
    assert info.state.bytes <= LIMITS.max_bytes
    assert info.state.messages <= LIMITS.max_msgs_per_task
    # the 8 MiB line was cut to one bounded line, and no message is over the publisher's bound
    seq = info.state.first_seq
    cut_seen = False
    while seq <= info.state.last_seq:
        msg = await js.get_msg(subjects.logs_stream, seq)
        assert len(msg.data) <= MAX_MESSAGE_BYTES
        assert all(len(line) <= MAX_LINE_BYTES for line in msg.data.split(b"\n"))
        cut_seen = cut_seen or b"bytes cut]" in msg.data
        seq += 1
    assert cut_seen
    # events: every append during the flood succeeded, in order, none lost
    assert len(written) >= 10 and written == sorted(written), f"{len(written)} events in {elapsed:.1f}s"
    events = await js.stream_info(subjects.events_stream)
    assert events.state.messages >= len(written)
