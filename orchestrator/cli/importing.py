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

    if invocation.json and not invocation.from_setup_script:
        raise UsageError("import --json: only with --from-setup-script")
    config, phases, store = _prepare(invocation)
    if invocation.from_setup_script:
        return _import_setup_script(invocation, config, phases, store)
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
    from orchestrator.ownership import describe_identity

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
    _record(store, state, found)
    print(
        f"wrote {store.path}: `orchestrator run` checks and completes the deployment, "
        "`orchestrator rollback --all` removes it"
    )
    return ExitCode.OK


def _record(store: Any, state: Any, found: list[Any]) -> None:
    """Write the state file: each find in its phase's record, as that phase records what it
    made, and each of those phases where a crash would have left it."""
    from orchestrator.machine import move
    from orchestrator.store import Resource

    for item in found:
        record = state.phase(item.phase)
        record.resources.append(Resource(item.kind, item.id, created=True, detail=item.detail))
    for phase in dict.fromkeys(item.phase for item in found):
        # Entered again by the next run (which finds each of these as its own), or rolled
        # back by `rollback`, as a phase a crash interrupted would be.
        move(state.phase(phase), "take_over")
    store.save(state)


def _import_setup_script(invocation: Invocation, config: Any, phases: list[Any], store: Any) -> int:
    """What the old setup script made: found from its config's written-back keys and its
    naming rules, each checked and shown; with --take-ownership the matches are recorded
    in a new state file, then marked as this deployment's. Without it, every write is
    refused, as in plan, and nothing is written."""
    from orchestrator import setup_script
    from orchestrator.config import written_back
    from orchestrator.machine import PhaseFailed
    from orchestrator.store import new_state

    old = setup_script.old_setup(config, written_back(invocation.session.config))
    with store.locked("import", invocation.lock_timeout) as note:
        if note:
            print(note, file=sys.stderr)
        if store.exists():
            raise UsageError(
                f"{store.path} exists: `import --from-setup-script` starts a deployment's state "
                "file from what the old script made. Use that one, or move it away first"
            )
        state = new_state(config.deployment_id, config.settings(), [p.name for p in phases])
        engine = _engine(invocation, config, phases, store, state)
        try:
            findings = take_over_setup_script(engine, old, invocation.take_ownership)
        except PhaseFailed as failure:
            engine.report.failed(failure.phase, failure.message, failure.hint)
            return ExitCode.PHASE_FAILED
    _show_setup_script(invocation, store, state, findings)
    return ExitCode.OK


def take_over_setup_script(engine: Any, old: Any, take_ownership: bool) -> list[Any]:
    """Every finding, each read with writes refused; with `take_ownership`, the matches are
    written into the engine's state file, then marked (state first: a crash between leaves
    a state whose rollback reads each mark, finds none, and deletes nothing)."""
    from orchestrator import setup_script
    from orchestrator.calls import read_only

    with read_only("import --from-setup-script"):
        findings: list[Any] = engine.look(lambda ctx: setup_script.survey(ctx, old))
    taken = [f for f in findings if f.matches]
    if not take_ownership or not taken:
        return findings
    engine.refuse_other_owners()  # a take-over done before: `import` rebuilds its state
    _record(engine.store, engine.state, [found for f in taken for found in f.found])
    for finding in taken:
        if finding.mark is not None:
            engine.look(lambda ctx, mark=finding.mark: mark())
    return findings


def _show_setup_script(invocation: Invocation, store: Any, state: Any, findings: list[Any]) -> None:
    """A line per finding (what, status, why, what is done with it), or one JSON object."""
    import json

    written = invocation.take_ownership and any(f.matches for f in findings)
    if invocation.json:
        print(
            json.dumps(
                {
                    "deployment": state.deployment,
                    "findings": [f.as_json() for f in findings],
                    "taken_over": bool(written),
                    "state": str(store.path) if written else None,
                }
            )
        )
        return
    print(f"what the old setup script made, for deployment {state.deployment}:")
    width = max(len(f.what) for f in findings)
    print(f"  {'WHAT':<{width}}  {'STATUS':<9} ID: WHY; WHAT IS DONE WITH IT")
    for f in findings:
        then = f"; {f.action}" if f.action else ""
        print(f"  {f.what:<{width}}  {f.status:<9} {f.id}: {f.why}{then}")
    if not invocation.take_ownership:
        print(
            "nothing written. `orchestrator import --from-setup-script --take-ownership` marks "
            f"what matches as this deployment's and writes {store.path}; the rest is left alone"
        )
    elif written:
        print(
            f"wrote {store.path}: `orchestrator run` completes the deployment from there, "
            "`orchestrator rollback --all` removes it"
        )
    else:
        print("nothing matches: nothing marked, no state file written")
