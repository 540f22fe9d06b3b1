"""completion: a shell completion script drawn from the parser itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.cli.parser import _parser
from orchestrator.errors import ExitCode

if TYPE_CHECKING:
    from orchestrator.cli.invocation import Invocation


def _completion(invocation: Invocation) -> int:
    from orchestrator.completion import script

    print(script(_parser(for_completion=True), invocation.shell))
    return ExitCode.OK
