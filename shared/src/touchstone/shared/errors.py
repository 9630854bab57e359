"""One error tree for Touchstone.

    TouchstoneError
    ├── RetryableError          the same request may succeed later (nak with a delay)
    │   ├── UnavailableError    a dependency (NATS, store, vendor API) did not answer
    │   ├── RateLimitedError    the vendor asked us to slow down (``retry_after`` seconds)
    │   ├── NoCapacityError     no machine of the requested kind is free right now
    │   └── NotYet              not a failure: the work goes on elsewhere, look again later
    ├── PermanentError          retrying cannot help (term, dead-letter)
    │   ├── InvalidInputError   bad input at a boundary (HTTP 4xx, a poison message)
    │   ├── NotFoundError       the thing named does not exist
    │   ├── AuthError           credentials missing, rejected or not allowed
    │   └── IllegalTransition   a lifecycle refused an event in the current state
    └── ConcurrencyConflict     another writer appended to the aggregate first: reload, re-decide

The consumer loop maps these to JetStream ack / nak(delay) / term, and the HTTP layer maps them
to problem details; nothing else in the code base translates errors.
"""

from __future__ import annotations


class TouchstoneError(Exception):
    """Base of every error Touchstone raises on purpose."""


class RetryableError(TouchstoneError):
    """The same request may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(RetryableError):
    """A dependency did not answer in time or answered with a server error."""


class RateLimitedError(RetryableError):
    """The vendor asked us to slow down; ``retry_after`` says for how long, when it said."""


class QuotaExceeded(RetryableError):
    """A user's quota is used up for now; ``retry_after`` says when a try may succeed."""


class NoCapacityError(RetryableError):
    """No machine of the requested kind is free right now."""


class NotYet(RetryableError):
    """Not a failure: what the message asks is under way elsewhere, so it is kept and
    delivered again after ``retry_after`` (logged quietly, not as a warning)."""


class PermanentError(TouchstoneError):
    """Retrying the same request cannot help."""


class InvalidInputError(PermanentError):
    """Input rejected at a boundary."""


class NotFoundError(PermanentError):
    """The thing named does not exist (or is not visible to the caller)."""


class AuthError(PermanentError):
    """Credentials missing, rejected, or not allowed to do this."""


class IllegalTransition(PermanentError):
    """A lifecycle refused an event in its current state."""

    def __init__(self, lifecycle: str, state: str | None, event_type: str) -> None:
        super().__init__(f"{lifecycle}: {event_type} is not allowed in state {state or 'NEW'}")
        self.lifecycle = lifecycle
        self.state = state
        self.event_type = event_type


class ConcurrencyConflict(TouchstoneError):
    """Another writer appended to the aggregate first; reload the aggregate and decide again."""

    def __init__(self, subject: str, expected_seq: int) -> None:
        super().__init__(
            f"conflict on {subject}: expected last sequence {expected_seq}, another writer got there first"
        )
        self.subject = subject
        self.expected_seq = expected_seq
