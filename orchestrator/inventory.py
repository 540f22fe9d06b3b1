"""What exists of a deployment, found by its tags and labels rather than by a state file.

Three commands need it. A `run` from a new state file first looks for resources of the
same deployment made by another state file, and refuses to go on beside them. `import`
rebuilds a lost state file from what it finds. `rollback --all` ends with a sweep: what
still carries the deployment's and this state file's marks is rolled back too, whatever
the state file said.

Each phase knows what it makes and how to find it by its marks (`Phase.marked`); this
module asks the phases it is given, in their order, and judges whose the finds are. Each
find is recorded the way its phase records it, so the phase's own rollback handles a found
resource as one it made: with every check of ownership and sharing it applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.aws import tolerate
from orchestrator.kube import KubeError
from orchestrator.ownership import describe_identity
from orchestrator.phase import Found, Phase, PhaseContext, Search

__all__ = ["Found", "Inventory", "by_other_owners", "for_import", "ours", "summary"]


class Inventory:
    """The search by marks over a deployment's phases (the engine's `inventory`)."""

    def __init__(self, phases: Sequence[Phase]) -> None:
        self.phases = list(phases)

    def find(self, ctx: PhaseContext) -> list[Found]:
        """Everything that carries the deployment's marks, in the order the phases make it.

        The cluster may not exist (a wrong region or name in the config that made the
        state, or a cluster deleted since): then what is found without it is found (Route
        53, ACM, IAM, subnet tags by their marker, the Kubernetes API of the config's
        context if it answers), and what cannot be looked for is said."""
        search = Search(cluster=_cluster(ctx))
        unreachable = False
        for phase in self.phases:
            try:
                search.found += phase.marked(ctx, search)
            except KubeError as exc:
                if exc.status is not None or search.cluster is not None:
                    raise
                if not unreachable:
                    ctx.say(
                        "the Kubernetes API of the config's context could not be reached "
                        f"({exc.message}): objects labelled with this deployment there were "
                        "not looked for"
                    )
                unreachable = True
        return search.found

    # What the engine and the CLI ask of the finds, here as on the module.

    @staticmethod
    def ours(ctx: PhaseContext, found: list[Found]) -> list[Found]:
        return ours(ctx, found)

    @staticmethod
    def by_other_owners(ctx: PhaseContext, found: list[Found]) -> list[Found]:
        return by_other_owners(ctx, found)

    @staticmethod
    def for_import(found: list[Found]) -> tuple[list[Found], list[Found]]:
        return for_import(found)

    @staticmethod
    def summary(found: list[Found]) -> str:
        return summary(found)


def _cluster(ctx: PhaseContext) -> dict[str, Any] | None:
    """The config's EKS cluster, or None (said) if there is none of that name there.
    Without it, the config's Kubernetes context may still answer (a wrong region or name:
    the context is the real cluster); if it does not, `find` says so and goes on."""
    name, region = ctx.config.cluster_name, ctx.config.region
    described = tolerate(ctx.aws.eks.describe_cluster, "ResourceNotFoundException", name=name)
    if described is None:
        ctx.say(
            f"EKS cluster {name!r} does not exist in {region}: looking for this deployment's "
            "resources without it (its IAM OIDC provider among all of the account's, subnet "
            "tags in every VPC of the region)"
        )
        return None
    return dict(described["cluster"])


def by_other_owners(ctx: PhaseContext, found: list[Found]) -> list[Found]:
    """What another state file of this deployment (or one from before identities) made and
    this one would take for its own. Shared things are not counted (the cluster's OIDC
    provider, the load balancer controller, the subnet tags): a rollback may leave them for
    others who use them, and another state file adopts them (uses, never deletes)."""
    return [f for f in found if not _made_by(ctx, f) and not f.shared]


def for_import(found: list[Found]) -> tuple[list[Found], list[Found]]:
    """(what `import` rebuilds the state file from, what it leaves out). A shared thing made
    by another state file than everything else is left out: a rollback of that state file
    kept it for others (before such things were released, it kept its marks too), and the
    lost state file used it as pre-existing, as the rebuilt one does."""
    made = {f.identity for f in found if not f.shared}
    if len(made) != 1:
        return found, []
    (identity,) = made
    left = [f for f in found if f.shared and f.identity != identity]
    return [f for f in found if f not in left], left


def ours(ctx: PhaseContext, found: list[Found]) -> list[Found]:
    return [f for f in found if _made_by(ctx, f)]


def _made_by(ctx: PhaseContext, found: Found) -> bool:
    """Whether this state file made it (every find carries the deployment's own mark)."""
    return ctx.owner.owns_marks(ctx.deployment, found.identity)


def summary(found: list[Found], shown: int = 4) -> str:
    """Per owning state file, how many things and the first few of them, on one line."""
    parts = []
    for identity in dict.fromkeys(f.identity for f in found):
        items = [f for f in found if f.identity == identity]
        named = ", ".join(f.describe() for f in items[:shown])
        more = f" and {len(items) - shown} more" if len(items) > shown else ""
        parts.append(f"{len(items)} made by {describe_identity(identity or '')} ({named}{more})")
    return "; ".join(parts)
