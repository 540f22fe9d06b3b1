"""run, resume, rollback and plan: the commands that work through the engine."""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from orchestrator.cli.wiring import _engine, _load_state, _prepare
from orchestrator.errors import ExitCode, NeedsAction, StillWaiting, UsageError
from orchestrator.report import JsonReporter
from orchestrator.store import ROLLBACK_ALL, DeploymentState, PhaseStatus, Store

if TYPE_CHECKING:
    from orchestrator.cli.invocation import Invocation


def _forward(invocation: Invocation) -> int:
    config, phases, store = _prepare(invocation)
    command = "resume" if invocation.resume else "run"
    with store.locked(command, invocation.lock_timeout) as note:
        if note:
            print(note, file=sys.stderr)
        existed = store.exists()
        state = _load_state(
            store, config, phases, must_exist=invocation.resume, say=invocation.report.notice
        )
        engine = _engine(invocation, config, phases, store, state, frozenset(invocation.confirm))
        invocation.report.header(state.deployment, str(store.path))
        if invocation.resume and state.rollback_to:
            to = None if state.rollback_to == ROLLBACK_ALL else state.rollback_to
            invocation.report.notice(
                f"finishing the interrupted rollback to {to or 'nothing (--all)'}"
            )
            return _outcome(engine, lambda: engine.rollback(to), invocation)
        try:
            return _outcome(engine, lambda: engine.forward(invocation.until), invocation)
        except UsageError:
            _discard_refused(store, state, existed)
            raise


def _discard_refused(store: Any, state: Any, existed: bool) -> None:
    """A state file this run made and was then refused to go on with (another state file's
    resources are there) is not left behind: "nothing was changed" holds for it too."""
    from orchestrator.machine import holds_anything

    discard = getattr(store, "discard", None)  # a local file's store has it
    if not existed and discard is not None and store.exists() and not holds_anything(state):
        discard()


def _rollback(invocation: Invocation) -> int:
    from orchestrator import preview

    config, phases, store = _prepare(invocation)
    with store.locked("rollback", invocation.lock_timeout) as note:
        if note:
            print(note, file=sys.stderr)
        if invocation.recorded_settings:
            config = _as_recorded(invocation, store, config, phases)
        state = _load_state(store, config, phases, must_exist=True, say=invocation.report.notice)
        to = None if invocation.all else invocation.to
        # The preview comes from the same decisions rollback then applies (read-only here).
        engine = _engine(invocation, config, phases, store, state)
        steps = preview.rollback_steps(state, phases, to, engine=engine)
        shown = preview.render(steps, state.deployment, "--all" if to is None else f"--to {to}")
        if not invocation.yes and preview.deletes_anything(steps):
            _agree(
                invocation,
                shown,
                f"`orchestrator rollback {'--all' if to is None else '--to ' + to}"
                f"{' --recorded-settings' if invocation.recorded_settings else ''} --yes`",
            )
        report = invocation.report
        report.header(state.deployment, str(store.path))
        if isinstance(report, JsonReporter):
            report.emit("preview", steps=[step.as_dict() for step in steps])
        return _outcome(engine, lambda: engine.rollback(to), invocation)


def _as_recorded(invocation: Invocation, store: Any, config: Any, phases: list[Any]) -> Any:
    """`rollback --recorded-settings`: the config as the state file recorded it, so that
    what was made with settings since changed (a region, a cluster's name) is undone with
    them, without writing the old config back."""
    from orchestrator.config import check_kube_context
    from orchestrator.machine import recorded_config

    if not store.exists():
        raise UsageError(f"no state file at {store.path}: nothing to roll back")
    recorded = recorded_config(config, store.load([p.name for p in phases]))
    changed = [
        f"{key} {value!r}"
        for key, value in recorded.settings().items()
        if value != config.settings().get(key)
    ]
    if recorded.kube_context != config.kube_context:
        check_kube_context(recorded)
    if changed:
        invocation.report.notice(
            f"rolling back with the settings {store.path} recorded, not the config's: "
            f"{'; '.join(changed)}"
        )
    return recorded


def _agree(invocation: Invocation, shown: str, confirmed: str) -> None:
    """Show what the rollback deletes and ask, as `terraform destroy` does; without a
    terminal to ask on, refuse (exit 2, nothing deleted) unless --yes was given."""
    if not invocation.json:
        print(shown)
    if invocation.json or not sys.stdin.isatty():
        raise UsageError(
            "rollback deletes resources, and there is no terminal to confirm on: nothing was "
            f"deleted. To delete them, run {confirmed}"
        )
    try:
        answer = input("Delete these? Only 'yes' goes on: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        raise UsageError("rollback cancelled: nothing was deleted")


def _plan(invocation: Invocation) -> int:
    """What `run` would do: the phases' own plans, on a copy of the state never saved."""
    from orchestrator import planning

    config, phases, store = _prepare(invocation)
    state = _load_state(
        store,
        config,
        phases,
        must_exist=False,
        say=lambda note: invocation.report.notice(
            f"{note} (in this plan; `orchestrator run` saves it)"
        ),
    )
    engine = _engine(invocation, config, phases, Unsaved(store), state)
    plans = engine.plan(invocation.until)
    code = planning.exit_code(plans, invocation.detailed_exitcode)
    report = invocation.report
    if isinstance(report, JsonReporter):
        report.header(state.deployment, str(store.path))
        for plan in plans:
            report.emit("plan", **plan.as_dict())
        # One line a pipeline reads the plan from; `result` stays the last line.
        report.emit("summary", **planning.summary_fields(plans, code))
    else:
        print(f"plan for deployment {state.deployment} (state: {store.path}):")
        print("\n".join(planning.lines(plans)))
        print(planning.summary(plans))
    return code


class Unsaved:
    """The state store as `plan` sees it: it reads the state through `store`, and writes
    nothing (and holds no lock, so it has none to lose)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def path(self) -> object:
        return self._store.path

    def exists(self) -> bool:
        return self._store.exists()

    def load(self, phase_names: list[str]) -> DeploymentState:
        return self._store.load(phase_names)

    def save(self, state: DeploymentState) -> None:
        pass

    def check_held(self) -> None:
        pass

    def locked(self, command: str, wait: float = 0.0) -> AbstractContextManager[str | None]:
        return nullcontext()


def _outcome(engine: Any, work: Any, invocation: Invocation) -> int:
    from orchestrator.machine import PhaseFailed

    try:
        work()
    except PhaseFailed as failure:
        engine.report.failed(failure.phase, failure.message, failure.hint)
        return ExitCode.PHASE_FAILED
    except StillWaiting as stop:
        engine.report.stopped(
            f"{_stopped_after(engine.report, stop)}; run `orchestrator resume` to keep waiting"
        )
        return ExitCode.WAITING
    except NeedsAction as action:
        engine.report.stopped(f"action needed: {action.instructions}")
        return ExitCode.WAITING
    url = None
    if all(record.status == PhaseStatus.DONE for record in engine.state.phases):
        from orchestrator.outputs import collect

        url = collect(engine.state)["url"]
    engine.report.finished(url)
    return ExitCode.OK


def _stopped_after(report: Any, stop: StillWaiting) -> str:
    """How long the command ran before a wait stopped it: --max-wait counts from the
    command's start, so the wait itself may have begun just before its deadline."""
    from orchestrator.report import elapsed

    ran = time.monotonic() - report.began
    said = f"stopped after {elapsed(ran)} while waiting for {stop.waiting_for}"
    if ran - stop.elapsed >= 1:  # most of the time went to the phases before this wait
        said += f" ({elapsed(stop.elapsed)} of it on this wait)"
    return said
