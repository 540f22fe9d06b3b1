"""A phase's lifecycle: the moves its status may make, declared once, and the engine
held to them. In process, with in-memory phases."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest

from orchestrator.config import Config
from orchestrator.errors import StillWaiting
from orchestrator.lifecycle import LIFECYCLE, MOVES, IllegalMove, move
from orchestrator.machine import Engine
from orchestrator.phase import Phase, PhaseContext
from orchestrator.report import Reporter
from orchestrator.store import STATUSES, PhaseRecord, PhaseStatus, StateStore, new_state
from orchestrator.waiting import WaitPolicy

CONFIG = Config(
    cluster_name="c",
    region="us-west-2",
    root_domain="example.com",
    root_zone_id="Z1",
    subdomain="platform.example.com",
)


def record(status: str, action: str | None = None) -> PhaseRecord:
    return PhaseRecord("b", status=PhaseStatus(status), action=action)


# (status, action before) -- trigger -> (status, action after)
LEGAL = [
    ("pending", None, "enter", "in_progress", "enter"),
    ("rolled_back", None, "enter", "in_progress", "enter"),
    ("failed", "enter", "enter", "in_progress", "enter"),
    ("waiting", "enter", "enter", "in_progress", "enter"),
    ("needs_action", "enter", "enter", "in_progress", "enter"),
    ("in_progress", "enter", "enter", "in_progress", "enter"),  # after a crash
    ("in_progress", "rollback", "enter", "in_progress", "enter"),  # `run` after a crash
    ("in_progress", "import", "enter", "in_progress", "enter"),
    ("done", None, "enter", "in_progress", "enter"),  # verify found drift
    ("in_progress", "enter", "wait", "waiting", "enter"),
    ("in_progress", "rollback", "wait", "waiting", "rollback"),
    ("waiting", "enter", "stop_waiting", "in_progress", "enter"),
    ("in_progress", "enter", "need_action", "needs_action", "enter"),
    ("in_progress", "enter", "finish", "done", None),
    ("in_progress", "enter", "fail", "failed", "enter"),
    ("in_progress", "rollback", "fail", "failed", "rollback"),
    ("waiting", "enter", "fail", "failed", "enter"),
    ("done", None, "fail", "failed", None),  # verify raised
    ("done", None, "start_rollback", "in_progress", "rollback"),
    ("failed", "enter", "start_rollback", "in_progress", "rollback"),
    ("waiting", "enter", "start_rollback", "in_progress", "rollback"),
    ("needs_action", "enter", "start_rollback", "in_progress", "rollback"),
    ("in_progress", "import", "start_rollback", "in_progress", "rollback"),
    ("pending", None, "start_rollback", "in_progress", "rollback"),  # the sweep
    ("rolled_back", None, "start_rollback", "in_progress", "rollback"),  # the sweep
    ("in_progress", "rollback", "finish_rollback", "rolled_back", None),
    ("pending", None, "take_over", "in_progress", "import"),
]

# (status, action) -- trigger: refused
ILLEGAL = [
    ("pending", None, "finish", "done"),
    ("rolled_back", None, "finish", "done"),
    ("failed", "enter", "finish", "done"),
    ("needs_action", "enter", "finish", "done"),
    ("in_progress", "rollback", "finish", "done"),  # a rollback never ends as done
    ("in_progress", "enter", "finish_rollback", "rolled_back"),
    ("done", None, "finish_rollback", "rolled_back"),
    ("done", None, "wait", "waiting"),
    ("pending", None, "wait", "waiting"),
    ("done", None, "stop_waiting", "in_progress"),
    ("pending", None, "fail", "failed"),
    ("rolled_back", None, "fail", "failed"),
    ("done", None, "need_action", "needs_action"),
    ("in_progress", "rollback", "need_action", "needs_action"),
    ("done", None, "take_over", "in_progress"),
    ("in_progress", "import", "take_over", "in_progress"),
]


@pytest.mark.parametrize(("status", "action", "trigger", "to", "action_after"), LEGAL)
def test_each_declared_move_is_made(
    status: str, action: str | None, trigger: str, to: str, action_after: str | None
) -> None:
    phase = record(status, action)
    move(phase, trigger)
    assert (phase.status, phase.action) == (to, action_after)
    assert type(phase.status) is PhaseStatus


@pytest.mark.parametrize(("status", "action", "trigger", "to"), ILLEGAL)
def test_an_undeclared_move_raises_naming_phase_from_and_to(
    status: str, action: str | None, trigger: str, to: str
) -> None:
    phase = record(status, action)
    with pytest.raises(IllegalMove, match=f"phase b cannot {trigger}: {status}.* -> {to} ") as e:
        move(phase, trigger)
    assert (e.value.phase, e.value.source, e.value.dest) == ("b", status, to)
    assert (phase.status, phase.action) == (status, action)  # left as it was


def test_the_declaration_covers_every_status_and_adds_no_moves_of_its_own() -> None:
    assert set(LIFECYCLE.states) == set(STATUSES)
    declared = {trigger for trigger, _, _ in MOVES}
    assert set(LIFECYCLE.events) == declared  # auto_transitions off: no to_<state>()
    reached = {dest for _, _, dest in MOVES} | {PhaseStatus.PENDING}
    assert reached == set(PhaseStatus)


def test_statuses_are_plain_strings_in_the_state_file(tmp_path: Path) -> None:
    state = new_state("d", {}, ["a"])
    move(state.phase("a"), "enter")
    assert json.loads(state.to_json())["phases"][0]["status"] == "in_progress"
    assert state.phase("a").status == "in_progress"


# ---- the engine held to the declaration -------------------------------------------------------


class Thing(Phase):
    outputs = ("thing",)

    def __init__(self, name: str) -> None:
        self.name, self.title = name, f"make {name}"

    def enter(self, ctx: PhaseContext) -> None:
        ctx.outputs["thing"] = self.name

    def verify(self, ctx: PhaseContext) -> str | None:
        return None


class Meddling(Thing):
    """A buggy handler that writes its own status: the engine's next move is refused."""

    def enter(self, ctx: PhaseContext) -> None:
        ctx.record.status = PhaseStatus.ROLLED_BACK


