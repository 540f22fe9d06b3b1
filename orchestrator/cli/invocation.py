"""What the command line asked for, read once from argparse's Namespace and never changed;
and the little a command learns as it runs (how it speaks, whose flags its hints carry,
where the state turned out to be), kept apart from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.cli.parser import DEFAULT_SANDBOX_DIR, DEFAULT_STATE
from orchestrator.hints import Flags

if TYPE_CHECKING:
    from orchestrator.report import Reporter


@dataclass
class Session:
    """What a command learns as it runs: the reporter it speaks with (plain until a working
    command has asked its question), the flags its hints carry (the state file adds those
    it was made with), and where the state is (the config's state.url may say)."""

    hints: Flags
    state: str
    report: Reporter = field(init=False)


@dataclass(frozen=True)
class Invocation:
    """One command as the user typed it. Each command's own options default to what its
    parser would give when absent, so every command reads the same typed fields."""

    command: str
    handler: str  # "module:function" in this package: only the command's module is loaded
    given: Flags  # the flags the user gave, before any default: what the hints carry
    session: Session
    config: str | None = None  # --config; None: config.yaml (or the sandbox world's)
    state: str = DEFAULT_STATE  # --state as given, else state.json
    state_given: bool = False  # else the config's state.url wins over state.json
    json: bool = False
    verbose: bool = False
    log_file: str | None = None
    lock_timeout: float = 0.0
    sandbox: bool = False
    sandbox_dir: str = DEFAULT_SANDBOX_DIR
    until: str | None = None
    no_wait: bool = False
    max_wait: float | None = None
    resume: bool = False
    confirm: frozenset[str] = frozenset()
    to: str | None = None
    all: bool = False
    yes: bool = False
    recorded_settings: bool = False
    take_ownership: bool = False
    name: str | None = None  # outputs NAME
    action: str = ""  # state pull|push
    file: str = ""  # state pull|push FILE
    lock_id: str = ""
    shell: str = ""  # completion bash|zsh|tcsh
    arguments: tuple[str, ...] = ()  # the sandbox's own words

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
        # Every option the parser defines is a field: a new one left out fails here, loudly.
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
