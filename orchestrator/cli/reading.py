"""status, outputs and graph: they read the state file only (no lock, no config, no AWS)."""

from __future__ import annotations

import json
import sys

from orchestrator.cli.render import _kept_by_reason, _output_lines, _phase_summary, status_summary
from orchestrator.cli.wiring import _state_location, state_store
from orchestrator.errors import ExitCode, UsageError
from orchestrator.hints import Flags
from orchestrator.store import ROLLBACK_ALL

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any

    from orchestrator.cli.invocation import Invocation


def _read_state(invocation: Invocation) -> tuple[Any, Any]:
    """The state store and its state, for the commands that only read it (no lock, no
    config)."""
    from orchestrator.states import phase_names

    store = state_store(*_state_location(invocation))
    if not store.exists():
        # In S3, also whether the key's prefix holds anything at all (a mistyped key).
        prefix = store.missing_prefix() if hasattr(store, "missing_prefix") else None
        elsewhere = f" (nothing at all is under {prefix}: is the key right?)" if prefix else ""
        raise UsageError(f"no state file at {store.path}: nothing has run yet{elsewhere}")
    state = store.load(phase_names())
    # Its hints name `run` and `resume`: with the flags the state was made with.
    invocation.session.hints = invocation.hints.or_made_with(Flags.recorded(state.made_with))
    return store, state


def _status(invocation: Invocation) -> int:
    from orchestrator.store import elapsed_since

    store, state = _read_state(invocation)
    phases = [_phase_summary(record) for record in state.phases]
    code, summary = status_summary(state)
    if invocation.json:
        # JSON is left as it is printed (data); its summary is a line for people.
        summary = invocation.hints.rewrite(summary)
        report = {"deployment": state.deployment, "phases": phases, "summary": summary}
        print(json.dumps(report, indent=2))
        return code
    print(f"deployment {state.deployment} (state: {store.path}, updated {state.updated_at})")
    if state.rollback_to:
        target = "--all" if state.rollback_to == ROLLBACK_ALL else f"--to {state.rollback_to}"
        print(f"a rollback {target} was interrupted; `orchestrator resume` finishes it")
    width = max(len(record.name) for record in state.phases)
    pad = f"  {'':<{width}}  "
    for record, summary_of in zip(state.phases, phases, strict=True):
        line = f"  {record.name:<{width}}  {record.status}"
        if summary_of["waiting_for"]:
            since = elapsed_since(record.waiting_since)
            line += f": {summary_of['waiting_for']}" + (f" ({since:.0f}s)" if since else "")
        print(line)
        if summary_of["error"]:
            print(f"{pad}error: {summary_of['error']}")
        for key, value in summary_of["outputs"].items():
            for shown in _output_lines(key, value):
                print(f"{pad}{shown}")
        for reason, names in _kept_by_reason(summary_of["kept"]).items():
            print(f"{pad}kept {', '.join(names)}: {reason}")
    print(summary)
    return code


def _outputs(invocation: Invocation) -> int:
    from orchestrator import outputs

    _, state = _read_state(invocation)
    found = outputs.collect(state)
    if invocation.name is None:
        return _all_outputs(found, invocation.json)
    if invocation.name not in found:
        raise UsageError(
            f"no output named {invocation.name!r}; the outputs are: {', '.join(found)}"
        )
    value = found[invocation.name]
    if value is None:
        phase = outputs.KNOWN[invocation.name][0]
        print(
            f"{invocation.name} is not known yet: phase {phase} is {state.phase(phase).status}",
            file=sys.stderr,
        )
        return ExitCode.WAITING
    if invocation.json:
        print(json.dumps(value))
    else:
        print("\n".join(str(v) for v in value) if isinstance(value, list) else value)
    return ExitCode.OK


def _all_outputs(found: dict[str, Any], as_json: bool) -> int:
    from orchestrator.outputs import lines

    if as_json:
        print(json.dumps(found, indent=2))
        return ExitCode.OK
    present = {name: value for name, value in found.items() if value is not None}
    if not present:
        print("no outputs yet: no phase that records one is done (`orchestrator status`)")
        return ExitCode.OK
    width = max(len(name) for name in present)
    for name, value in present.items():
        print("\n".join(lines(name, value, width)))
    return ExitCode.OK


def _graph(invocation: Invocation) -> int:
    from orchestrator.graph import render
    from orchestrator.states import phase_names

    names = phase_names()
    store = state_store(*_state_location(invocation))
    state = store.load(names) if store.exists() else None
    source = f"state: {store.path}" if state else f"no state file at {store.path}"
    print(render(names, state, source))
    return ExitCode.OK
