"""What the command line asked for, read once from argparse's Namespace and never changed;
and the little a command learns as it runs (how it speaks, whose flags its hints carry,
where the state turned out to be), kept apart from it.

Plain classes rather than dataclasses: every command, `status` too, starts by reading its
invocation, and importing dataclasses (with the inspect module it loads) cost `status` a
fifth of its time."""

from __future__ import annotations

from orchestrator.cli.parser import DEFAULT_SANDBOX_DIR, DEFAULT_STATE
from orchestrator.hints import Flags

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from orchestrator.report import Reporter


class Session:
    """What a command learns as it runs: the reporter it speaks with (chosen as it starts,
    from the invocation), the flags its hints carry (the state file adds those it was made
    with), where the state is (the config's state.url may say), and the config file read."""

    report: Reporter

    def __init__(self, hints: Flags, state: str) -> None:
        self.hints = hints
        self.state = state
        self.config = ""  # the config file's path, once it is read


# Each command's own options, and what they are when the command has none of them (what its
# parser would give when absent), so that every command reads the same typed fields.
OPTIONS: dict[str, Any] = {
    "config": None,  # --config; None: config.yaml (or the sandbox world's)
    "state": DEFAULT_STATE,  # --state as given, else state.json
    "state_given": False,  # else the config's state.url wins over state.json
    "json": False,
    "verbose": False,
    "log_file": None,
    "lock_timeout": 0.0,
    "sandbox": False,
    "sandbox_dir": DEFAULT_SANDBOX_DIR,
    "until": None,
    "no_wait": False,
    "max_wait": None,
    "resume": False,
    "confirm": frozenset(),
    "allow_downgrade": False,  # run, resume, plan: a controller older than the one running
    "detailed_exitcode": False,  # plan: 0 no changes, 2 changes, 1 anything else
    "to": None,
    "all": False,
    "yes": False,
    "recorded_settings": False,
    "take_ownership": False,
    "from_setup_script": False,  # import: what the old setup script made
    "name": None,  # outputs NAME
    "action": "",  # state pull|push
    "file": "",  # state pull|push FILE
    "lock_id": "",
    "shell": "",  # completion bash|zsh|tcsh
    "arguments": (),  # the sandbox's own words
}


class Invocation:
    """One command as the user typed it, never changed once read."""

    command: str
    handler: str  # "module:function" in this package: only the command's module is loaded
    given: Flags  # the flags the user gave, before any default: what the hints carry
    session: Session
    config: str | None
    state: str
    state_given: bool
    json: bool
    verbose: bool
    log_file: str | None
    lock_timeout: float
    sandbox: bool
    sandbox_dir: str
    until: str | None
    no_wait: bool
    max_wait: float | None
    resume: bool
    confirm: frozenset[str]
    allow_downgrade: bool
    detailed_exitcode: bool
    to: str | None
    all: bool
    yes: bool
    recorded_settings: bool
    take_ownership: bool
    from_setup_script: bool
    name: str | None
    action: str
    file: str
    lock_id: str
    shell: str
    arguments: tuple[str, ...]

    def __init__(
        self, command: str, handler: str, given: Flags, session: Session, **options: Any
    ) -> None:
        # Every option the parser defines is a field: a new one left out fails here, loudly.
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"Invocation got unexpected options: {', '.join(unknown)}")
        fields = {"command": command, "handler": handler, "given": given, "session": session}
        for name, value in (fields | OPTIONS | options).items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError  # what a frozen dataclass raises

        raise FrozenInstanceError(f"an invocation is never changed: cannot assign to {name!r}")

    @property
    def report(self) -> Reporter:
        return self.session.report

    @property
    def hints(self) -> Flags:
        return self.session.hints

    @classmethod
    def read(cls, args: argparse.Namespace, extra: list[str]) -> Invocation:
        """The invocation argparse parsed; `extra`: the words after `sandbox`, its own."""
        given = dict(vars(args))
        # --config/--state may come before or after the command; neither sets a default.
        state_given = "state" in given
        state = given.pop("state", DEFAULT_STATE)
        flags = Flags(
            config=given.get("config"),
            state=state if state_given else None,
            sandbox=given.get("sandbox", False),
            sandbox_dir=_unless_default(given.get("sandbox_dir", DEFAULT_SANDBOX_DIR)),
        )
        given["confirm"] = frozenset(given.get("confirm", ()))
        given["arguments"] = tuple(given.get("arguments", ())) + tuple(extra)
        return cls(
            **given,
            given=flags,
            session=Session(flags, state),
            state=state,
            state_given=state_given,
        )


def _unless_default(sandbox_dir: str) -> str | None:
    return None if sandbox_dir == DEFAULT_SANDBOX_DIR else sandbox_dir
