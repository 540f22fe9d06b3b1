"""How fast requests to one AWS service may go, as the service counts them: the pace a
process keeps for Route 53, whose limit (5 requests a second per account) is shared with
every other tool in the account. `orchestrator.aws.pace` hooks it into botocore clients."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path


class Pace:
    """When each request to a service may be sent: no one second, as the service counts
    it, sees more than `per_second` of them, and over time they average `rate` a second.

    A command's requests come in bursts (a run's first phases write the zone, its
    delegation and the validation records one after another; a no-change run verifies
    every phase side by side), so the average is kept by a token bucket that holds `burst`
    tokens and starts full: the first requests of a process do not wait for tokens no one
    spent. The one-second cap counts, at each send, the requests still unanswered and those
    answered within the last second: the service may receive a request any time until its
    answer leaves, so however late a request arrives (a busy machine, a slow network), no
    second of arrivals holds more than `per_second` of them.

    Commands run one after another (a no-change run, then a rollback) share the account's
    second too: with `tail`, a file, each answer's time is kept there, and a new pace counts
    the previous command's answers of the last second as its own.

    Threads share a pace (phases verify side by side): token slots are handed out in turn
    under a lock, and every wait happens outside it."""

    MARGIN = 0.01  # seconds past the instant a request of the window ages out
    STALE = 120.0  # seconds: longer than botocore waits for an answer (connect + read)

    def __init__(
        self,
        rate: float,
        burst: int,
        per_second: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        tail: Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.per_second = max(1, per_second)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._at = clock()  # when _tokens was counted, or the last token slot handed out
        self._unanswered: dict[int, float] = {}  # ticket -> when sent
        self._answered: deque[float] = deque()  # when answers came, the last second's
        self._tickets = itertools.count()
        self._lock = threading.Lock()
        self._tail = tail
        self._wall = wall
        if tail is not None:
            self._answered.extend(self._clock() - age for age in _recent_ages(tail, wall()))

    def take(self) -> int:
        """Wait until this request may be sent; its ticket, for `answered`."""
        token = self._token()
        if token > 0:
            self._sleep(token)
        while True:
            with self._lock:  # the last look and the count are one step: no thread slips in
                now = self._clock()
                wait = self._window_wait(now)
                if wait <= 0:
                    ticket = next(self._tickets)
                    self._unanswered[ticket] = now
                    return ticket
            self._sleep(wait)

    def answered(self, ticket: int) -> None:
        """The answer to the request of `ticket` has come (or its sending failed)."""
        with self._lock:
            if self._unanswered.pop(ticket, None) is not None:
                self._answered.append(self._clock())
                if self._tail is not None:
                    self._keep(self._tail)

    def _keep(self, tail: Path) -> None:
        """Write the times of the last second's answers to `tail`, for the next command
        (without the file, only commands run back to back could crowd a second)."""
        import tempfile

        now, wall = self._clock(), self._wall()
        recent = [wall - (now - at) for at in self._answered if at > now - 1.0]
        try:  # a new file of a random name (in a directory others may write to), renamed
            fd, scratch = tempfile.mkstemp(prefix=f".{tail.name}.", dir=tail.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(recent))
            os.replace(scratch, tail)
        except OSError:
            Path(scratch).unlink(missing_ok=True)

    def _token(self) -> float:
        """Take the next token slot; the seconds until it comes."""
        with self._lock:
            now = self._clock()
            start = max(now, self._at)  # slots go in turn: never before the last one
            tokens = min(self.burst, self._tokens + (start - self._at) * self.rate)
            at = start if tokens >= 1 else start + (1 - tokens) / self.rate
            self._tokens = min(self.burst, tokens + (at - start) * self.rate) - 1
            self._at = at
            return at - now

    def _window_wait(self, now: float) -> float:
        """0 if the one-second window has room now; else when to look again."""
        while self._answered and self._answered[0] <= now - 1.0:
            self._answered.popleft()
        for ticket, sent in list(self._unanswered.items()):
            if sent <= now - self.STALE:
                del self._unanswered[ticket]
        if len(self._unanswered) + len(self._answered) < self.per_second:
            return 0.0
        if self._answered:  # the next room comes when the oldest answer ages out
            return self._answered[0] + 1.0 - now + self.MARGIN
        return 1.0  # all unanswered: none can age out sooner


def _recent_ages(tail: Path, wall: float) -> list[float]:
    """How long ago, oldest first, the answers kept in `tail` within the last second came."""
    try:
        kept = json.loads(tail.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(kept, list):
        return []
    ages = [wall - at for at in kept if isinstance(at, int | float) and 0 <= wall - at < 1.0]
    return sorted(ages, reverse=True)


def tail_file(service: str, endpoint: str) -> Path:
    """Where the commands of this user keep their last second of requests to `service` at
    `endpoint` (one account's API, as far as this machine can tell)."""
    import getpass
    import hashlib
    import tempfile

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a user id without a name (in a container)
        user = str(os.getuid())
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"orchestrator-{user}-{service}-{digest}.pace"
