"""status as people and scripts read it: each phase's summary, its lines, the last line."""

from __future__ import annotations

from orchestrator.errors import ExitCode
from orchestrator.store import DeploymentState, PhaseRecord, PhaseStatus

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any


def _phase_summary(record: PhaseRecord) -> dict[str, Any]:
    waiting = None
    if record.status in (PhaseStatus.WAITING, PhaseStatus.NEEDS_ACTION) and record.waiting_for:
        waiting = record.waiting_for
        if record.waiting_detail:
            waiting += f" ({record.waiting_detail})"
    return {
        "name": record.name,
        "status": record.status,
        "outputs": record.outputs,
        "waiting_for": waiting,
        "error": record.error,
        "kept": record.kept,
    }


def _output_lines(key: str, value: Any) -> list[str]:
    """An output as status shows it: a list one item a line (name servers to give a
    registrar, say), a mapping as key=value."""
    if isinstance(value, list):
        return [f"{key}:"] + [f"  - {_flat(item)}" for item in value]
    return [f"{key}: {_flat(value)}"]


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return str(value)


def _kept_by_reason(kept: list[dict[str, str]]) -> dict[str, list[str]]:
    """What a rollback left in place, one line per reason."""
    grouped: dict[str, list[str]] = {}
    for item in kept:
        grouped.setdefault(item["reason"], []).append(f"{item['kind']} {item['id']}")
    return grouped


def status_summary(state: DeploymentState) -> tuple[int, str]:
    """The exit code of `status` and its last line: 1 when a phase failed; 3 when one is
    stopped part-way (waiting, needs action, in progress) or a rollback was interrupted;
    else 0 (every phase done, or none holding anything: fresh, rolled back, --until)."""
    records = state.phases
    done = sum(r.status == PhaseStatus.DONE for r in records)
    head = f"{done} of {len(records)} phases done"
    failed = next((r for r in records if r.status == PhaseStatus.FAILED), None)
    if failed is not None:
        return ExitCode.PHASE_FAILED, f"{head}; {failed.name} failed: {failed.error}"
    if state.rollback_to:
        return ExitCode.WAITING, f"{head}; a rollback was interrupted: `orchestrator resume`"
    stopped = next((r for r in records if r.status in STOPPED_STATUSES), None)
    if stopped is not None:
        awaited = stopped.waiting_for or "?"
        what = {
            PhaseStatus.WAITING: f"waiting for {awaited}",
            PhaseStatus.NEEDS_ACTION: f"needs action: {awaited}",
            PhaseStatus.IN_PROGRESS: "in progress (a command works on it, or was stopped)",
        }[stopped.status]
        return ExitCode.WAITING, f"{head}; {stopped.name} {what}; then `orchestrator resume`"
    if done == len(records):
        from orchestrator.outputs import collect

        return ExitCode.OK, f"{head}: Kubeflow is at {collect(state)['url']}"
    if all(r.status in (PhaseStatus.ROLLED_BACK, PhaseStatus.PENDING) for r in records):
        rolled = sum(r.status == PhaseStatus.ROLLED_BACK for r in records)
        if rolled:
            return ExitCode.OK, f"{head}; {rolled} rolled back: the deployment holds nothing"
        return ExitCode.OK, f"{head}: nothing has run yet (`orchestrator run` starts)"
    following = next(r for r in records if r.status != PhaseStatus.DONE)
    return ExitCode.OK, f"{head}; next: {following.name} (`orchestrator run` goes on)"


STOPPED_STATUSES = (PhaseStatus.WAITING, PhaseStatus.NEEDS_ACTION, PhaseStatus.IN_PROGRESS)
