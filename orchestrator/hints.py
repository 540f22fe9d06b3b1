"""Hints that work as printed: every backticked `orchestrator COMMAND ...` the CLI prints
carries the user's own --config, --state and --sandbox/--sandbox-dir.

The messages that name a next command (about fifty, across the engine, the AWS layer and
the phases) are written plainly, as "`orchestrator resume`"; this is the one place that
completes them. Run bare, `orchestrator resume` would read another config and state file
than the command that printed it.

A state file records the flags of the command that made it (`made_with`); a command that
reads the state only (`status`, `outputs`) is given none of `run`'s flags, and completes
its hints with those.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any, TextIO

# A backticked command: `orchestrator resume --confirm delegation`.
COMMAND = re.compile(r"`orchestrator ([a-z][a-z-]*)([^`\n]*)`")
# Commands that read the config (and so take --config and the sandbox's flags).
WITH_CONFIG = frozenset({"run", "resume", "rollback", "import"})
# Commands that read the state file.
WITH_STATE = WITH_CONFIG | {"status", "outputs", "graph"}


class Flags:
    """The global flags the user gave (None or False: not given). A plain class, compared by
    value: every command reads them as it starts, and importing dataclasses (with the
    inspect module it loads) cost `status` a fifth of its time."""

    def __init__(
        self,
        config: str | None = None,
        state: str | None = None,
        sandbox: bool = False,
        sandbox_dir: str | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.sandbox = sandbox
        self.sandbox_dir = sandbox_dir

    def __eq__(self, other: object) -> bool:
        return type(other) is Flags and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(tuple(vars(self).values()))

    def __repr__(self) -> str:
        return f"Flags({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def record(self) -> dict[str, Any]:
        """These flags as a state file keeps them (`made_with`)."""
        return {
            "config": self.config,
            "state": self.state,
            "sandbox": self.sandbox,
            "sandbox_dir": self.sandbox_dir,
        }

    @classmethod
    def recorded(cls, made_with: dict[str, Any] | None) -> Flags:
        """The flags a state file says it was made with (none, for a file from before)."""
        return cls(**(made_with or {}))

    def or_made_with(self, made: Flags) -> Flags:
        """These flags, completed by those the state was made with: a command that reads
        the state only (`status`) is given none of `run`'s, yet its hints name `run`. What
        the user gave wins; --state is not taken from the record, since the state was read
        from where it is now (given, the default, or the config's state.url)."""
        sandbox_dir = self.sandbox_dir if self.sandbox else made.sandbox_dir
        return Flags(
            config=self.config if self.config is not None else made.config,
            state=self.state,
            sandbox=self.sandbox or made.sandbox,
            sandbox_dir=sandbox_dir,
        )

    def for_command(self, command: str, present: str = "") -> list[str]:
        """The flags `orchestrator COMMAND` needs to act as the user's command did; not
        those the hint already names (in `present`)."""
        wanted: list[tuple[str, str | None]] = []
        if command in WITH_CONFIG and self.config is not None:
            wanted.append(("--config", self.config))
        if command in WITH_STATE and self.state is not None:
            wanted.append(("--state", self.state))
        if command in WITH_CONFIG and self.sandbox:
            wanted.append(("--sandbox", None))
            if self.sandbox_dir is not None:
                wanted.append(("--sandbox-dir", self.sandbox_dir))
        given = set(shlex.split(present))
        words: list[str] = []
        for flag, value in wanted:
            if flag not in given:
                words += [flag] if value is None else [flag, value]
        return words

    def rewrite(self, text: str) -> str:
        """`text` with every backticked orchestrator command completed by these flags."""
        return COMMAND.sub(self._complete, text)

    def _complete(self, match: re.Match[str]) -> str:
        command, rest = match.group(1), match.group(2)
        try:
            extra = self.for_command(command, rest)
        except ValueError:  # not a command line after all (unbalanced quotes): leave it
            return match.group(0)
        added = "".join(f" {shlex.quote(word)}" for word in extra)
        return f"`orchestrator {command}{rest}{added}`"


class HintStream:
    """A text stream that completes the hints written to it; all else passes through.
    `flags` is asked at each write: a command learns more of them once it has read the
    state (what it was made with)."""

    def __init__(self, stream: TextIO, flags: Callable[[], Flags]) -> None:
        self._stream = stream
        self._flags = flags

    def write(self, text: str) -> int:
        self._stream.write(self._flags().rewrite(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def rewriting(flags: Callable[[], Flags], *, stdout: bool = True) -> Iterator[None]:
    """Complete hints on stderr (and stdout, unless it carries JSON: data, kept as it is)
    while the block runs."""
    out, err = sys.stdout, sys.stderr
    if stdout:
        sys.stdout = HintStream(out, flags)
    sys.stderr = HintStream(err, flags)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
