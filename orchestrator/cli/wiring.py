"""What the working commands share: the config, the state store, the state, the engine."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from orchestrator.cli.parser import DEFAULT_CONFIG
from orchestrator.cli.world import sandbox_world
from orchestrator.errors import UsageError
from orchestrator.hints import Flags

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any

    from orchestrator.cli.invocation import Invocation
    from orchestrator.store import Store


def _prepare(invocation: Invocation) -> tuple[Any, list[Any], Any]:
    """Sandbox environment, config and phases: everything checked before any AWS call."""
    from orchestrator.config import check_kube_context, load_config
    from orchestrator.states import all_phases

    path = invocation.config
    if invocation.sandbox:
        world_config = sandbox_world().use(Path(invocation.sandbox_dir))
        path = path or str(world_config)
    invocation.session.config = path = path or DEFAULT_CONFIG
    try:
        config = load_config(path)
    except UsageError as error:
        raise UsageError(f"{error}{_sandbox_hint(invocation)}") from None
    check_kube_context(config)
    if not invocation.state_given and config.state_url:
        invocation.session.state = config.state_url
    return config, all_phases(), state_store(invocation.session.state, config.state_kms_key)


def state_store(location: str, kms_key: str | None = None) -> Any:
    """The store for `--state`: a local file, or an object in S3 (`s3://BUCKET/KEY`, shared
    by a team, locked with S3's conditional writes). S3's code (and boto3) is imported only
    for an S3 state, so `status` on a local file stays quick."""
    from orchestrator.store import StateStore, is_s3, looks_like_s3

    if looks_like_s3(location):
        raise UsageError(f"{location}: not an S3 location; write s3://BUCKET/KEY")
    if is_s3(location):
        from orchestrator.s3store import S3StateStore

        store = S3StateStore(location, kms_key=kms_key)
        store.check()
        return store
    return StateStore(location)


def _sandbox_hint(invocation: Invocation) -> str:
    """After `run --sandbox`, a bare `resume` finds no config.yaml: point at the world
    the state was made on (it says so), or at one that is there."""
    if invocation.config is not None or invocation.sandbox:
        return ""
    made = _recorded_flags(invocation.state)
    if made.sandbox:
        words = ["--sandbox"] + (["--sandbox-dir", made.sandbox_dir] if made.sandbox_dir else [])
        return f"; {invocation.state} was made on the sandbox world: add {shlex.join(words)}"
    world_config = Path(invocation.sandbox_dir) / "config.yaml"
    if Path(DEFAULT_CONFIG).exists() or not world_config.exists():
        return ""
    return f"; a sandbox world is in {invocation.sandbox_dir}: add --sandbox to use it"


def _recorded_flags(location: str) -> Flags:
    """The flags the local state file at `location` was made with, as far as it says."""
    from orchestrator.states import phase_names
    from orchestrator.store import StateStore, is_s3

    store = StateStore(location)
    if is_s3(location) or not store.exists():
        return Flags()
    try:
        return Flags.recorded(store.load(phase_names()).made_with)
    except UsageError:  # not a state file we can read: its own command will say so
        return Flags()


def _engine(
    invocation: Invocation,
    config: Any,
    phases: list[Any],
    store: Store,
    state: Any,
    confirmations: frozenset[str] = frozenset(),
) -> Any:
    from orchestrator.aws import Aws
    from orchestrator.inventory import Inventory
    from orchestrator.machine import Engine
    from orchestrator.waiting import WaitPolicy

    report = invocation.report
    if state.made_with is None:  # a new state (or one from before): saved with what made it
        state.made_with = invocation.hints.record()

    def on_retry(error: Any, attempt: int) -> None:
        report.info(f"{retry_reason(error)}; retrying (attempt {attempt})")

    policy = WaitPolicy.from_args(invocation.no_wait, invocation.max_wait)
    return Engine(
        phases,
        state,
        store,
        config,
        report,
        policy,
        confirmations,
        aws_factory=lambda: Aws(config.region, on_retry=on_retry),
        kube_factory=lambda: _kube(config),
        inventory=Inventory(phases),
        allow_downgrade=invocation.allow_downgrade,
    )


def retry_reason(error: Any) -> str:
    """Why a call is tried again: what AWS answered, or that it could not be reached (then
    AWS said nothing)."""
    what = f"{error.service} {error.operation}"
    if error.code == "ConnectionError":
        return f"could not reach AWS for {what} ({error.message})"
    return f"AWS answered {error.code} to {what}"


def _kube(config: Any) -> Any:
    from orchestrator.kube import Kube

    return Kube(context=config.kube_context)


def _load_state(
    store: Any,
    config: Any,
    phases: list[Any],
    *,
    must_exist: bool,
    say: Callable[[str], None] | None = None,
) -> Any:
    from orchestrator.machine import check_state, repoint
    from orchestrator.store import new_state

    names = [p.name for p in phases]
    if not store.exists():
        if must_exist:
            raise UsageError(
                f"no state file at {store.path}: nothing to resume; start with `orchestrator run`"
            )
        return new_state(config.deployment_id, config.settings(), names)
    state = store.load(names)
    # A state made for a config mistake (a wrong region, a mistyped cluster) that holds
    # nothing follows the corrected config; one that holds something is refused.
    repointed = repoint(state, config, store.path)
    if repointed and say is not None:
        say(repointed)
    check_state(state, config, phases, store.path)
    return state


def _state_location(invocation: Invocation) -> tuple[str, str | None]:
    """Where the state is, for the commands that do not otherwise read the config: --state
    if given, else the config's state block (the config is parsed only when it has one,
    so that `status` stays quick), else state.json; and the S3 state's KMS key."""
    path = Path(invocation.config or DEFAULT_CONFIG)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if not re.search(r"(?m)^state\s*:", text):
        return invocation.state, None
    from orchestrator.config import load_config

    config = load_config(path)
    if invocation.state_given or not config.state_url:
        return invocation.state, config.state_kms_key
    return config.state_url, config.state_kms_key
