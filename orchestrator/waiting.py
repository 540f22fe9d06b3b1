"""Polling with short, backed-off intervals and a deadline, instead of fixed sleeps."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.errors import StillWaiting

T = TypeVar("T")

FIRST_INTERVAL = 1.0
BACKOFF = 1.3


def max_interval() -> float:
    """Longest pause between two polls; ORCHESTRATOR_POLL_MAX_INTERVAL overrides 15 s."""
    try:
        return max(0.1, float(os.environ.get("ORCHESTRATOR_POLL_MAX_INTERVAL", "15")))
    except ValueError:
        return 15.0


@dataclass(frozen=True)
class WaitPolicy:
    """How long this command may wait: `no_wait` checks once; `deadline` is a monotonic time."""

    no_wait: bool = False
    deadline: float | None = None

    @classmethod
    def from_args(cls, no_wait: bool, max_wait: float | None) -> WaitPolicy:
        deadline = time.monotonic() + max_wait if max_wait is not None else None
        return cls(no_wait=no_wait, deadline=deadline)


def intervals(first: float = FIRST_INTERVAL, cap: float | None = None) -> Callable[[], float]:
    """Successive pauses: first, first*1.3, ... capped."""
    cap = max_interval() if cap is None else cap
    current = [min(first, cap)]

    def next_interval() -> float:
        value = current[0]
        current[0] = min(value * BACKOFF, cap)
        return value

    return next_interval


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    policy: WaitPolicy,
    limit: float | None = None,
    on_poll: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `probe` until it returns something other than None, and return that.

    Raises StillWaiting once `policy` (no-wait, the command's deadline) or this wait's own
    `limit` in seconds says stop. The probe itself raises to fail fast.
    """
    started = clock()
    stop_at = [t for t in (policy.deadline, started + limit if limit else None) if t is not None]
    deadline = min(stop_at) if stop_at else None
    pause = intervals()
    while True:
        result = probe()
        if result is not None:
            return result
        now = clock()
        if on_poll:
            on_poll(now - started)
        if policy.no_wait or (deadline is not None and now >= deadline):
            raise StillWaiting(what, now - started)
        step = pause()
        if deadline is not None:
            step = min(step, max(0.0, deadline - now))
        sleep(step)
