"""RunPod v2's per-user rate limits: fixed minute, hour and day windows.

Every authenticated request counts against every window; when any window is spent the
answer is 429 with ``Retry-After`` (seconds to that window's reset). The ``RateLimit`` and
``RateLimit-Policy`` headers go on every authenticated answer, in the structured-field form
RunPod uses (``"minute";r=59;t=42``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

EXAMPLE_POLICY = {"minute": (60, 60), "hour": (3_000, 3_600), "day": (50_000, 86_400)}
"""The example policy of RunPod's v2 schema (``RateLimit-Policy`` header): the default."""
DEFAULT_QUOTAS = EXAMPLE_POLICY


def scaled(factor: float, policy: dict[str, tuple[int, int]] = EXAMPLE_POLICY) -> dict[str, tuple[int, int]]:
    """The policy with every quota multiplied by ``factor`` (windows unchanged): for tests that
    run the provider with its periods shortened by about that factor."""
    return {name: (max(1, round(quota * factor)), seconds) for name, (quota, seconds) in policy.items()}


@dataclass
class RateLimiter:
    """Counts requests per window; ``quotas`` maps a window name to (quota, seconds)."""

    quotas: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    clock: Callable[[], float] = time.monotonic
    _counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Window name → (window number, requests in it)."""

    def _state(self, name: str) -> tuple[int, int, float]:
        """(used, quota, seconds to reset) for one window now."""
        quota, seconds = self.quotas[name]
        now = self.clock()
        number = int(now // seconds)
        current, used = self._counts.get(name, (number, 0))
        if current != number:
            used = 0
        reset = (number + 1) * seconds - now
        return used, quota, reset

    def take(self) -> float | None:
        """Count one request; None if allowed, else seconds until the spent window resets."""
        waits = []
        for name in self.quotas:
            used, quota, reset = self._state(name)
            if used >= quota:
                waits.append(reset)
        if waits:
            return max(waits)
        for name, (_, seconds) in self.quotas.items():
            used, _, _ = self._state(name)
            self._counts[name] = (int(self.clock() // seconds), used + 1)
        return None

    def headers(self) -> dict[str, str]:
        limit, policy = [], []
        for name, (quota, seconds) in self.quotas.items():
            used, _, reset = self._state(name)
            limit.append(f'"{name}";r={max(0, quota - used)};t={math.ceil(reset)}')
            policy.append(f'"{name}";q={quota};w={seconds}')
        return {"RateLimit": ", ".join(limit), "RateLimit-Policy": ", ".join(policy)}
