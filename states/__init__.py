"""The provisioning phases, one module each, in the order they run.

Each module holds one Phase class whose `name` is the module's name. PHASES is the one
declaration of which phases there are and their order.

Certificate validation is the longest wait: `certificates` only requests them, and
`certificates_issued` waits after the IAM and controller phases, so the two overlap.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:  # the engine's import, not `status`'s: phase_names must stay cheap
    from orchestrator.phase import Phase

PHASES = (
    "preflight",
    "hosted_zone",
    "delegation",
    "certificates",
    "controller_iam",
    "subnet_tags",
    "controller",
    "certificates_issued",
    "ingress",
    "load_balancer",
    "dns_record",
    "endpoint",
)


def phase_names() -> list[str]:
    """The phase names in run order, without importing the phases (fast, for `status`)."""
    return list(PHASES)


def all_phases() -> list[Phase]:
    return [phase_class(name)() for name in PHASES]


def phase_class(name: str) -> type[Phase]:
    """The Phase class of module `name`: the one whose `name` is the module's."""
    from orchestrator.phase import Phase

    module = importlib.import_module(f"{__name__}.{name}")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Phase) and vars(value).get("name") == name
    ]
    if len(found) != 1:
        raise ImportError(f"module {module.__name__} must define one Phase named {name!r}")
    return found[0]
