"""The agent's reactions to the provider's commands, in one table bound to its ``Deps`` at
bootstrap (``Agent``).

Commands come by core-NATS request/reply on ``{ns}.agent.{host}.cmd``, not through a
``ConsumerLoop``: there is no stream, so a command's ``Delivery`` is a ``Request`` (its subject,
delivered once, sequence 0). The provider waits for the answer, so each reaction answers its
request (``answer``) instead of being settled by a loop; ``answer_command`` sends back that
answer, or the error a reaction raised as a refusal. Both commands are idempotent: a retry
after a lost answer is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError
from touchstone.agent.attempts import Attempts
from touchstone.shared.agents import CommandReply
from touchstone.shared.commands import LaunchTask, TerminateTask, decode_command
from touchstone.shared.consumer import Delivery, Handler
from touchstone.shared.logs import task_context
from touchstone.shared.reactions import Reactions, type_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    """What the reactions use."""

    host: str
    attempts: Attempts
    refusing: Callable[[], str | None]
    """Why this agent takes no work now (``None``: it takes work); asked afresh per command,
    since a refusing agent looks again at its runtime every heartbeat."""


@dataclass(frozen=True)
class Request(Delivery):
    """Where a command came from, and the answer its reaction gives."""

    answers: list[CommandReply] = field(default_factory=list)

    @classmethod
    def on(cls, subject: str) -> Request:
        """A request received on ``subject`` (core NATS: no stream, delivered once)."""
        return cls(subject=subject, stream_seq=0, num_delivered=1, num_pending=0)


def answer(request: Delivery, reply: CommandReply) -> None:
    """Give ``reply`` as the answer to ``request``."""
    if not isinstance(request, Request):
        raise TypeError(f"a command of the agent comes as a Request, not {type(request).__name__}")
    request.answers.append(reply)


async def on_launch_task(command: LaunchTask, deps: Deps, request: Delivery) -> None:
    """Run the attempt through its phases (a launch of an attempt already here answers its
    report); an agent that takes no work refuses, saying why."""
    why_not = deps.refusing()
    if why_not:
        answer(request, CommandReply(ok=False, error=f"agent {deps.host} takes no work: {why_not}"))
        return
    answer(request, await deps.attempts.launch(command))


async def on_terminate_task(command: TerminateTask, deps: Deps, request: Delivery) -> None:
    """Stop and remove the attempt's container, answering its report as it ends (or as it
    ended); one this agent does not know is removed all the same, answered without a report."""
    answer(request, await deps.attempts.terminate(command))


REACTIONS = Reactions[Deps]({LaunchTask: on_launch_task, TerminateTask: on_terminate_task})


async def answer_command(handlers: Mapping[str, Handler], data: bytes, subject: str) -> CommandReply:
    """The answer to one command received on ``subject``: its reaction's, or why there is none
    (a malformed command, a command of no reaction, a reaction that raised)."""
    try:
        command = decode_command(data)
    except (ValidationError, ValueError) as e:
        return CommandReply(ok=False, error=f"malformed command: {str(e)[:300]}")
    handler = handlers.get(type_name(type(command)))
    if handler is None:
        return CommandReply(ok=False, error=f"unknown command {type(command).__name__}")
    request = Request.on(subject)
    with task_context(command):  # its lines, and those of the attempt it starts, carry the ids
        try:
            await handler(command, request)
        except Exception as e:
            log.exception("command failed")
            return CommandReply(ok=False, error=f"{type(e).__name__}: {e}")
    if not request.answers:
        return CommandReply(ok=False, error=f"no answer to {type(command).__name__}")
    return request.answers[-1]
