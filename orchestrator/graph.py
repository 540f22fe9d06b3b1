"""`orchestrator graph`: each phase's lifecycle as Mermaid, drawn from its one declaration
(MOVES in orchestrator/lifecycle.py), and the phases in run order with where the
deployment is, from the state file if there is one."""

from __future__ import annotations

from orchestrator.lifecycle import MOVES, PENDING
from orchestrator.store import DeploymentState, PhaseRecord, PhaseStatus

# Where a phase the engine is on (or stopped on) stands; the first such is "here".
STOPPED = (
    PhaseStatus.IN_PROGRESS,
    PhaseStatus.WAITING,
    PhaseStatus.NEEDS_ACTION,
    PhaseStatus.FAILED,
)


def current(state: DeploymentState | None) -> PhaseRecord | None:
    """The phase the deployment is at: the first one stopped part-way, else the first
    not done (what `run` does next); None when all are done or there is no state."""
    if state is None:
        return None
    stopped = [r for r in state.phases if r.status in STOPPED]
    if stopped:
        return stopped[0]
    return next((r for r in state.phases if r.status != PhaseStatus.DONE), None)


def lifecycle(here: PhaseRecord | None) -> list[str]:
    """The lifecycle as a Mermaid state diagram; the status of the phase `here` marked."""
    lines = [
        "stateDiagram-v2",
        "    %% each phase's lifecycle, declared in orchestrator/lifecycle.py (MOVES)",
        f"    [*] --> {PENDING.value}",
    ]
    seen: set[tuple[str, str, str]] = set()
    for trigger, sources, dest in MOVES:
        for source in sources:
            move = (source.value, dest.value, trigger)
            if move not in seen:
                seen.add(move)
                lines.append(f"    {source.value} --> {dest.value}: {trigger}")
    if here is not None:
        status = PhaseStatus(here.status).value
        lines += [
            "    classDef here stroke-width:4px,font-weight:bold",
            f"    class {status} here",
            f"    note right of {status}: {here.name} is here",
        ]
    return lines


def phases(names: list[str], state: DeploymentState | None, source: str) -> list[str]:
    """The phases in run order, as Mermaid comments (the output stays one diagram)."""
    here = current(state)
    width = max(len(n) for n in names)
    lines = [f"    %% the phases, in run order ({source}); > marks where the deployment is"]
    for number, name in enumerate(names, 1):
        status = PhaseStatus(state.phase(name).status).value if state else "pending"
        mark = ">" if here is not None and here.name == name else " "
        lines.append(f"    %% {mark} {number:>2}. {name:<{width}}  {status}")
    return lines


def render(names: list[str], state: DeploymentState | None, source: str) -> str:
    return "\n".join([*lifecycle(current(state)), *phases(names, state, source)])
