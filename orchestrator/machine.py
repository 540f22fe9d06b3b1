"""The engine: walks the phases forward or back, moving each phase along its lifecycle.

Each phase's lifecycle (pending, in progress, waiting, needs action, done, failed, rolled
back) is one `transitions` machine, declared once in lifecycle.py (MOVES): every change of
a phase's status, and of the record's fields that go with it, is a named move on it.
The engine runs the phases in order (forward) or newest first (rollback); a handler that
raises leaves its phase where it was, and the persisted phase record says why, so the
next command picks up exactly there.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.config import IMPLIED_SETTINGS, Config
from orchestrator.errors import (
    NeedsAction,
    PhaseError,
    StateConflict,
    StateWriteFailed,
    StillWaiting,
    UsageError,
)
from orchestrator.lifecycle import (
    DONE,
    UNTOUCHED,
    WAITING,
    move,
    note_interrupted,
)
from orchestrator.lifecycle import MOVES as MOVES  # read from the engine by the CLI's tests
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import DELETE, PhasePlan
from orchestrator.report import Reporter
from orchestrator.store import (
    ROLLBACK_ALL,
    DeploymentState,
    PhaseRecord,
    Resource,
    Store,
)
from orchestrator.waiting import WaitPolicy

if TYPE_CHECKING:
    from orchestrator.aws import Aws
    from orchestrator.kube import Kube

# Why rollback never deletes what a phase adopted.
ADOPTED = "it existed before this deployment (adopted), and is only ever used"


T = TypeVar("T")


class PhaseFailed(Exception):
    """A phase failed; its record holds the error. Carries what the CLI prints."""

    def __init__(self, phase: str, message: str, hint: str) -> None:
        super().__init__(f"phase {phase} failed: {message}")
        self.phase = phase
        self.message = message
        self.hint = hint


def _made(factory: Callable[[], T] | None, what: str) -> T:
    if factory is None:
        raise RuntimeError(f"no {what} access configured")
    return factory()


class Engine:
    def __init__(
        self,
        phases: list[Phase],
        state: DeploymentState,
        store: Store,
        config: Config,
        report: Reporter,
        policy: WaitPolicy | None = None,
        confirmations: frozenset[str] = frozenset(),
        aws_factory: Callable[[], Aws] | None = None,
        kube_factory: Callable[[], Kube] | None = None,
        inventory: Any = None,
        allow_downgrade: bool = False,
    ) -> None:
        """`inventory`: finds the deployment's resources by their marks, asking the phases
        (orchestrator.inventory.Inventory: `find(ctx)`, `ours(ctx, found)`,
        `by_other_owners(ctx, found)`). `allow_downgrade`: the operator asked for a
        controller older than the one that runs (`--allow-downgrade`)."""
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
        self.allow_downgrade = allow_downgrade
        self._aws: Aws | None = None
        self._kube: Kube | None = None
        # Phases verified side by side share one of each, made by whichever asks first.
        self._making_aws, self._making_kube = threading.Lock(), threading.Lock()

    # ---- services, made on first use ------------------------------------------------------

    def aws(self) -> Aws:
        with self._making_aws:
            if self._aws is None:
                self._aws = _made(self._aws_factory, "AWS")
            return self._aws

    def kube(self) -> Kube:
        with self._making_kube:
            if self._kube is None:
                self._kube = _made(self._kube_factory, "Kubernetes")
            return self._kube

    def save(self) -> None:
        self.store.save(self.state)

    def move(self, record: PhaseRecord, trigger: str, **given: Any) -> None:
        """Move a phase along its declared lifecycle (see MOVES), with what the move needs."""
        move(record, trigger, **given)

    # ---- forward ----------------------------------------------------------------------------

    def forward(self, until: str | None = None) -> None:
        """Bring every phase up to `until` (default: the last) to done."""
        stop = self.order.index(until) if until else len(self.order) - 1
        self.state.rollback_to = None
        self.state.settings = self.config.settings()
        self.save()
        names = self.order[: stop + 1]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            verdicts = self._verify_ahead(names, pool)
            for index, name in enumerate(names):
                if index == 1 and not self._made_anything():
                    # Checked once preflight has shown the world is reachable, before any write.
                    self.refuse_other_owners()
                if not self._run_phase(name, verdicts.pop(name, None)):
                    verdicts.clear()  # what was verified ahead may not hold after an enter
                self._retire_after(name)

    def _verify_ahead(self, names: list[str], pool: ThreadPoolExecutor) -> dict[str, Future[Any]]:
        """Start verifying, side by side, the done phases a run begins with: a run over a
        finished deployment is then about as long as its slowest check, not their sum.
        Verifying only reads, and each verdict is used only while no phase before it had
        to be entered again."""
        verdicts: dict[str, Future[Any]] = {}
        for name in names:
            phase, record = self.phases[name], self.state.phase(name)
            if record.status != DONE:
                break
            verdicts[name] = pool.submit(phase.verify, PhaseContext(self, record))
        return verdicts

    def _made_anything(self) -> bool:
        """Whether this state file has made (or meant to make) anything yet."""
        return any(r.created for record in self.state.phases for r in record.resources)

    def _run_phase(self, name: str, verdict: Future[Any] | None = None) -> bool:
        """Verify a done phase (or take `verdict`, its verify started ahead); enter it if it
        is not done or no longer holds. Whether it was done and still true."""
        phase, record = self.phases[name], self.state.phase(name)
        ctx = PhaseContext(self, record)
        if record.status == DONE:
            check = verdict.result if verdict is not None else lambda: phase.verify(ctx)
            problem = self._guard(name, record, check)
            if problem is None:
                self.report.verified(name)
                return True
            self.report.drifted(name, problem)
        self._enter(phase, record, ctx)
        return False

    def _retire_after(self, done: str) -> None:
        """With phase `done` done, delete what the phases waiting for it replaced (see
        Phase.retirement), each in its own phase's record; on every run, so a run that
        stopped in between does it next time."""
        for name in self.order:
            phase, record = self.phases[name], self.state.phase(name)
            if phase.retires_after != done or record.status != DONE:
                continue
            retirement = functools.partial(phase.retirement, PhaseContext(self, record))
            deletes = [u for u in self._guard(name, record, retirement) if u.action == DELETE]
            if deletes:
                self.report.info(f"{name}: deleting what it replaced, now that {done} is done")
            for undo in deletes:  # a failure is the phase's: entered again, then retired
                self._guard(name, record, undo.apply)

    def _enter(self, phase: Phase, record: PhaseRecord, ctx: PhaseContext) -> None:
        self.move(record, "enter")
        self.save()
        self.report.started(phase.name, phase.heading(self.config))
        started = time.monotonic()
        self._guard(phase.name, record, lambda: phase.enter(ctx))
        self.move(record, "finish")
        self.save()
        self.report.done(phase.name, time.monotonic() - started)

    def _guard(self, name: str, record: PhaseRecord, work: Callable[[], Any]) -> Any:
        """Run a phase handler; on any way out but success, persist why before leaving."""
        try:
            return work()
        except (StateConflict, StateWriteFailed):
            raise  # the state file cannot take what happened: nothing more is written
        except StillWaiting as stop:
            if record.status != WAITING:  # the wait was another phase's (see wait_until)
                self.move(record, "wait", what=stop.waiting_for)
            self.save()
            raise
        except NeedsAction as action:
            self.move(record, "need_action", what=action.instructions.splitlines()[0])
            self.save()
            raise
        except KeyboardInterrupt:
            note_interrupted(record)
            self.save()
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then reported
            message, hint = describe_failure(exc)
            self.move(record, "fail", why=f"{message} (next: {hint})")
            self.save()
            raise PhaseFailed(name, message, hint) from exc

    # ---- plan -------------------------------------------------------------------------------

    def plan(self, until: str | None = None) -> list[PhasePlan]:
        """What `run` would do, phase by phase, with every write call refused. The engine's
        state should be a copy: a phase's plan may note what it read (preflight's
        observations, say) in its record for the later phases' plans."""
        stop = self.order.index(until) if until else len(self.order) - 1
        plans: list[PhasePlan] = []
        stopped: dict[str, str] = {}  # phase -> the earlier phase that run would stop at
        for name in self.order[: stop + 1]:
            first = next((stopped[r] for r in self.phases[name].reads if r in stopped), None)
            if first is not None:  # what it reads would not be there: say so, not a KeyError
                problem = f"run would stop at {first} before it"
                plans.append(PhasePlan(name, "unknown", problem=problem))
                stopped[name] = first
                continue
            plans.append(self.plan_phase(name))
            if plans[-1].status in ("stop", "unknown"):
                stopped[name] = name
        return plans

    def plan_phase(self, name: str) -> PhasePlan:
        """One phase's plan, with every write call refused while it is made."""
        from orchestrator import calls

        phase, record = self.phases[name], self.state.phase(name)
        ctx = PhaseContext(self, record)
        try:
            with calls.read_only("plan"):
                return self._plan(phase, record, ctx)
        except (KeyboardInterrupt, StateConflict, StateWriteFailed):
            raise
        except PhaseError as stop:  # enter would stop here, for this reason
            return PhasePlan(name, "stop", problem=stop.message)
        except Exception as exc:  # noqa: BLE001 - told, and the other phases still planned
            message, _ = describe_failure(exc)
            return PhasePlan(name, "unknown", problem=message)

    def _plan(self, phase: Phase, record: PhaseRecord, ctx: PhaseContext) -> PhasePlan:
        """A done phase still true has nothing to do; any other is planned (again)."""
        if record.status != DONE:
            return PhasePlan(phase.name, "to_do", phase.plan(ctx))
        problem = phase.verify(ctx)
        if problem is None:
            return PhasePlan(phase.name, "done")
        return PhasePlan(phase.name, "drifted", phase.plan(ctx), problem)

    # ---- back -------------------------------------------------------------------------------

    def rollback(self, to: str | None) -> None:
        """Undo, newest first, every touched phase after `to` (every phase if None)."""
        self.state.rollback_to = to or ROLLBACK_ALL
        self.save()
        first = self.order.index(to) + 1 if to else 0
        for name in reversed(self.order[first:]):
            self._undo_phase(name)
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
            self._undo_phase(name, sweeping=True)

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

    def _undo_phase(self, name: str, sweeping: bool = False) -> None:
        """Roll one touched phase back. `sweeping`: in the sweep, for what the state file did
        not list (added to the record); the phase was rolled back already, or never entered,
        so it is not told as a phase rolled back, nor starts a new round of retry tokens."""
        phase, record = self.phases[name], self.state.phase(name)
        if record.status in UNTOUCHED and not sweeping:
            return
        ctx = PhaseContext(self, record)
        self.move(record, "start_rollback")
        self.save()
        if not sweeping:
            self.report.rolling_back(name)
        started = time.monotonic()
        self._guard(name, record, functools.partial(self._rollback_checked, phase, ctx))
        for adopted in (r for r in record.resources if not r.created):
            self.report.info(f"left {adopted.describe()} in place: {ADOPTED}", name)
        self.move(record, "finish_rollback")
        record.outputs, record.resources = {}, []
        if not sweeping:
            record.generation += 1
        self.save()
        if not sweeping:
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

    # ---- one phase's work brought back for another's rollback -------------------------------

    def restorable(self, name: str) -> bool:
        return self.phases[name].restorable(self._restoring(name))

    def restore(self, name: str) -> None:
        """Run phase `name`'s restore in its own record (what it makes is recorded there, as
        its enter would), leaving its status as it is: a later phase's rollback needs what
        it made (the ingress's, the controller to tear the ALB down)."""
        self.phases[name].restore(self._restoring(name))
        self.save()

    def _restoring(self, name: str) -> PhaseContext:
        return PhaseContext(self, self.state.phase(name), restoring=True)


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


