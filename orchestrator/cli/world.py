"""sandbox: the embedded world, a distribution of its own, found by its entry point."""

from __future__ import annotations

from orchestrator.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any

    from orchestrator.cli.invocation import Invocation

SANDBOX_ENTRY_POINTS = "orchestrator.sandbox"


SANDBOX_PACKAGE = "kubeflow-alb-sandbox"


def sandbox_world() -> Any:
    """The sandbox world, a distribution of its own that production installs do not carry;
    found through its entry point, so that nothing here imports it."""
    from importlib.metadata import entry_points

    found = entry_points(group=SANDBOX_ENTRY_POINTS, name="world")
    if not found:
        raise UsageError(
            f"the sandbox world is not installed: pip install {SANDBOX_PACKAGE} "
            "(in a checkout of this repository: pip install -e ./kube-api-emulator -e ./sandbox)"
        )
    return next(iter(found)).load()


def _sandbox(invocation: Invocation) -> int:
    from orchestrator.startup import loading

    with loading():  # tens of milliseconds of imports, with nothing yet to undo
        world = sandbox_world()
    return int(world.main(list(invocation.arguments), prog="orchestrator sandbox"))
