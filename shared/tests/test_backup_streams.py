"""Backup of streams as they are in a live broker: holes left by expired or deleted messages,
services appending while the backup runs."""

from __future__ import annotations

import asyncio
import time

from touchstone.shared.backup import backup, read_backup
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.testing import created


async def test_a_dead_letter_that_is_gone_does_not_stall_the_backup(js, subjects, tmp_path) -> None:
    pub = EventPublisher(js, subjects)
    for i in range(3):
        await pub.append(created(f"s-{i}"))
    ack = await js.publish(subjects.dead_letter("retract"), b'{"reason":"x"}', stream=subjects.dead_letter_stream)
    await js.publish(subjects.dead_letter("retract"), b'{"reason":"kept"}', stream=subjects.dead_letter_stream)
    await js.delete_msg(subjects.dead_letter_stream, ack.seq)
    second = await js.publish(subjects.dead_letter("retract"), b'{"reason":"last"}',
                              stream=subjects.dead_letter_stream)
    await js.delete_msg(subjects.dead_letter_stream, second.seq)  # the stream's last sequence is a hole
    started = time.monotonic()
    summary = await backup(js, subjects, tmp_path / "b.jsonl")
    assert time.monotonic() - started < 10
    assert summary.messages == {"events": 3, "deadletter": 1}
    contents = read_backup(tmp_path / "b.jsonl")
    assert [m.stream for m in contents.messages] == ["events"] * 3 + ["deadletter"]


async def test_events_appended_during_a_backup_are_left_for_the_next_one(js, subjects, tmp_path) -> None:
    pub = EventPublisher(js, subjects)
    for i in range(200):
        await pub.append(created(f"s-{i}"))
    stop = asyncio.Event()

    async def keep_appending() -> None:
        i = 0
        while not stop.is_set():
            await pub.append(created(f"late-{i}"))
            i += 1

    writer = asyncio.create_task(keep_appending())
    try:
        summary = await backup(js, subjects, tmp_path / "b.jsonl")
    finally:
        stop.set()
        await writer
    contents = read_backup(tmp_path / "b.jsonl")
    seqs = [m.seq for m in contents.messages if m.stream == "events"]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 200  # a gap-free prefix
    assert summary.messages["events"] == len(seqs) == contents.header.streams["events"].last_seq