# The settings a deployment's id is made of (config.py deployment_id).
IDENTIFYING = ("cluster.name", "cluster.region", "route53.subDomain.name")
RECORDED = "--recorded-settings"  # rollback's flag: the settings the state file recorded


def holds_anything(state: DeploymentState) -> bool:
    """Whether the state ties anything in the world to its deployment: a phase lists what
    it made, adopted or means to make (an intent is listed before its call), or a rollback
    has not finished (its sweep may still find something). What a finished rollback kept
    for others is released (it no longer carries this state file's marks), so it does not."""
    return state.rollback_to is not None or any(r.resources for r in state.phases)


def repoint(state: DeploymentState, config: Config, path: Any) -> str | None:
    """A state made for another deployment that holds nothing (a wrong region or cluster
    name failed preflight, say) becomes this config's; what it says it did, or None.

    Nothing was tagged or labelled with the old id, so nothing is lost: the phases start
    afresh (keeping their rollback generation, and what a rollback kept, for `status`). The
    state file's identity stays: it names this file, not the deployment."""
    if state.deployment == config.deployment_id or holds_anything(state):
        return None
    old = state.deployment
    changed = _changed(state.settings, config.settings(), IDENTIFYING)
    state.deployment = config.deployment_id
    state.settings = config.settings()
    state.phases = [PhaseRecord(r.name, generation=r.generation, kept=r.kept) for r in state.phases]
    return (
        f"re-pointed {path} from deployment {old} to {config.deployment_id}"
        f"{_explain(changed)}: nothing had been made for {old}"
    )


