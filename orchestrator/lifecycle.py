"""A phase's lifecycle, declared once, and the only writer of a phase record's status and of
the fields that go with it.

Each phase's lifecycle (pending, in progress, waiting, needs action, done, failed, rolled
back) is one `transitions` machine, declared below (MOVES): every change of a phase's status
is a named move on it, and a move it does not declare raises IllegalMove. The fields that
belong to a status are set by the machine's callbacks as the move is made (entering waiting
records what is waited for, failing records why, finishing records when), and cleared by
the moves that leave it; the callers only name the move and give what it needs. What a
phase notes while it stays where it is (the call it is about to make, what a wait saw) goes
through the `note_*` functions here, so that this module is the record's only writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import EventData, Machine, MachineError, State

from orchestrator.store import PhaseRecord, PhaseStatus, now

PENDING, IN_PROGRESS, WAITING = PhaseStatus.PENDING, PhaseStatus.IN_PROGRESS, PhaseStatus.WAITING
NEEDS_ACTION, DONE, FAILED = PhaseStatus.NEEDS_ACTION, PhaseStatus.DONE, PhaseStatus.FAILED
ROLLED_BACK = PhaseStatus.ROLLED_BACK
UNTOUCHED = (PENDING, ROLLED_BACK)
TOUCHED = (IN_PROGRESS, WAITING, NEEDS_ACTION, DONE, FAILED)

# Every move a phase's status makes: (trigger, from, to). `in_progress` is shared by
# entering and rolling back; the record's `action` says which, and the moves proper to
# one check it (ONLY_WHILE), so a rollback never ends as done, nor an entry as rolled back.
# What a move needs is given as keyword arguments: `wait` and `need_action` what=, `fail` why=.
MOVES: list[tuple[str, list[PhaseStatus], PhaseStatus]] = [
    # forward: the first time, or again after a rollback
    ("enter", [PENDING, ROLLED_BACK], IN_PROGRESS),
    # resume: retry a failure, wait again, go on after a human acted, a crash or `import`
    ("enter", [FAILED, WAITING, NEEDS_ACTION, IN_PROGRESS], IN_PROGRESS),
    # verify found that a done phase no longer holds
    ("enter", [DONE], IN_PROGRESS),
    ("wait", [IN_PROGRESS], WAITING),
    ("stop_waiting", [WAITING], IN_PROGRESS),  # what was waited for came
    ("need_action", [IN_PROGRESS], NEEDS_ACTION),
    ("finish", [IN_PROGRESS], DONE),
    # a handler raised: while working, while waiting, or verifying a done phase
    ("fail", [IN_PROGRESS, WAITING, DONE], FAILED),
    # back: a phase this state file touched ...
    ("start_rollback", list(TOUCHED), IN_PROGRESS),
    # ... or, in the sweep of `rollback --all`, one whose resources the file did not list
    ("start_rollback", list(UNTOUCHED), IN_PROGRESS),
    ("finish_rollback", [IN_PROGRESS], ROLLED_BACK),
    # `import --take-ownership`: found resources, to be entered again or rolled back
    ("take_over", [PENDING], IN_PROGRESS),
]
# What the phase is doing after a move (the record's `action`); other moves keep it, so
# a failed or waiting phase still says whether it was being entered or rolled back.
ACTION_AFTER: dict[str, str | None] = {
    "enter": "enter",
    "start_rollback": "rollback",
    "take_over": "import",
    "finish": None,
    "finish_rollback": None,
}
# Moves made only while the phase does that work (its `action`).
ONLY_WHILE = {"finish": "enter", "need_action": "enter", "finish_rollback": "rollback"}
TARGET = {trigger: dest for trigger, _, dest in MOVES}
# The statuses that carry the waiting fields (what is waited for, since when, what it saw).
AWAITING = (WAITING, NEEDS_ACTION)


class IllegalMove(Exception):
    """A phase's status was asked to move where its lifecycle does not go: a bug."""

    def __init__(self, record: PhaseRecord, trigger: str) -> None:
        doing = f" (action {record.action})" if record.action else ""
        super().__init__(
            f"phase {record.name} cannot {trigger}: {record.status}{doing} -> "
            f"{TARGET.get(trigger, '?')} is not a move of its lifecycle"
        )
        self.phase, self.trigger = record.name, trigger
        self.source, self.dest = record.status, TARGET.get(trigger)


# ---- what a phase notes while it stays where it is -----------------------------------------


def note_intent(record: PhaseRecord, intent: str | None) -> None:
    """The mutating call the phase is about to make (None once made), for the operator."""
    record.intent = intent


