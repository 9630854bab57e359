"""One service shape: a table of plain reactions keyed by the message's class, bound to a
service's own small ``Deps`` at bootstrap.

A reaction is ``async def on_<message>(message, deps, delivery)``: the message (an event, a
command, an agent's report), the service's dependencies, and where the message came from
(its redelivery count; most reactions ignore it). The table is the one place that says what a
service reacts to, so the consumer's filter subjects are derived from it, never spelled beside
it::

    REACTIONS = Reactions[Deps]({
        ev.TrainingFinished: on_training_finished,
        ev.TaskFailed: on_task_failed,
    })
    loop = ConsumerLoop(js, subjects, REACTIONS.event_consumer("results", subjects),
                        REACTIONS.bind(deps), decode_event)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from touchstone.shared.consumer import ConsumerSpec, Delivery, Handler
from touchstone.shared.subjects import Subjects

D = TypeVar("D")
Reaction = Callable[[Any, D, Delivery], Awaitable[None]]


def type_name(message: type[BaseModel]) -> str:
    """The name a message travels under (its ``type`` field's literal, else its class name)."""
    declared = message.model_fields.get("type")
    if declared is not None and isinstance(declared.default, str):
        return declared.default
    return message.__name__


@dataclass(frozen=True)
class Reactions(Generic[D]):
    """What one consumer of a service reacts to, and how."""

    table: Mapping[type[BaseModel], Reaction[D]]
    _by_name: dict[str, Reaction[D]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Reaction[D]] = {}
        for message, reaction in self.table.items():
            name = type_name(message)
            if name in by_name:
                raise ValueError(f"two reactions to {name}")
            by_name[name] = reaction
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def get(self, name: str) -> Reaction[D] | None:
        """The reaction to messages of this type name, or ``None`` for one this table ignores."""
        return self._by_name.get(name)

    def bind(self, deps: D) -> Mapping[str, Handler]:
        """The consumer loop's handlers: each reaction with this service's deps bound."""
        return {name: _bound(reaction, deps) for name, reaction in self._by_name.items()}

    def event_filters(self, subjects: Subjects) -> list[str]:
        """The events stream's subjects of exactly the events in the table."""
        return [subjects.events_of_type(_aggregate(message), type_name(message)) for message in self.table]

    def command_filters(self, subjects: Subjects, service: str) -> list[str]:
        """The service's work queue subjects of exactly the commands in the table."""
        return [subjects.command(service, type_name(message)) for message in self.table]

    def event_consumer(self, name: str, subjects: Subjects, **spec: Any) -> ConsumerSpec:
        """A durable consumer of the events stream filtered to this table."""
        return ConsumerSpec(name=name, stream=subjects.events_stream,
                            filter_subjects=self.event_filters(subjects), **spec)

    def command_consumer(self, service: str, subjects: Subjects, **spec: Any) -> ConsumerSpec:
        """The durable consumer of a service's work queue, filtered to this table."""
        return ConsumerSpec(name=service, stream=subjects.commands_stream,
                            filter_subjects=self.command_filters(subjects, service), **spec)

    def merged(self, other: Reactions[D]) -> Reactions[D]:
        """Both tables as one (a type in both is refused)."""
        both = [type_name(message) for message in self.table if message in other.table]
        if both:
            raise ValueError(f"two reactions to {', '.join(both)}")
        return replace(self, table={**self.table, **other.table})


def _aggregate(message: type[BaseModel]) -> str:
    aggregate = getattr(message, "aggregate", None)
    if not isinstance(aggregate, str):
        raise TypeError(f"{message.__name__} is not an event (no aggregate)")
    return aggregate


def _bound(reaction: Reaction[D], deps: D) -> Handler:
    @functools.wraps(reaction)
    async def handler(message: Any, delivery: Delivery) -> None:
        await reaction(message, deps, delivery)

    return handler