def recorded_config(config: Config, state: DeploymentState) -> Config:
    """The config as the state file recorded it: the settings its phases were made with,
    for a rollback after the config was changed (or its cluster or region is gone)."""
    recorded = {**IMPLIED_SETTINGS, **state.settings}
    values: dict[str, Any] = {
        SETTING_FIELDS[key]: tuple(value) if isinstance(value, list) else value
        for key, value in recorded.items()
        if key in SETTING_FIELDS
    }
    return dataclasses.replace(config, **values)


# The Config field behind each of Config.settings().
SETTING_FIELDS = {
    "cluster.name": "cluster_name",
    "cluster.region": "region",
    "route53.rootDomain.name": "root_domain",
    "route53.rootDomain.hostedZoneId": "root_zone_id",
    "route53.rootDomain.wildcardCertificate": "root_wildcard_certificate",
    "route53.subDomain.name": "subdomain",
    "route53.subDomain.hostedZoneId": "subdomain_zone_id",
    "route53.subDomain.subjectAlternativeNames": "subject_alternative_names",
    "kubeflow.alb.scheme": "alb_scheme",
    "kubeflow.alb.controller.imageRepository": "controller_image_repository",
    "kubernetes.context": "kube_context",
}


def check_state(state: DeploymentState, config: Config, phases: list[Phase], path: Any) -> None:
    """Refuse (exit 2) a state file that does not belong to this config or is inconsistent."""
    settings = config.settings()
    recorded = {**IMPLIED_SETTINGS, **state.settings}
    if state.deployment != config.deployment_id:
        raise UsageError(_moved(state, config, path))
    for index, phase in enumerate(phases):
        record = state.phase(phase.name)
        if record.status == DONE:
            missing = [key for key in phase.outputs if key not in record.outputs]
            if missing:
                raise UsageError(
                    f"{path}: phase {phase.name} is done but its outputs {missing} are missing; "
                    "the state file was edited or damaged. Restore it from a backup."
                )
        if record.status in UNTOUCHED or not record.resources:
            # Only what a phase made or adopted holds the config it was made with; one that
            # holds nothing (preflight, a wait) just runs again with the new config.
            continue
        changed = _changed(recorded, settings, phase.inputs)
        if changed:
            back = f"--to {phases[index - 1].name}" if index else "--all"
            raise UsageError(
                f"the config changed since phase {phase.name} was run{_explain(changed)}; "
                "resuming would diverge from what it made. Restore the previous value; to "
                f"change it, first undo {phase.name} and what follows with the previous "
                f"value (`orchestrator rollback {back}`, or without restoring it "
                f"`orchestrator rollback {back} {RECORDED}`), then set the new one and run."
            )


def _moved(state: DeploymentState, config: Config, path: Any) -> str:
    """Why a state of another deployment, which holds something, is refused, and the
    commands that undo what it holds with the settings it was made with."""
    changed = _changed(state.settings, config.settings(), IDENTIFYING)
    holding = [r.name for r in state.phases if r.resources]
    unfinished = " (a rollback of it was interrupted)" if state.rollback_to else ""
    held = (
        f"; what its phases made or adopted is still there ({', '.join(holding)})"
        if holding
        else ""
    )
    return (
        f"{path} belongs to deployment {state.deployment!r}, but the config describes "
        f"{config.deployment_id!r}{_explain(changed)}{unfinished}{held}. To keep it, use the "
        "config that deployment was made with, or another --state file. To move, first undo "
        f"it with the settings it was made with: `orchestrator rollback --all {RECORDED}`, "
        "then run again: a state that holds nothing follows the config."
    )


def _changed(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _explain(changes: list[str]) -> str:
    return f" ({'; '.join(changes)})" if changes else ""