def note_wait(record: PhaseRecord, what: str | None) -> None:
    """What the phase waits for, from now. Also for a wait that moves no status: a handler
    run for another phase (see PhaseContext.wait_until)."""
    record.waiting_for, record.waiting_since, record.waiting_detail = what, now(), None


def note_seen(record: PhaseRecord, detail: str | None) -> None:
    """What the current wait has observed (a controller's event, say)."""
    record.waiting_detail = detail


def note_interrupted(record: PhaseRecord) -> None:
    """Ctrl-C or SIGTERM stopped the phase where it was: its status stays, for resume."""
    record.error = "interrupted"


# ---- the machine ------------------------------------------------------------------------------


class _Moving:
    """The model the lifecycle machine moves: one phase record, for one move. Its callbacks
    are the only places a status's fields are set or cleared."""

    def __init__(self, record: PhaseRecord) -> None:
        self.record = record

    @property
    def status(self) -> str:
        # The plain value: transitions would take an Enum by its name.
        return PhaseStatus(self.record.status).value

    @status.setter
    def status(self, value: str) -> None:
        self.record.status = PhaseStatus(value)

    def doing_the_work(self, event: EventData) -> bool:
        return self.record.action == ONLY_WHILE[event.event.name]

    def note_action(self, event: EventData) -> None:
        self.record.action = ACTION_AFTER[event.event.name]

    # ---- entering a status

    def clear_waiting(self, event: EventData) -> None:
        # Only waiting and needs action carry them; every other status starts without.
        record = self.record
        record.waiting_for = record.waiting_since = record.waiting_detail = None

    def on_enter_waiting(self, event: EventData) -> None:
        note_wait(self.record, event.kwargs.get("what"))

    def on_enter_needs_action(self, event: EventData) -> None:
        self.record.waiting_for = event.kwargs.get("what")

    def on_enter_failed(self, event: EventData) -> None:
        self.record.error = event.kwargs.get("why")

    def finished(self, event: EventData) -> None:
        """Done or rolled back: when, and no call is about to be made."""
        self.record.intent = None
        self.record.finished_at = now()

    # ---- moves with fields of their own

    def new_attempt(self, event: EventData) -> None:
        """Entering starts a fresh attempt: its start, no error, nothing kept from before."""
        record = self.record
        record.attempts += 1
        record.started_at, record.finished_at = now(), None
        record.kept = []
        record.error = None

    def clear_error(self, event: EventData) -> None:
        self.record.error = None


Callbacks = list[str | Callable[..., bool | None]]  # _Moving's methods, by name

# What entering a status sets (the waiting fields are cleared on entering any other).
ON_ENTER: dict[PhaseStatus, Callbacks] = {
    WAITING: ["on_enter_waiting"],
    NEEDS_ACTION: ["on_enter_needs_action"],
    FAILED: ["on_enter_failed"],
    DONE: ["finished"],
    ROLLED_BACK: ["finished"],
}
# What a move sets of its own, besides what the status it enters does.
AFTER_MOVE: dict[str, Callbacks] = {"enter": ["new_attempt"], "start_rollback": ["clear_error"]}


def _state(status: PhaseStatus) -> State:
    clearing: Callbacks = [] if status in AWAITING else ["clear_waiting"]
    return State(status.value, on_enter=clearing + ON_ENTER.get(status, []))


def _declare() -> Machine:
    machine = Machine(
        model=None,
        states=[_state(s) for s in PhaseStatus],
        initial=None,
        auto_transitions=False,
        model_attribute="status",
        send_event=True,
    )
    for trigger, sources, dest in MOVES:
        after = AFTER_MOVE.get(trigger, []) + (["note_action"] if trigger in ACTION_AFTER else [])
        machine.add_transition(
            trigger,
            [s.value for s in sources],
            dest.value,
            conditions="doing_the_work" if trigger in ONLY_WHILE else None,
            after=after or None,
        )
    return machine


LIFECYCLE = _declare()


def move(record: PhaseRecord, trigger: str, **given: Any) -> None:
    """Move `record` along its lifecycle by `trigger`, or raise IllegalMove. `given`: what
    the move needs (see MOVES)."""
    model = _Moving(record)
    LIFECYCLE.add_model(model, initial=PhaseStatus(record.status).value)
    try:
        moved = LIFECYCLE.events[trigger].trigger(model, **given)
    except MachineError:
        moved = False
    finally:
        LIFECYCLE.remove_model(model)
    if not moved:
        raise IllegalMove(record, trigger)