class Waiting(Thing):
    def enter(self, ctx: PhaseContext) -> None:
        ctx.wait_until("the moon", lambda: None)


def engine(tmp_path: Path, *phases: Phase) -> Engine:
    names = [p.name for p in phases]
    state = new_state(CONFIG.deployment_id, CONFIG.settings(), names)
    store = StateStore(tmp_path / "state.json")
    out = io.StringIO()
    return Engine(list(phases), state, store, CONFIG, Reporter(out, out), WaitPolicy(no_wait=True))


def test_the_engine_cannot_mark_done_a_phase_never_entered(tmp_path: Path) -> None:
    e = engine(tmp_path, Thing("a"))
    with pytest.raises(IllegalMove, match="phase a cannot finish: pending -> done"):
        e.move(e.state.phase("a"), "finish")
    assert e.state.phase("a").status == "pending"


def test_the_engine_refuses_to_finish_a_phase_whose_status_was_overwritten(
    tmp_path: Path,
) -> None:
    e = engine(tmp_path, Thing("a"), Meddling("b"))
    with pytest.raises(IllegalMove, match="phase b cannot finish: rolled_back .*-> done"):
        e.forward()
    assert e.state.phase("a").status == "done"
    assert e.state.phase("b").status == "rolled_back"


def test_a_wait_moves_only_the_phase_being_worked_on(tmp_path: Path) -> None:
    e = engine(tmp_path, Waiting("a"))
    with pytest.raises(StillWaiting):
        e.forward()
    record = e.state.phase("a")
    assert (record.status, record.action, record.waiting_for) == ("waiting", "enter", "the moon")

    # The same handler run for another phase (or on its own, in a test): no status moves.
    idle = e.state.phase("a")
    idle.status = PhaseStatus.DONE
    with pytest.raises(StillWaiting):
        Waiting("a").enter(PhaseContext(e, idle))
    assert idle.status == "done" and idle.waiting_for == "the moon"


def test_rollback_and_resume_walk_the_declared_moves(tmp_path: Path) -> None:
    e = engine(tmp_path, Thing("a"), Thing("b"), Thing("c"))
    e.forward(until="b")
    assert [r.status for r in e.state.phases] == ["done", "done", "pending"]
    e.rollback("a")
    assert [r.status for r in e.state.phases] == ["done", "rolled_back", "pending"]
    e.forward()
    assert [(r.status, r.action) for r in e.state.phases] == [("done", None)] * 3
    e.rollback(None)
    assert [r.status for r in e.state.phases] == ["rolled_back"] * 3


# ---- the fields that go with each status, set and cleared by the moves alone ------------------

WAITING_FIELDS = ("waiting_for", "waiting_since", "waiting_detail")


