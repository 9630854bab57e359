"""RunPod errors, as subclasses of Touchstone's one error tree, and the one classifier.

    RetryableError
    ├── UnavailableError            5xx, timeouts, connection errors
    │   ├── BadResponseError        a success status with a body we cannot read
    │   └── CreateUncertainError    create failed in a way that may still have made the pod
    ├── RateLimitedError            429; ``retry_after`` from Retry-After or RateLimit
    └── NoCapacityError             400 whose detail says nothing is free (try another candidate)
    PermanentError
    ├── InvalidInputError           400 (a rule), 422 (schema); ``errors`` lists the violations
    ├── NotFoundError               404
    ├── AuthError                   401
    │   └── ForbiddenError          403: the key or account may not use this (skip the candidate)
    ├── PaymentRequiredError        402: balance too low; no candidate can succeed
    ├── PodStateConflictError       409: the action is not valid in the pod's status
    └── WrongApiError               a RunPod v1 error envelope: the base URL points at the wrong API

RunPod gives no machine-readable error codes: status first, then the ``detail`` text.
"""

from __future__ import annotations

from touchstone.shared.errors import (
    AuthError,
    InvalidInputError,
    NoCapacityError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TouchstoneError,
    UnavailableError,
)

__all__ = [
    "BadResponseError",
    "CreateUncertainError",
    "ForbiddenError",
    "PaymentRequiredError",
    "PodStateConflictError",
    "WrongApiError",
    "classify",
]

_CAPACITY_PHRASES = (
    "no longer any instances available",
    "no instances currently available",
    "no instances available",
    "not enough free gpus",
)
_BALANCE_PHRASES = ("balance is too low", "insufficient balance", "add funds")
_AUTH_PHRASES = ("unauthorized", "invalid api key", "not authenticated")
_TRANSIENT_PHRASES = ("something went wrong", "internal_server_error", "try again later")


class BadResponseError(UnavailableError):
    """RunPod answered with a success status but a body we cannot read."""


class CreateUncertainError(UnavailableError):
    """A create failed after it may have reached RunPod (5xx or timeout).

    The pod may exist and bill. List pods by ``pod_name`` before creating again.
    """

    def __init__(self, message: str, *, pod_name: str) -> None:
        super().__init__(message)
        self.pod_name = pod_name


class ForbiddenError(AuthError):
    """The key is valid but may not do this (or the account cannot use that pool)."""


class PaymentRequiredError(PermanentError):
    """The account balance is too low to rent a pod."""


class PodStateConflictError(PermanentError):
    """The action is not valid for the pod's current status; re-read the pod."""


class WrongApiError(PermanentError):
    """A RunPod v1 error envelope answered a v2 call: the base URL is wrong."""


def classify(
    status: int,
    detail: str,
    *,
    errors: tuple[str, ...] = (),
    retry_after: float | None = None,
    v1_envelope: bool = False,
) -> TouchstoneError:
    """Map a RunPod error (HTTP status plus detail text) to one of our errors.

    ``detail`` must already be free of secrets; it ends up in the message.
    """
    text = detail.lower()
    message = f"RunPod {status}: {detail}" if detail else f"RunPod {status}"
    if errors:
        message += " (" + "; ".join(errors) + ")"
    error: TouchstoneError
    if v1_envelope:
        error = WrongApiError(f"{message}; a v1 error envelope, check the base URL (want /v2)")
    elif any(p in text for p in _CAPACITY_PHRASES):
        error = NoCapacityError(message)
    elif status == 402 or any(p in text for p in _BALANCE_PHRASES):
        error = PaymentRequiredError(message)
    elif status == 401:
        error = AuthError(message)
    elif status == 403:
        error = ForbiddenError(message)
    elif status == 404:
        error = NotFoundError(message)
    elif status == 409:
        error = PodStateConflictError(message)
    elif status == 429:
        error = RateLimitedError(message, retry_after=retry_after)
    elif status >= 500 or status in (408, 425):
        error = UnavailableError(message, retry_after=retry_after)
    elif any(p in text for p in _AUTH_PHRASES):
        error = AuthError(message)
    elif any(p in text for p in _TRANSIENT_PHRASES):
        error = UnavailableError(message)
    elif 400 <= status < 500:
        error = InvalidInputError(message)
    else:
        error = BadResponseError(message)
    return error
