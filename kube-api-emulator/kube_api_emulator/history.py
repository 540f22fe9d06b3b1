"""The bounded log of changes that watches replay from, and how a filtered watch sees them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
StorageKey = tuple[str, str]


@dataclass(frozen=True)
class Change:
    """One write: `obj` is the stored object after it (before it, for DELETED: `prev`)."""

    rv: int
    type: str
    key: StorageKey
    namespace: str
    obj: Obj
    prev: Obj | None


class History:
    """The newest `size` changes; older resourceVersions can no longer be watched from."""

    def __init__(self, size: int) -> None:
        self._changes: deque[Change] = deque(maxlen=size)
        self.horizon = 0  # newest resourceVersion that fell out of the log

    def append(self, change: Change) -> None:
        if len(self._changes) == self._changes.maxlen:
            self.horizon = self._changes[0].rv
        self._changes.append(change)

    def after(self, cursor: int, key: StorageKey, namespace: str | None) -> list[Change]:
        """Changes newer than `cursor` to objects of `key` (in `namespace` unless None)."""
        found = []
        for change in reversed(self._changes):
            if change.rv <= cursor:
                break
            if change.key == key and (namespace is None or change.namespace == namespace):
                found.append(change)
        return found[::-1]


def as_seen_by(change: Change, matches: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    """What a filtered watch sees: objects entering or leaving the filter look added or deleted."""
    now = matches(change.obj)
    before = change.prev is not None and matches(change.prev)
    if change.type != "MODIFIED":
        return (change.type, change.obj) if now else None
    if now:
        return ("MODIFIED" if before else "ADDED", change.obj)
    return ("DELETED", change.obj) if before else None
