"""state pull / push between S3 and a local file, and force-unlock of the S3 lock."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from orchestrator.cli.wiring import _state_location, state_store
from orchestrator.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from orchestrator.cli.invocation import Invocation


def _move_state(invocation: Invocation) -> int:
    """`state pull|push FILE`: a state between S3 and a local file, never over another,
    and never two live copies: push leaves a pointer to S3 in FILE, pull a snapshot."""
    from orchestrator.store import StateStore, is_s3

    location, kms_key = _state_location(invocation)
    if not is_s3(location):
        raise UsageError(
            "`state pull` and `state push` need a state in S3: --state s3://BUCKET/KEY, or "
            "state.url in the config"
        )
    remote, local = state_store(location, kms_key), StateStore(invocation.file)
    local.check_path()
    if invocation.action == "pull":
        return _pull_state(remote, local)
    return _push_state(remote, local, invocation.lock_timeout)


def _pull_state(remote: Any, local: Any) -> int:
    """A snapshot of the state in S3 in a local file: read without the lock, as `status`
    reads, and written as a snapshot no command works on (so no lock file either)."""
    from orchestrator.states import phase_names
    from orchestrator.store import SNAPSHOT_OF

    marker = local.marker()
    if local.exists() and marker is None:
        raise UsageError(
            f"{local.path} is a live state file: nothing was copied. Push it "
            f"(`state push {local.path}`), or pull into another file"
        )
    if marker is not None and marker[1] != remote.path:
        raise UsageError(
            f"{local.path} stands for the state at {marker[1]}, not {remote.path}: nothing "
            "was copied; pull into another file"
        )
    if not remote.exists():
        raise UsageError(f"no state at {remote.path}: nothing to pull")
    state = remote.load(phase_names())
    local.write_marker(SNAPSHOT_OF, remote.path, state)
    print(
        f"copied deployment {state.deployment} from {remote.path} to {local.path}, a "
        f"snapshot to read: commands refuse to work on it unless it is pushed back"
    )
    return ExitCode.OK


def _push_state(remote: Any, local: Any, wait: float) -> int:
    """The local state into S3, under both locks; the local file then points to S3, so
    that no command works on it any more (one state, one live copy)."""
    from orchestrator.store import MOVED_TO, SNAPSHOT_OF

    marker = local.marker()
    if marker is not None and marker[0] == MOVED_TO:
        local.refuse_if_not_live()
    if not local.exists():
        raise UsageError(f"no state at {local.path}: nothing to push")
    # A live file is locked against a local command; a snapshot no command works on.
    holding = local.locked("state push", wait) if marker is None else contextlib.nullcontext()
    with holding, remote.locked("state push", wait) as note:
        if note:
            print(note)
        state = _pushed(remote, local, marker is not None and marker[0] == SNAPSHOT_OF)
        local.write_marker(MOVED_TO, remote.path, state)
        local.remove_lock_file()
    print(
        f"moved deployment {state.deployment} from {local.path} to {remote.path}; "
        f"{local.path} now only points there"
    )
    return ExitCode.OK


def _pushed(remote: Any, local: Any, snapshot: bool) -> Any:
    """Write the local state to S3, unless S3 holds another, or a newer one of this state
    than a snapshot pulled earlier."""
    from orchestrator.states import phase_names

    names = phase_names()
    state = local.load(names)
    if remote.exists():
        there = remote.load(names)
        _refuse_other_state(there, state, remote.path)
        if snapshot and there.revision > state.revision:
            raise UsageError(
                f"{remote.path} has moved on since {local.path} was pulled (revision "
                f"{there.revision}, the snapshot has {state.revision}): nothing was copied"
            )
    remote.save(state)
    return state


def _force_unlock(invocation: Invocation) -> int:
    """Break the S3 lock whose ID is given, as Terraform's force-unlock does."""
    from orchestrator.store import is_s3

    location, kms_key = _state_location(invocation)
    if not is_s3(location):
        raise UsageError(
            f"{location} is a local state: its lock is the kernel's, released when its holder "
            "dies, so there is nothing to break"
        )
    print(state_store(location, kms_key).force_unlock(invocation.lock_id))
    return ExitCode.OK


def _refuse_other_state(there: Any, coming: Any, where: object) -> None:
    if there.deployment != coming.deployment:
        raise UsageError(
            f"{where} holds deployment {there.deployment}, not {coming.deployment}: "
            "nothing was copied; choose another key or file"
        )
    if there.identity != coming.identity:
        raise UsageError(
            f"{where} holds another state file of deployment {there.deployment} (identity "
            f"{there.identity}, not {coming.identity}); its resources carry that one's "
            "identity, so nothing was copied"
        )
