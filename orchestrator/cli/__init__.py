"""Command line: `python -m orchestrator [--config PATH] [--state PATH] COMMAND`.

A package of small modules, each loaded only when its command runs, so that a command
pays at start-up only for what it uses (`status` reads a file; it imports no AWS code):
entry (main: parse, choose the reporter once, dispatch, how a command ended), parser (the
argparse definition, which builds the invoked command's options alone), invocation (what
was asked, read once and frozen), wiring (config, store, engine: what the working commands
share), working (run, resume, rollback, plan), importing (import), reading (status,
outputs, graph), render (status's lines and summary), state_moves (state pull/push,
force-unlock), completing (completion), world (sandbox).

Exit codes: 0 done; 1 a phase failed (state saved); 2 usage, config or state error
(nothing changed); 3 stopped while waiting or needing a human (resume later);
130 interrupted (state saved).
"""

from orchestrator.cli.entry import main
from orchestrator.cli.parser import duration, seconds, version

__all__ = ["duration", "main", "seconds", "version"]
