"""What a rollback is about to delete and to leave, so it can be shown (and agreed to)
before the first delete.

A phase with a `rollback_plan(ctx)` (the decisions its rollback applies: see
planning.Undo) is previewed from that same decision, read with every write refused, when
an engine is given; any other phase from what the state file records, whose deletes
still read the resource's tags or labels first, so the rollback itself may leave more
(what is not ours, or still used by something not ours), and says so as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.machine import ADOPTED, UNTOUCHED
from orchestrator.store import DeploymentState, PhaseRecord, Resource


@dataclass(frozen=True)
class Step:
    phase: str
    action: str  # "delete" or "leave"
    what: str
    why: str = ""

    def line(self) -> str:
        why = f": {self.why}" if self.why else ""
        return f"  {self.phase:<17} {self.action} {self.what}{why}"

    def as_dict(self) -> dict[str, str]:
        return {"phase": self.phase, "action": self.action, "what": self.what, "why": self.why}


# The sweep at the end of `rollback --all`.
SWEEP = Step(
    "(then)",
    "delete",
    "whatever else carries this deployment's and this state file's tags and labels",
)


def rollback_steps(
    state: DeploymentState, phases: list[Any], to: str | None, engine: Any = None
) -> list[Step]:
    """Newest phase first, as rollback goes: each resource it would delete or leave. With
    the engine, a phase that has a rollback_plan is previewed from it."""
    names = [p.name for p in phases]
    first = names.index(to) + 1 if to else 0
    steps: list[Step] = []
    for phase in reversed(phases[first:]):
        record = state.phase(phase.name)
        if record.status in UNTOUCHED:
            continue
        decided = _decided(phase, record, engine)
        if decided is not None:
            steps += decided
            continue
        for resource in reversed(record.resources):
            steps.append(_step(phase, resource))
    if to is None:
        steps.append(SWEEP)
    return steps


def _decided(phase: Any, record: PhaseRecord, engine: Any) -> list[Step] | None:
    """The phase's own rollback decision, read with every write refused; None if it has
    none, or its reads failed (then the state file's listing stands)."""
    decide = getattr(phase, "rollback_plan", None)
    if engine is None or decide is None:
        return None
    from orchestrator import calls
    from orchestrator.phase import PhaseContext

    try:
        with calls.read_only("rollback preview"):
            undos = decide(PhaseContext(engine, record))
    except Exception:  # noqa: BLE001 - the preview falls back to what the state records
        return None
    steps = [Step(phase.name, undo.action, undo.resource.describe(), undo.why) for undo in undos]
    adopted = [r for r in reversed(record.resources) if not r.created]
    return steps + [Step(phase.name, "leave", r.describe(), ADOPTED) for r in adopted]


def _step(phase: Any, resource: Resource) -> Step:
    if not resource.created:
        return Step(phase.name, "leave", resource.describe(), ADOPTED)
    also = getattr(phase, "rollback_also", "")
    return Step(phase.name, "delete", resource.describe(), also)


def deletes_anything(steps: list[Step]) -> bool:
    return any(step.action == "delete" for step in steps)


def render(steps: list[Step], deployment: str, target: str) -> str:
    lines = [f"rollback {target} of deployment {deployment} will, newest phase first:"]
    lines += [step.line() for step in steps]
    lines.append(
        "Before each delete it reads the resource's tags or labels: what is not this "
        "deployment's, or is still used by something that is not, is left in place, "
        "and said so."
    )
    return "\n".join(lines)
