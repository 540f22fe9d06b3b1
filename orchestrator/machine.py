"""The engine: walks the phases forward or back on a `transitions` state machine.

The machine has one state per phase, between `start` and `finished`. `advance` moves
forward one phase; entering a phase state runs it (verify if it is done, enter
otherwise). `retreat` moves back one phase, rolling the phase being left back first.
A callback that raises leaves the machine on that phase, and the persisted phase record
says why, so the next command picks up exactly there.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from transitions import EventData, Machine, State

from orchestrator.config import IMPLIED_SETTINGS, Config, digest
from orchestrator.errors import (
    NeedsAction,
    PhaseError,
    StateConflict,
    StateWriteFailed,
    StillWaiting,
    UsageError,
)
from orchestrator.phase import Phase, PhaseContext
from orchestrator.report import Reporter
from orchestrator.store import (
    ROLLBACK_ALL,
    DeploymentState,
    PhaseRecord,
    Resource,
    StateStore,
    now,
)
from orchestrator.waiting import WaitPolicy

START, FINISHED = "start", "finished"
UNTOUCHED = ("pending", "rolled_back")


class PhaseFailed(Exception):
    """A phase failed; its record holds the error. Carries what the CLI prints."""

    def __init__(self, phase: str, message: str, hint: str) -> None:
        super().__init__(f"phase {phase} failed: {message}")
        self.phase = phase
        self.message = message
        self.hint = hint


class Engine:
    def __init__(
        self,
        phases: list[Phase],
        state: DeploymentState,
        store: StateStore,
        config: Config,
        report: Reporter,
        policy: WaitPolicy | None = None,
        confirmations: frozenset[str] = frozenset(),
        aws_factory: Callable[[], Any] | None = None,
        kube_factory: Callable[[], Any] | None = None,
        inventory: Any = None,
    ) -> None:
        """`inventory`: finds the deployment's resources by their marks (states.inventory:
        `find(ctx)`, `ours(ctx, found)`, `by_other_owners(ctx, found)`)."""
        self.phases = {p.name: p for p in phases}
        self.order = [p.name for p in phases]
        self.state = state
        self.store = store
        self.config = config
        self.report = report
        self.policy = policy or WaitPolicy()
        self.confirmations = confirmations
        self._aws_factory = aws_factory
        self._kube_factory = kube_factory
        self.inventory = inventory
        self._aws: Any = None
        self._kube: Any = None

    # ---- services, made on first use ------------------------------------------------------

    def aws(self) -> Any:
        if self._aws is None:
            if self._aws_factory is None:
                raise RuntimeError("no AWS access configured")
            self._aws = self._aws_factory()
        return self._aws

    def kube(self) -> Any:
        if self._kube is None:
            if self._kube_factory is None:
                raise RuntimeError("no Kubernetes access configured")
            self._kube = self._kube_factory()
        return self._kube

    def save(self) -> None:
        self.store.save(self.state)

    # ---- forward ----------------------------------------------------------------------------

    def forward(self, until: str | None = None) -> None:
        """Bring every phase up to `until` (default: the last) to done."""
        stop = until or self.order[-1]
        self.state.rollback_to = None
        self.state.settings = self.config.settings()
        self.save()
        cursor = self._machine(START, forward=True)
        while cursor.state != stop:
            if cursor.state == self.order[0] and not self._made_anything():
                # Checked once preflight has shown the world is reachable, before any write.
                self.refuse_other_owners()
            cursor.advance()

    def _made_anything(self) -> bool:
        """Whether this state file has made (or meant to make) anything yet."""
        return any(r.created for record in self.state.phases for r in record.resources)

    def _run_phase(self, event: EventData) -> None:
        name = event.state.name
        phase, record = self.phases[name], self.state.phase(name)
        ctx = PhaseContext(self, record)
        if record.status == "done":
            problem = self._guard(name, record, lambda: phase.verify(ctx))
            if problem is None:
                self.report.verified(name)
                return
            self.report.drifted(name, problem)
        self._enter(phase, record, ctx)

    def _enter(self, phase: Phase, record: PhaseRecord, ctx: PhaseContext) -> None:
        record.status, record.action = "in_progress", "enter"
        record.attempts += 1
        record.started_at, record.finished_at = now(), None
        record.kept = []
        record.error = record.waiting_for = record.waiting_since = record.waiting_detail = None
        self.save()
        self.report.started(phase.name, phase.title)
        started = time.monotonic()
        self._guard(phase.name, record, lambda: phase.enter(ctx))
        record.status, record.action, record.intent = "done", None, None
        record.finished_at = now()
        record.waiting_for = record.waiting_since = record.waiting_detail = None
        record.inputs_digest = digest(self.state.settings, phase.inputs)
        self.save()
        self.report.done(phase.name, time.monotonic() - started)

    def _guard(self, name: str, record: PhaseRecord, work: Callable[[], Any]) -> Any:
        """Run a phase handler; on any way out but success, persist why before leaving."""
        try:
            return work()
        except (StateConflict, StateWriteFailed):
            raise  # the state file cannot take what happened: nothing more is written
        except StillWaiting as stop:
            record.status, record.waiting_for = "waiting", stop.waiting_for
            self.save()
            raise
        except NeedsAction as action:
            record.status = "needs_action"
            record.waiting_for = action.instructions.splitlines()[0]
            self.save()
            raise
        except KeyboardInterrupt:
            record.error = "interrupted"
            self.save()
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then reported
            message, hint = describe_failure(exc)
            record.status, record.error = "failed", f"{message} (next: {hint})"
            self.save()
            raise PhaseFailed(name, message, hint) from exc

    # ---- back -------------------------------------------------------------------------------

    def rollback(self, to: str | None) -> None:
        """Undo, newest first, every touched phase after `to` (every phase if None)."""
        target = to or START
        self.state.rollback_to = to or ROLLBACK_ALL
        self.save()
        touched = [n for n in self.order if self.state.phase(n).status not in UNTOUCHED]
        if touched and not (to and self.order.index(touched[-1]) <= self.order.index(to)):
            cursor = self._machine(touched[-1], forward=False)
            while cursor.state != target:
                cursor.retreat()
        if to is None:
            self._sweep()
        self._finish_rollback()

    def _sweep(self) -> None:
        """The end of `rollback --all`: what still carries this deployment's and this state
        file's marks goes too, whatever the state file said (edited, damaged, behind), each
        through the rollback of the phase that makes it, with all its checks."""
        if self.inventory is None:
            return
        scratch = PhaseContext(self, PhaseRecord("sweep"))
        kept = {item["id"] for record in self.state.phases for item in record.kept}
        found = self.look(lambda ctx: self.inventory.ours(ctx, self.inventory.find(ctx)), scratch)
        left = [f for f in found if f.id not in kept]
        for name in reversed(self.order):
            items = [f for f in left if f.phase == name]
            if not items:
                continue
            record = self.state.phase(name)
            self.report.info(
                f"sweep: {name}: the state file did not list "
                f"{', '.join(f.describe() for f in items)}, which carry this deployment's marks"
            )
            record.resources += [
                Resource(f.kind, f.id, created=True, detail=dict(f.detail)) for f in items
            ]
            record.status, record.action = "in_progress", "rollback"
            self.save()
            undo = functools.partial(
                self._rollback_checked, self.phases[name], PhaseContext(self, record)
            )
            self._guard(name, record, undo)
            record.status, record.action, record.resources = "rolled_back", None, []
            self.save()

    def look(self, work: Callable[[PhaseContext], Any], ctx: PhaseContext | None = None) -> Any:
        """Run read-only work outside any phase (the inventory, say); its failures are told
        as the phases' are."""
        ctx = ctx or PhaseContext(self, PhaseRecord("inventory"))
        try:
            return work(ctx)
        except (StillWaiting, KeyboardInterrupt, UsageError):
            raise
        except Exception as exc:  # noqa: BLE001 - reported as a failure, like a phase's
            message, hint = describe_failure(exc)
            raise PhaseFailed(ctx.record.name, message, hint) from exc

    def refuse_other_owners(self) -> None:
        """A new state file does not start beside what another state file of the same
        deployment made: it would take those resources for its own."""
        if self.inventory is None:
            return
        inventory = self.inventory
        others = self.look(lambda ctx: inventory.by_other_owners(ctx, inventory.find(ctx)))
        if others:
            raise UsageError(
                f"deployment {self.state.deployment} already has live resources made by "
                f"another state file: {inventory.summary(others)}. Run with that state file "
                "(--state PATH); if it is lost, rebuild it with `orchestrator import`. "
                "Nothing was changed."
            )

    def _finish_rollback(self) -> None:
        self.state.rollback_to = None
        self.save()

    def _undo_phase(self, event: EventData) -> None:
        name = event.transition.source
        phase, record = self.phases[name], self.state.phase(name)
        if record.status in UNTOUCHED:
            return
        ctx = PhaseContext(self, record)
        record.status, record.action = "in_progress", "rollback"
        record.error = None
        self.save()
        self.report.rolling_back(name)
        started = time.monotonic()
        self._guard(name, record, lambda: self._rollback_checked(phase, ctx))
        record.status, record.action, record.intent = "rolled_back", None, None
        record.outputs, record.resources = {}, []
        record.generation += 1
        record.inputs_digest = None
        record.finished_at = now()
        record.waiting_for = record.waiting_since = record.waiting_detail = None
        self.save()
        self.report.rolled_back(name, time.monotonic() - started)

    def _rollback_checked(self, phase: Phase, ctx: PhaseContext) -> None:
        phase.rollback(ctx)
        left = [r for r in ctx.record.resources if r.created]
        if left:
            names = ", ".join(f"{r.kind} {r.id}" for r in left)
            raise PhaseError(
                f"rollback left resources this deployment created: {names}",
                "delete them by hand or run the rollback again",
            )

    # ---- the machine ------------------------------------------------------------------------

    def _machine(self, initial: str, *, forward: bool) -> Any:
        cursor = Cursor()
        states = [State(START), *(State(n) for n in self.order), State(FINISHED)]
        machine = Machine(
            model=cursor, states=states, initial=initial, auto_transitions=False, send_event=True
        )
        if forward:
            machine.add_ordered_transitions(trigger="advance", loop=False)
            for name in self.order:
                machine.get_state(name).add_callback("enter", self._run_phase)
        else:
            chain = [START, *self.order]
            for earlier, later in zip(chain, chain[1:], strict=False):
                machine.add_transition("retreat", later, earlier, before=self._undo_phase)
        return cursor


