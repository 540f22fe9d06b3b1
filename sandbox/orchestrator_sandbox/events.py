"""The world's event log: every wait the world itself imposes, one JSON line each.

`<dir>/world-events.jsonl` (set once at world start by `record_to`; until then, as in
in-process tests, recording does nothing) gets a line per event:

    {"id": "<kind>:<subject>", "kind": ..., "subject": ..., "began": <epoch seconds>,
     "ended": <epoch seconds>, "after": [ids of the events whose completion let it begin]}

and sometimes more fields (a Route 53 change's `zone`, the `cluster` of a Kubernetes
event). Kinds: route53.change, route53.throttled (a request refused for Route 53's rate
limit, instantaneous, with the caller's `agent`), route53.alias_known, acm.issued,
deployment.available, crd.established,
alb.reconciled, alb.active, targets.healthy, alb.teardown, subnets.resolved and
subnets.unresolved (neighbour.py) (their modules say when each is recorded).

An id is not always unique: a Deployment rolled out twice has two `deployment.available`
events. `critical_path` takes, for an id in `after`, the latest event of that id that
ended before the one that names it began.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kube_api_emulator import ObjectStore

NAME = "world-events.jsonl"
# An `after` event that ended this little after its successor began still counts as its
# cause: both times may be computed from the same instant along different paths.
SLACK = 1e-3
# The simulators keep time on time.monotonic(); the log on the wall clock. One offset for
# the whole process, so that an instant converts to the same epoch wherever it is recorded.
_OFFSET = time.time() - time.monotonic()


class _Log:
    def __init__(self) -> None:
        self.path: Path | None = None
        self.ids: set[str] = set()
        self.lock = threading.Lock()


_log = _Log()


def record_to(path: Path | None) -> None:
    """Append events to `path` from now on (None: record nothing, forget what was)."""
    with _log.lock:
        _log.path = path
        _log.ids = set()


def epoch(monotonic: float) -> float:
    """The wall-clock time of an instant read on time.monotonic()."""
    return monotonic + _OFFSET


def event_id(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


def record(
    kind: str,
    subject: str,
    began: float,
    ended: float,
    after: list[str] | None = None,
    **fields: Any,
) -> None:
    """Append one event; `began` and `ended` on time.monotonic() (see `epoch`)."""
    entry = {
        "id": event_id(kind, subject),
        "kind": kind,
        "subject": subject,
        "began": epoch(began),
        "ended": epoch(ended),
        "after": list(after or []),
        **fields,
    }
    with _log.lock:
        if _log.path is None:
            return
        with open(_log.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
        _log.ids.add(entry["id"])


def recorded(kind: str, subject: str) -> str | None:
    """The id of that event if one was recorded, else None."""
    wanted = event_id(kind, subject)
    with _log.lock:
        return wanted if wanted in _log.ids else None


def read(directory: Path) -> list[dict[str, Any]]:
    """The events recorded in a world's directory, in the order they were recorded."""
    path = directory / NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- CRDs: the Kubernetes API emulator establishes them on a timer of its own ---------------


def record_crd_establishment(store: ObjectStore, cluster: str) -> None:
    """Record a `crd.established` event for each CRD created in `store` from now on, from
    its creation to its Established condition (the store's subscribers are told of each
    change right after it is made)."""
    created: dict[str, tuple[str | None, float]] = {}  # CRD name -> its uid, when created
    lock = threading.Lock()

    def changed(change: str, obj: dict[str, Any]) -> None:
        if obj.get("kind") != "CustomResourceDefinition":
            return
        name, uid, now = obj["metadata"]["name"], obj["metadata"].get("uid"), time.monotonic()
        with lock:
            if change == "ADDED" and not _established(obj):
                created[name] = (uid, now)
                return
            if change == "MODIFIED" and not _established(obj):
                return
            noted = created.pop(name, None)  # deleted, or established: either way, done
        if change == "MODIFIED" and noted is not None and noted[0] == uid:
            record("crd.established", name, noted[1], now, cluster=cluster)

    store.subscribe(changed)


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


# ---- the critical path ----------------------------------------------------------------------


def critical_path(
    events: list[dict[str, Any]], since: float, until: float
) -> tuple[float, list[str]]:
    """The longest chain of waits between `since` and `until` (epoch seconds): its length
    in seconds, and its ids, first to last.

    Only events that began at `since` or later and ended by `until` count. An event's chain
    is its own wait plus the longest chain among the events of its `after` that count."""
    window = [e for e in events if e["began"] >= since and e["ended"] <= until]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(window, key=lambda e: e["ended"]):
        by_id.setdefault(event["id"], []).append(event)
    best: dict[int, tuple[float, list[str]]] = {}  # by id() of the event dict
    visiting: set[int] = set()  # instantaneous events could name each other: no loops

    def chain(event: dict[str, Any]) -> tuple[float, list[str]]:
        known = best.get(id(event))
        if known is not None:
            return known
        visiting.add(id(event))
        before = [_cause(by_id.get(p, []), event["began"]) for p in event["after"]]
        # Of equally long chains, the one that ended last is the one that held this up.
        tails = [(*chain(p), p["ended"]) for p in before if p is not None and id(p) not in visiting]
        visiting.discard(id(event))
        length, path, _ = max(tails, key=lambda t: (t[0], t[2]), default=(0.0, [], 0.0))
        best[id(event)] = (event["ended"] - event["began"] + length, [*path, event["id"]])
        return best[id(event)]

    return max((chain(e) for e in window), key=lambda t: t[0], default=(0.0, []))


def _cause(candidates: list[dict[str, Any]], began: float) -> dict[str, Any] | None:
    """The latest of the events of one id (sorted by end) that ended by `began`."""
    ended = [e for e in candidates if e["ended"] <= began + SLACK]
    return ended[-1] if ended else None