def waited(status: str, action: str | None = "enter") -> PhaseRecord:
    """A record carrying every field a status may leave behind."""
    phase = record(status, action)
    phase.waiting_for, phase.waiting_since, phase.waiting_detail = "the moon", "then", "seen"
    phase.error, phase.intent, phase.finished_at = "why", "call", "before"
    return phase


def test_entering_starts_a_fresh_attempt() -> None:
    phase = waited("failed")
    phase.kept = [{"kind": "k", "id": "i", "reason": "r"}]
    move(phase, "enter")
    assert phase.attempts == 1 and phase.started_at and phase.finished_at is None
    assert (phase.error, phase.kept) == (None, [])
    assert all(getattr(phase, f) is None for f in WAITING_FIELDS)


def test_waiting_records_what_is_waited_for_and_leaving_it_clears_that() -> None:
    phase = record("in_progress", "enter")
    move(phase, "wait", what="the moon")
    assert (phase.waiting_for, phase.waiting_detail) == ("the moon", None)
    assert phase.waiting_since
    move(phase, "stop_waiting")
    assert all(getattr(phase, f) is None for f in WAITING_FIELDS)


def test_needing_action_records_what_to_do() -> None:
    phase = record("in_progress", "enter")
    move(phase, "need_action", what="add the NS records at your registrar")
    assert phase.waiting_for == "add the NS records at your registrar"
    move(phase, "enter")
    assert phase.waiting_for is None


def test_failing_records_why() -> None:
    phase = waited("waiting")
    move(phase, "fail", why="AccessDenied (next: grant it)")
    assert (phase.status, phase.error) == ("failed", "AccessDenied (next: grant it)")
    assert all(getattr(phase, f) is None for f in WAITING_FIELDS)


@pytest.mark.parametrize(
    ("action", "trigger"), [("enter", "finish"), ("rollback", "finish_rollback")]
)
def test_finishing_records_when_and_clears_the_intent_and_action(action: str, trigger: str) -> None:
    phase = waited("in_progress", action)
    phase.error = None
    move(phase, trigger)
    assert phase.finished_at not in (None, "before")
    assert (phase.intent, phase.action, phase.error) == (None, None, None)
    assert all(getattr(phase, f) is None for f in WAITING_FIELDS)


def test_starting_a_rollback_clears_the_error() -> None:
    phase = waited("failed")
    move(phase, "start_rollback")
    assert (phase.error, phase.action) == (None, "rollback")
    assert all(getattr(phase, f) is None for f in WAITING_FIELDS)


def test_a_refused_move_changes_no_field() -> None:
    phase = waited("done", None)
    before = vars(phase).copy()
    with pytest.raises(IllegalMove):
        move(phase, "wait", what="the sun")
    assert vars(phase) == before


# The record's fields that only the lifecycle writes (orchestrator/lifecycle.py).
LIFECYCLE_FIELDS = {
    "status",
    "error",
    "waiting_for",
    "waiting_since",
    "waiting_detail",
    "intent",
    "finished_at",
    "action",
    "started_at",
}
ROOT = Path(__file__).resolve().parent.parent


def writes_of_lifecycle_fields(source: str) -> list[str]:
    """`x.field = ...` (or +=, or setattr(x, "field", ...)) for a lifecycle field, where x is
    not `self` (an exception's or a response's own `status` is not a phase record's)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in LIFECYCLE_FIELDS
        ):
            found.append(f"line {node.lineno}: setattr {node.args[1].value}")
        for target in targets:
            for part in ast.walk(target):
                if (
                    isinstance(part, ast.Attribute)
                    and part.attr in LIFECYCLE_FIELDS
                    and isinstance(part.ctx, ast.Store)
                    and not (isinstance(part.value, ast.Name) and part.value.id == "self")
                ):
                    found.append(f"line {part.lineno}: {ast.unparse(part)}")
    return found


def test_only_the_lifecycle_writes_a_records_status_and_its_fields() -> None:
    writers = {
        str(path.relative_to(ROOT)): writes
        for folder in ("orchestrator", "states")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "orchestrator" / "lifecycle.py"
        if (writes := writes_of_lifecycle_fields(path.read_text()))
    }
    assert writers == {}


def test_the_check_finds_a_direct_write() -> None:
    source = "def f(ctx):\n    ctx.record.status = 'done'\n    record.error, x = None, 1\n"
    assert writes_of_lifecycle_fields(source) == [
        "line 2: ctx.record.status",
        "line 3: record.error",
    ]
