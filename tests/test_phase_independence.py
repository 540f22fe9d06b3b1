"""Phases do not call each other: no phase module imports another phase module or names
another phase's class; what two phases share lives in a builder or a helper. A rollback that
needs an earlier phase's work back (the ingress's, the controller to tear the ALB down) asks
the engine, which runs that phase's own `restore` in that phase's own record."""

from __future__ import annotations

import ast
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from orchestrator.config import Config
from orchestrator.errors import StillWaiting
from orchestrator.machine import Engine
from orchestrator.phase import Phase, PhaseContext
from orchestrator.report import Reporter
from orchestrator.states import PHASES, phase_class
from orchestrator.store import PhaseStatus, StateStore, new_state
from orchestrator.waiting import WaitPolicy

STATES = Path(__file__).resolve().parent.parent / "states"
PACKAGE = "orchestrator.states"
# What finds or makes phases: a phase that used them could run another's handlers.
PHASE_MAKERS = ("phase_class", "all_phases")


def phase_modules_named(source: str, phases: Iterable[str]) -> set[str]:
    """Those of `phases` whose modules a source imports (relative imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE if node.level else (node.module or "")
            if node.level and node.module:
                base = f"{PACKAGE}.{node.module}"
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if module.startswith(PACKAGE + ".") and parts[2] in phases:
                found.add(parts[2])
    return found


def names_used(source: str) -> set[str]:
    """Every name and attribute a source refers to."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


def reaches_into_others(directory: Path, classes: dict[str, str]) -> list[str]:
    """`module: what` for each phase module (by `classes`: phase name to its class's name)
    that imports another phase module, names another phase's class or makes phases."""
    found = []
    for name, own_class in classes.items():
        source = (directory / f"{name}.py").read_text()
        found += [
            f"{name}: imports {other}"
            for other in sorted(phase_modules_named(source, classes) - {name})
        ]
        used = names_used(source)
        others = sorted(c for c in classes.values() if c != own_class and c in used)
        found += [f"{name}: names {other}" for other in others]
        found += [f"{name}: uses {maker}" for maker in PHASE_MAKERS if maker in used]
    return found


def test_no_phase_imports_another_phase_or_calls_its_class() -> None:
    classes = {name: phase_class(name).__name__ for name in PHASES}
    assert reaches_into_others(STATES, classes) == []


def test_the_check_sees_a_phase_reach_into_another(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from orchestrator.states.b import B_CONSTANT\n")
    (tmp_path / "b.py").write_text("from . import c\n")
    (tmp_path / "c.py").write_text(
        "from orchestrator import states\n\ndef undo(ctx):\n    states.phase_class('a')\n"
    )
    (tmp_path / "d.py").write_text("def undo(ctx, APhase):\n    APhase().enter(ctx)\n")
    classes = {"a": "APhase", "b": "BPhase", "c": "CPhase", "d": "DPhase"}
    assert reaches_into_others(tmp_path, classes) == [
        "a: imports b",
        "b: imports c",
        "c: uses phase_class",
        "d: names APhase",
    ]


# ---- the engine restores an earlier phase's work for a later phase's rollback ---------------


class Maker(Phase):
    """Makes a thing; brought back by `restore`, which waits for it like enter does."""

    name = "maker"
    title = "make the thing"
    answer: ClassVar[bool] = True  # whether the thing is there at once

    def enter(self, ctx: PhaseContext) -> None:
        ctx.adopt("thing", f"thing-{len(ctx.record.resources)}")
        ctx.wait_until("the thing", lambda: True if self.answer else None)
        ctx.outputs["made"] = ctx.outputs.get("made", 0) + 1

    def verify(self, ctx: PhaseContext) -> str | None:
        return None

    def restorable(self, ctx: PhaseContext) -> bool:
        return bool(ctx.outputs.get("made"))


class User(Phase):
    """Needs the maker's thing to undo its own: its rollback has it restored."""

    name = "user"
    title = "use the thing"
    reads: ClassVar[tuple[str, ...]] = ("maker",)

    def enter(self, ctx: PhaseContext) -> None:
        ctx.outputs["used"] = True

    def verify(self, ctx: PhaseContext) -> str | None:
        return None

    def rollback(self, ctx: PhaseContext) -> None:
        if ctx.can_restore("maker"):
            ctx.restore("maker")


class Stranger(User):
    """Does not declare that it reads the maker."""

    name = "stranger"
    reads = ()


def engine(tmp_path: Path, *phases: Phase, no_wait: bool = False) -> Engine:
    config = Config("cluster", "us-west-2", "example.com", None, "platform.example.com")
    state = new_state(config.deployment_id, config.settings(), [p.name for p in phases])
    out = io.StringIO()
    return Engine(
        list(phases),
        state,
        StateStore(tmp_path / "state.json"),
        config,
        Reporter(out, out),
        WaitPolicy(no_wait=no_wait),
    )


def context(engine: Engine, name: str) -> PhaseContext:
    return PhaseContext(engine, engine.state.phase(name))


def done(engine: Engine, name: str, **outputs: Any) -> None:
    record = engine.state.phase(name)
    record.status = PhaseStatus.DONE
    record.outputs.update(outputs)


def test_a_rollback_has_the_engine_restore_an_earlier_phase_in_that_phases_record(
    tmp_path: Path,
) -> None:
    machine = engine(tmp_path, Maker(), User())
    done(machine, "maker", made=1)
    done(machine, "user")
    User().rollback(context(machine, "user"))
    maker = machine.state.phase("maker")
    assert maker.outputs["made"] == 2, "the maker's own restore ran"
    assert [r.id for r in maker.resources] == ["thing-0"], "recorded in the maker's record"
    assert maker.status == PhaseStatus.DONE
    assert machine.state.phase("user").resources == []
    assert (
        StateStore(tmp_path / "state.json").load(["maker", "user"]).phase("maker").outputs["made"]
        == 2
    )


def test_a_phase_restores_only_what_it_can(tmp_path: Path) -> None:
    machine = engine(tmp_path, Maker(), User())
    done(machine, "maker")  # made nothing: Maker.restorable says no
    done(machine, "user")
    User().rollback(context(machine, "user"))
    assert "made" not in machine.state.phase("maker").outputs


def test_a_restore_that_waits_leaves_the_restored_phases_status_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The maker was being entered again when the run stopped (in progress); the user's
    rollback restores it, and that wait stops: the maker's status is not the wait's."""
    machine = engine(tmp_path, Maker(), User(), no_wait=True)
    done(machine, "maker", made=1)
    machine.state.phase("maker").status = PhaseStatus.IN_PROGRESS
    done(machine, "user")
    monkeypatch.setattr(Maker, "answer", False)
    with pytest.raises(StillWaiting):
        User().rollback(context(machine, "user"))
    assert machine.state.phase("maker").status == PhaseStatus.IN_PROGRESS


def test_a_phase_restores_only_a_phase_it_declares_it_reads(tmp_path: Path) -> None:
    machine = engine(tmp_path, Maker(), Stranger())
    done(machine, "maker", made=1)
    with pytest.raises(RuntimeError, match="reads maker but does not declare it"):
        Stranger().rollback(context(machine, "stranger"))
    assert machine.state.phase("maker").outputs["made"] == 1
