"""What `plan` reports: for each phase, done and still true, or the changes `run` would
make there, named (zone, records, certificates, role and policy, subnet tags, objects).

A phase decides once: one function reads what is there and returns what to do (and
refuses, with a PhaseError, where enter would stop); `plan` lists that decision and
`enter` applies it. Likewise its rollback's decisions (Undo: delete, or leave and why)
are what the rollback preview shows and what rollback applies. A plan runs with every
write call refused (calls.read_only), so it cannot change anything even by mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.store import Resource

# The actions a change can have; the first three write.
CREATE, UPDATE, DELETE = "create", "update", "delete"
USE, WAIT, CHECK, ASK = "use", "wait", "check", "ask"
WRITES = (CREATE, UPDATE, DELETE)
# What a rollback does with a resource the deployment made, besides DELETE.
LEAVE = "leave"


@dataclass(frozen=True)
class Change:
    action: str
    what: str
    why: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "what": self.what, "why": self.why}


@dataclass(frozen=True)
class Undo:
    """A rollback's decision for one resource (DELETE, or LEAVE and why), and how to carry
    it out: the rollback preview shows the decision, rollback applies it."""

    resource: Resource
    action: str
    why: str
    apply: Callable[[], None]


@dataclass
class PhasePlan:
    phase: str
    # done: done and still true; drifted: done, no longer true, entered again;
    # to_do: not done yet; stop: enter would stop (problem says why, as enter would);
    # unknown: the reads failed (problem says why)
    status: str
    changes: list[Change] = field(default_factory=list)
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "status": self.status,
            "problem": self.problem,
            "changes": [c.as_dict() for c in self.changes],
        }


def lines(plans: list[PhasePlan]) -> list[str]:
    """The plan for people: a line per phase, then one per change."""
    width = max(len(p.phase) for p in plans)
    shown = []
    for plan in plans:
        head = f"  {plan.phase:<{width}}  "
        if plan.status == "done":
            shown.append(f"{head}done, still true")
            continue
        if plan.status == "drifted":
            shown.append(f"{head}done, but {plan.problem}: entered again")
        elif plan.status == "stop":
            shown.append(f"{head}would stop: {plan.problem}")
        elif plan.status == "unknown":
            shown.append(f"{head}cannot tell: {plan.problem}")
        else:
            shown.append(f"{head}to do")
        for change in plan.changes:
            why = f" ({change.why})" if change.why else ""
            shown.append(f"  {'':<{width}}    {change.action:<6} {change.what}{why}")
    return shown


def summary(plans: list[PhasePlan]) -> str:
    counts = _counts(plans)
    head = f"{counts[CREATE]} to create, {counts[UPDATE]} to update, {counts[DELETE]} to delete"
    if counts[ASK]:
        head += f", {counts[ASK]} for a human to do"
    done = sum(p.status == "done" for p in plans)
    tail = f"{done} of {len(plans)} phases done and still true"
    for status, said in (
        ("drifted", "drifted:"),
        ("stop", "would stop at"),
        ("unknown", "could not plan"),
    ):
        named = _phases(plans, status)
        if named:
            tail += f"; {said} {', '.join(named)}"
    return f"{head}; {tail}. Nothing was changed."


# ---- the plan as a CI job reads it: has anything drifted? ---------------------------------

# `plan --detailed-exitcode`, as Terraform's: 0 nothing to change, 2 changes, 1 anything else
# (a phase run would stop at, one whose reads failed, or an error: a bad config too, so
# that it never reads as "changes").
NO_CHANGES, CHANGES, CANNOT_TELL = 0, 2, 1
# What makes a plan one with changes: a write, or a step a human must take (delegation at
# a registrar: the deployment is not yet what the config asks). Use, wait and check
# alone change nothing.
CHANGING = (*WRITES, ASK)


def has_changes(plans: list[PhasePlan]) -> bool:
    """Whether run would change anything: a phase drifted (done, no longer true), or one
    whose plan lists a write or a human's step."""
    return any(
        plan.status == "drifted" or any(c.action in CHANGING for c in plan.changes)
        for plan in plans
    )


def blocked(plans: list[PhasePlan]) -> bool:
    """Whether the plan cannot vouch for a run: a phase would stop, or could not be read."""
    return any(plan.status in ("stop", "unknown") for plan in plans)


def exit_code(plans: list[PhasePlan], detailed: bool) -> int:
    """plan's exit code: 1 when blocked; else 0, or with `detailed` 2 when run would
    change anything."""
    if blocked(plans):
        return CANNOT_TELL
    return CHANGES if detailed and has_changes(plans) else NO_CHANGES


def summary_fields(plans: list[PhasePlan], code: int) -> dict[str, object]:
    """The `summary` event of `plan --json`: one line a pipeline reads the plan from."""
    counts = _counts(plans)
    return {
        "create": counts[CREATE],
        "update": counts[UPDATE],
        "delete": counts[DELETE],
        "ask": counts[ASK],
        "changes": has_changes(plans),
        "drifted": _phases(plans, "drifted"),
        "would_stop": _phases(plans, "stop"),
        "cannot_tell": _phases(plans, "unknown"),
        "done": len(_phases(plans, "done")),
        "phases": len(plans),
        "exit_code": code,
        "message": summary(plans),
    }


def _counts(plans: list[PhasePlan]) -> dict[str, int]:
    actions = [c.action for p in plans for c in p.changes]
    return {action: actions.count(action) for action in CHANGING}


def _phases(plans: list[PhasePlan], status: str) -> list[str]:
    return [p.phase for p in plans if p.status == status]
