"""The engine's forward, verify, rollback and persistence rules, with in-memory phases."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.errors import NeedsAction, PhaseError, UsageError
from orchestrator.machine import Engine, PhaseFailed, check_state
from orchestrator.phase import Phase, PhaseContext
from orchestrator.report import Reporter
from orchestrator.store import StateStore, new_state
from orchestrator.waiting import WaitPolicy

CONFIG = Config(
    cluster_name="c",
    region="us-west-2",
    root_domain="example.com",
    root_zone_id="Z1",
    subdomain="platform.example.com",
)


class World:
    """What fake phases create: a set of names, and a journal of handler calls."""

    def __init__(self) -> None:
        self.things: set[str] = set()
        self.journal: list[str] = []


class FakePhase(Phase):
    inputs = ("route53.subDomain.name",)
    outputs = ("thing",)

    def __init__(self, name: str, world: World, fail: bool = False) -> None:
        self.name = name
        self.title = f"make {name}"
        self.world = world
        self.fail = fail

    def enter(self, ctx: PhaseContext) -> None:
        self.world.journal.append(f"enter {self.name}")
        if self.fail:
            raise PhaseError(f"{self.name} cannot", "fix it")
        resource = ctx.intend("thing", self.name, f"make {self.name}")
        self.world.things.add(self.name)
        ctx.confirm(resource)
        ctx.outputs["thing"] = self.name

    def verify(self, ctx: PhaseContext) -> str | None:
        self.world.journal.append(f"verify {self.name}")
        return None if self.name in self.world.things else f"{self.name} is gone"

    def rollback(self, ctx: PhaseContext) -> None:
        self.world.journal.append(f"rollback {self.name}")
        for resource in ctx.owned("thing"):
            self.world.things.discard(resource.id)
            ctx.forget(resource)


def make(
    tmp_path: Path,
    world: World,
    names: tuple[str, ...] = ("a", "b", "c"),
    failing: str | None = None,
    policy: WaitPolicy | None = None,
) -> Engine:
    phases = [FakePhase(n, world, fail=n == failing) for n in names]
    store = StateStore(tmp_path / "state.json")
    state = (
        store.load(list(names))
        if store.exists()
        else new_state(CONFIG.deployment_id, CONFIG.settings(), list(names))
    )
    return Engine(phases, state, store, CONFIG, Reporter(io.StringIO(), io.StringIO()), policy)


def saved(tmp_path: Path) -> dict[str, Any]:
    data = json.loads((tmp_path / "state.json").read_text())
    return {p["name"]: p for p in data["phases"]}


def test_forward_enters_each_phase_once_then_only_verifies(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward()
    assert world.journal == ["enter a", "enter b", "enter c"]
    assert {p["status"] for p in saved(tmp_path).values()} == {"done"}
    world.journal.clear()
    make(tmp_path, world).forward()
    assert sorted(world.journal) == ["verify a", "verify b", "verify c"]


def test_a_finished_deployment_is_verified_side_by_side(tmp_path: Path) -> None:
    """The verifies of the done phases a run starts with run at once: each here waits until
    all three have started, which one after another would never happen."""
    world = World()
    make(tmp_path, world).forward()
    together = threading.Barrier(3, timeout=10)

    class Meeting(FakePhase):
        def verify(self, ctx: PhaseContext) -> str | None:
            together.wait()
            return super().verify(ctx)

    engine = make(tmp_path, world)
    engine.phases = {name: Meeting(name, world) for name in engine.order}
    engine.forward()
    assert not together.broken


def test_a_done_phase_that_no_longer_holds_is_entered_again(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward()
    world.things.discard("b")
    world.journal.clear()
    make(tmp_path, world).forward()
    journal = world.journal
    assert [entry for entry in journal if entry.startswith("enter")] == ["enter b"]
    # c's verdict from before b was entered again does not count: c is verified after it.
    assert "verify c" in journal[journal.index("enter b") :]
    assert saved(tmp_path)["b"]["attempts"] == 2


def test_until_stops_after_that_phase(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward(until="b")
    assert world.journal == ["enter a", "enter b"]
    assert saved(tmp_path)["c"]["status"] == "pending"


def test_a_failure_is_recorded_with_its_message_and_hint(tmp_path: Path) -> None:
    world = World()
    with pytest.raises(PhaseFailed) as failure:
        make(tmp_path, world, failing="b").forward()
    assert failure.value.phase == "b"
    record = saved(tmp_path)["b"]
    assert record["status"] == "failed"
    assert "b cannot" in record["error"] and "fix it" in record["error"]
    assert saved(tmp_path)["c"]["status"] == "pending"
    make(tmp_path, world).forward()  # the cause is gone: resume finishes
    assert saved(tmp_path)["b"]["status"] == "done"


def test_rollback_to_undoes_newer_phases_newest_first(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward()
    world.journal.clear()
    make(tmp_path, world).rollback("a")
    assert world.journal == ["rollback c", "rollback b"]
    assert world.things == {"a"}
    records = saved(tmp_path)
    assert [records[n]["status"] for n in "abc"] == ["done", "rolled_back", "rolled_back"]
    assert records["b"]["generation"] == 1 and records["b"]["resources"] == []
    world.journal.clear()
    make(tmp_path, world).forward()
    assert world.journal == ["verify a", "enter b", "enter c"]


def test_rollback_all_and_an_interrupted_rollback_resumes(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward()

    class Interrupting(FakePhase):
        def rollback(self, ctx: PhaseContext) -> None:
            raise KeyboardInterrupt

    engine = make(tmp_path, world)
    engine.phases["b"] = Interrupting("b", world)
    with pytest.raises(KeyboardInterrupt):
        engine.rollback(None)
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["rollback_to"] == "*"
    assert saved(tmp_path)["c"]["status"] == "rolled_back"
    assert saved(tmp_path)["b"]["action"] == "rollback"

    make(tmp_path, world).rollback(None)
    assert world.things == set()
    assert json.loads((tmp_path / "state.json").read_text())["rollback_to"] is None


def test_rollback_refuses_to_pretend_when_created_resources_remain(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward()

    class Forgetful(FakePhase):
        def rollback(self, ctx: PhaseContext) -> None:
            pass

    engine = make(tmp_path, world)
    engine.phases["c"] = Forgetful("c", world)
    with pytest.raises(PhaseFailed, match="left resources"):
        engine.rollback("b")
    assert saved(tmp_path)["c"]["status"] == "failed"


def test_waits_and_human_actions_are_persisted(tmp_path: Path) -> None:
    world = World()

    class Waiting(FakePhase):
        def enter(self, ctx: PhaseContext) -> None:
            ctx.wait_until("the moon", lambda: None)

    class Asking(FakePhase):
        def enter(self, ctx: PhaseContext) -> None:
            raise NeedsAction("add NS records\nat the registrar")

    engine = make(tmp_path, world, policy=WaitPolicy(no_wait=True))
    engine.phases["b"] = Waiting("b", world)
    from orchestrator.errors import StillWaiting

    with pytest.raises(StillWaiting):
        engine.forward()
    assert saved(tmp_path)["b"]["status"] == "waiting"
    assert saved(tmp_path)["b"]["waiting_for"] == "the moon"

    engine = make(tmp_path, world)
    engine.phases["b"] = Asking("b", world)
    with pytest.raises(NeedsAction):
        engine.forward()
    assert saved(tmp_path)["b"]["status"] == "needs_action"
    assert saved(tmp_path)["b"]["waiting_for"] == "add NS records"


def test_an_unexpected_exception_is_a_recorded_internal_error(tmp_path: Path) -> None:
    world = World()

    class Buggy(FakePhase):
        def enter(self, ctx: PhaseContext) -> None:
            raise ZeroDivisionError("oops")

    engine = make(tmp_path, world)
    engine.phases["a"] = Buggy("a", world)
    with pytest.raises(PhaseFailed, match="internal error: ZeroDivisionError"):
        engine.forward()
    assert "report it" in saved(tmp_path)["a"]["error"]


def test_state_checks_deployment_outputs_and_config_changes(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward(until="b")
    store = StateStore(tmp_path / "state.json")
    phases = [FakePhase(n, world) for n in "abc"]
    check_state(store.load(["a", "b", "c"]), CONFIG, phases, store.path)

    moved = Config(**{**CONFIG.__dict__, "subdomain": "other.example.com"})
    with pytest.raises(UsageError, match="belongs to deployment"):
        check_state(store.load(["a", "b", "c"]), moved, phases, store.path)

    same_id = store.load(["a", "b", "c"])
    same_id.settings["route53.subDomain.name"] = "old.example.com"
    with pytest.raises(UsageError, match="config changed since phase a"):
        check_state(same_id, CONFIG, phases, store.path)

    broken = store.load(["a", "b", "c"])
    broken.phases[0].outputs = {}
    with pytest.raises(UsageError, match="outputs"):
        check_state(broken, CONFIG, phases, store.path)


class Checking(FakePhase):
    """Like preflight: reads the world, creates nothing; fails on the wrong context."""

    inputs = ("kubernetes.context", "route53.subDomain.name")

    def enter(self, ctx: PhaseContext) -> None:
        self.world.journal.append(f"enter {self.name}")
        if ctx.config.kube_context != "right":
            raise PhaseError(f"context {ctx.config.kube_context} reaches another cluster", "fix it")
        ctx.outputs["thing"] = "checked"


def test_a_phase_that_created_nothing_does_not_pin_the_config(tmp_path: Path) -> None:
    world = World()
    wrong = Config(**{**CONFIG.__dict__, "kube_context": "wrong"})
    engine = make(tmp_path, world)
    engine.phases["a"] = Checking("a", world)
    engine.config = wrong
    with pytest.raises(PhaseFailed, match="reaches another cluster"):
        engine.forward()

    fixed = Config(**{**CONFIG.__dict__, "kube_context": "right"})
    store = StateStore(tmp_path / "state.json")
    phases = [Checking("a", world), FakePhase("b", world), FakePhase("c", world)]
    state = store.load(["a", "b", "c"])
    check_state(state, fixed, phases, store.path)  # the fix is accepted
    engine = make(tmp_path, world)
    engine.phases["a"], engine.config = phases[0], fixed
    engine.forward()
    assert {p["status"] for p in saved(tmp_path).values()} == {"done"}

    # Done and holding nothing, it still does not pin; what b and c made does.
    again = Config(**{**CONFIG.__dict__, "kube_context": "other"})
    check_state(store.load(["a", "b", "c"]), again, phases, store.path)


def test_a_changed_config_names_a_rollback_that_exists(tmp_path: Path) -> None:
    world = World()
    make(tmp_path, world).forward()
    store = StateStore(tmp_path / "state.json")
    phases = [FakePhase(n, world) for n in "abc"]
    state = store.load(["a", "b", "c"])
    state.settings["route53.subDomain.name"] = "old.example.com"
    with pytest.raises(UsageError, match="config changed since phase a") as refused:
        check_state(state, CONFIG, phases, store.path)
    assert "`orchestrator rollback --all`" in str(refused.value), "no phase before the first"
    assert "before a" not in str(refused.value)

    state.phase("a").resources = []  # a made nothing: b is the first the change concerns
    with pytest.raises(UsageError, match="config changed since phase b") as refused:
        check_state(state, CONFIG, phases, store.path)
    assert "`orchestrator rollback --to a`" in str(refused.value)


class ReplacingPhase(FakePhase):
    """Makes its thing and replaced an older one, which goes once phase b is done."""

    retires_after = "b"

    def retirement(self, ctx: PhaseContext) -> list[Any]:
        from orchestrator.planning import DELETE, LEAVE, Undo
        from orchestrator.store import Resource

        def retire() -> None:
            self.world.journal.append("retire old")
            self.world.things.discard("old")

        old = Resource("thing", "old", created=True)
        if "old" not in self.world.things:
            return []

        def leave() -> None:  # the engine applies deletes only: never called
            self.world.journal.append("applied a leave")

        return [Undo(old, DELETE, "", retire), Undo(old, LEAVE, "kept", leave)]


def test_what_a_phase_replaced_goes_once_the_phase_it_waits_for_is_done_also_on_a_later_run(
    tmp_path: Path,
) -> None:
    world = World()
    world.things.add("old")

    def engine(failing: str | None) -> Engine:
        phases = [
            ReplacingPhase("a", world),
            FakePhase("b", world, fail=failing == "b"),
            FakePhase("c", world),
        ]
        store = StateStore(tmp_path / "state.json")
        names = ["a", "b", "c"]
        state = store.load(names) if store.exists() else new_state(CONFIG.deployment_id, {}, names)
        return Engine(phases, state, store, CONFIG, Reporter(io.StringIO(), io.StringIO()))

    with pytest.raises(PhaseFailed):
        engine(failing="b").forward()
    assert "old" in world.things and "retire old" not in world.journal  # b is not done
    world.journal.clear()
    engine(failing=None).forward()
    assert world.journal == ["verify a", "enter b", "retire old", "enter c"]
    assert "old" not in world.things
