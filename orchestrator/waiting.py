"""Polling with short, backed-off intervals and a deadline, instead of fixed sleeps."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.errors import StillWaiting

T = TypeVar("T")

# A poll comes at most SHARE of the time waited so far after the event it waits for, and
# never sooner than FIRST_INTERVAL after the last: a wait ends within about 5% of when AWS
# is done (what the wall time adds to the world's own critical path), while a long wait
# on a real account polls every few seconds, well inside the APIs' rate limits. A wait on
# an API with a small budget shared by the whole account starts slower (`first`).
FIRST_INTERVAL = 0.25
SHARE = 0.05
# Route 53 allows the whole account five requests a second, and its changes take seconds
# to a minute to be INSYNC: a poll a second at first spends a fifth of the account's
# budget, and costs a wait on a change at most a second.
ROUTE53_FIRST_INTERVAL = 1.0


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


def pause_after(waited: float, cap: float | None = None, first: float = FIRST_INTERVAL) -> float:
    """The pause before the next poll, `waited` seconds into a wait: `first`, then SHARE of
    the time waited, at most `cap` (max_interval() if None)."""
    cap = max_interval() if cap is None else cap
    return min(cap, max(first, SHARE * waited))


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    policy: WaitPolicy,
    limit: float | None = None,
    first: float = FIRST_INTERVAL,
    on_poll: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `probe` until it returns something other than None, and return that.

    Raises StillWaiting once `policy` (no-wait, the command's deadline) or this wait's own
    `limit` in seconds says stop. The probe itself raises to fail fast. Polls are at least
    `first` seconds apart (pause_after).
    """
    started = clock()
    stop_at = [t for t in (policy.deadline, started + limit if limit else None) if t is not None]
    deadline = min(stop_at) if stop_at else None
    cap = max_interval()
    while True:
        result = probe()
        if result is not None:
            return result
        now = clock()
        if on_poll:
            on_poll(now - started)
        if policy.no_wait or (deadline is not None and now >= deadline):
            raise StillWaiting(what, now - started)
        step = pause_after(now - started, cap, first)
        if deadline is not None:
            step = min(step, max(0.0, deadline - now))
        sleep(step)
