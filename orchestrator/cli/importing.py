"""import: show what carries the deployment's marks; rebuild a lost state file from it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from orchestrator.cli.wiring import _engine, _prepare
from orchestrator.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from orchestrator.cli.invocation import Invocation


def _import(invocation: Invocation) -> int:
    from orchestrator.machine import PhaseFailed
    from orchestrator.store import new_state

    config, phases, store = _prepare(invocation)
    with store.locked("import", invocation.lock_timeout) as note:
        if note:
            print(note, file=sys.stderr)
        if store.exists():
            raise UsageError(
                f"{store.path} exists: `import` rebuilds a lost state file. Use that one, or "
                "move it away first"
            )
        state = new_state(config.deployment_id, config.settings(), [p.name for p in phases])
        engine = _engine(invocation, config, phases, store, state)
        try:
            found = engine.look(engine.inventory.find)
        except PhaseFailed as failure:
            engine.report.failed(failure.phase, failure.message, failure.hint)
            return ExitCode.PHASE_FAILED
        return _take_over(invocation, store, state, found)


def _take_over(invocation: Invocation, store: Any, state: Any, found: list[Any]) -> int:
    """Show what `import` found; with --take-ownership, write it as the new state file."""
    from orchestrator import inventory
    from orchestrator.machine import move
    from orchestrator.ownership import describe_identity
    from orchestrator.store import Resource

    if not found:
        print(f"nothing carries the marks of deployment {state.deployment}; nothing to import")
        return ExitCode.OK
    found, kept_by_others = inventory.for_import(found)
    for item in kept_by_others:
        print(
            f"not imported: {item.describe()}, shared, made by "
            f"{describe_identity(item.identity or '')} and kept by its rollback: used as it is"
        )
    identities = {f.identity for f in found}
    named = sorted(i for i in identities if i)
    if len(named) > 1:
        raise UsageError(
            f"deployment {state.deployment} has resources made by several state files "
            f"({', '.join(named)}); import rebuilds one: run with the state file that exists, "
            "or roll each back"
        )
    print(f"found of deployment {state.deployment}:")
    for item in found:
        print(f"  {item.phase:<15} {item.describe()}")
    if not invocation.take_ownership:
        print(
            f"nothing written. `orchestrator import --take-ownership` writes {store.path}, "
            "which then owns all of this: only do it if the state file that made it is lost "
            "(two state files would both own the deployment)"
        )
        return ExitCode.OK
    if named:
        state.identity = named[0]  # the lost file's identity: its marks are ours again
    state.pre_identity = None in identities
    for item in found:
        record = state.phase(item.phase)
        record.resources.append(Resource(item.kind, item.id, created=True, detail=item.detail))
    for phase in dict.fromkeys(item.phase for item in found):
        # Entered again by the next run (which finds each of these as its own), or rolled
        # back by `rollback`, as a phase a crash interrupted would be.
        move(state.phase(phase), "take_over")
    store.save(state)
    print(
        f"wrote {store.path}: `orchestrator run` checks and completes the deployment, "
        "`orchestrator rollback --all` removes it"
    )
    return ExitCode.OK
