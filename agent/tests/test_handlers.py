"""A command is answered with what its reaction answered, or why there is no answer (the
README's table of reactions is checked by ``tests/test_reaction_tables.py``)."""

from __future__ import annotations

from touchstone.agent.handlers import answer, answer_command
from touchstone.agent.testing import launch
from touchstone.shared.agents import CommandReply
from touchstone.shared.commands import LaunchTask, TerminateTask
from touchstone.shared.consumer import Delivery
from touchstone.shared.reactions import Reactions

# --- how a command is answered ---------------------------------------------------------

SUBJECT = "ts.agent.h1.cmd"


async def test_each_command_gets_the_answer_its_reaction_gave() -> None:
    async def on_terminate(command: TerminateTask, deps: None, request: Delivery) -> None:
        assert request.subject == SUBJECT and request.num_delivered == 1
        answer(request, CommandReply(ok=True, error=f"stopped attempt {command.attempt}"))

    handlers = Reactions[None]({TerminateTask: on_terminate}).bind(None)
    stop = TerminateTask(submission_id="s1", task_id="t1", attempt=3)
    reply = await answer_command(handlers, stop.model_dump_json().encode(), SUBJECT)
    assert reply == CommandReply(ok=True, error="stopped attempt 3")
    refused = await answer_command(handlers, launch("/nowhere").model_dump_json().encode(), SUBJECT)
    assert not refused.ok and refused.error == "unknown command LaunchTask"


async def test_a_reaction_that_raises_or_gives_no_answer_is_answered_not_ok() -> None:
    async def on_terminate(command: TerminateTask, deps: None, request: Delivery) -> None:
        raise RuntimeError("the engine is gone")

    async def on_launch(command: LaunchTask, deps: None, request: Delivery) -> None:
        return None

    handlers = Reactions[None]({TerminateTask: on_terminate, LaunchTask: on_launch}).bind(None)
    stop = TerminateTask(submission_id="s1", task_id="t1", attempt=1).model_dump_json().encode()
    assert await answer_command(handlers, stop, SUBJECT) == CommandReply(ok=False,
                                                                         error="RuntimeError: the engine is gone")
    silent = await answer_command(handlers, launch("/nowhere").model_dump_json().encode(), SUBJECT)
    assert silent == CommandReply(ok=False, error="no answer to LaunchTask")
    for hostile in (b"", b"[]", b'{"type": "RmRf"}', b'{"type": "TerminateTask", "attempt": "x"}'):
        reply = await answer_command(handlers, hostile, SUBJECT)
        assert not reply.ok and (reply.error or "").startswith("malformed command")