class Cursor:
    """The machine's model: its `state` is the phase being worked on."""

    state: str


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """The message and the what-to-do for any exception a phase handler raised."""
    from orchestrator.aws import AwsError

    if isinstance(exc, PhaseError):
        return exc.message, exc.hint or "fix the cause, then run `orchestrator resume`"
    if isinstance(exc, AwsError):
        return str(exc), exc.hint
    hint = getattr(exc, "hint", None)
    if hint:
        return str(exc), hint
    return (
        f"internal error: {type(exc).__name__}: {exc}",
        "this is a bug in orchestrator; please report it with the output above, "
        "then run `orchestrator resume`",
    )


# ---- consistency of a state file with the config and the phases ------------------------------


def check_state(state: DeploymentState, config: Config, phases: list[Phase], path: Any) -> None:
    """Refuse (exit 2) a state file that does not belong to this config or is inconsistent."""
    settings = config.settings()
    recorded = {**IMPLIED_SETTINGS, **state.settings}
    if state.deployment != config.deployment_id:
        changed = _changed(
            state.settings, settings, ("cluster.name", "cluster.region", "route53.subDomain.name")
        )
        raise UsageError(
            f"{path} belongs to deployment {state.deployment!r}, but the config describes "
            f"{config.deployment_id!r}{_explain(changed)}. Use the config that deployment was "
            "made with (and roll it back if you are moving), or another --state file."
        )
    for phase in phases:
        record = state.phase(phase.name)
        if record.status == "done":
            missing = [key for key in phase.outputs if key not in record.outputs]
            if missing:
                raise UsageError(
                    f"{path}: phase {phase.name} is done but its outputs {missing} are missing; "
                    "the state file was edited or damaged. Restore it from a backup."
                )
        if record.status in UNTOUCHED:
            continue
        changed = _changed(recorded, settings, phase.inputs)
        if changed:
            raise UsageError(
                f"the config changed since phase {phase.name} was run{_explain(changed)}; "
                f"resuming would diverge from what exists. Restore the previous value, or "
                f"`rollback --to` a phase before {phase.name} with the old config first."
            )


def _changed(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _explain(changes: list[str]) -> str:
    return f" ({'; '.join(changes)})" if changes else ""
