"""subnet_tags: make the load balancer controller find the right subnets for the ALB, and
change nothing the controllers of other clusters in the VPC rely on.

The AWS Load Balancer Controller (v3, pkg/networking/subnet_resolver.go and
docs/deploy/subnet_discovery.md) discovers an ALB's subnets in the cluster's VPC (not only
among the subnets EKS lists): if any subnet of the VPC carries the scheme's role tag
(`kubernetes.io/role/elb` for internet-facing, `kubernetes.io/role/internal-elb` for
internal) with the value "" or "1", only those are candidates; if none does, the subnets of
the scheme's reachability are (public: its route table, explicit else the main one, routes
to an internet gateway). It drops subnets tagged for other clusters (any key starting with
`kubernetes.io/cluster` but none for this cluster) and those with fewer than 8 free
addresses, keeps one per zone (this cluster's first, then the lowest id), and needs them
all of one locale (Availability Zones, a Local or Wavelength Zone, an Outpost) and two of
them in Availability Zones.

So the usual VPC, with no role tags, needs no tag at all: the controller finds its public
(internal: private) subnets by their route tables, the very classification made here. A
tag would do harm there: one role tag switches every controller in the VPC to role tags,
and a cluster tag makes the subnet another cluster's to the others. This phase adds tags
only where the controller's discovery would fail or pick the wrong kind: the role tag
alone, on one suitable subnet in each zone that has none, and only if every other
cluster's controller in the VPC that resolves its subnets now still does after.
Next to the tags it adds, a marker tag (`orchestrator:added-tags:<deployment>`: the
state file's identity and the keys it added) says whose they are, so that `import` and the
final sweep of `rollback --all` can find them without the state file. Rollback removes
only the tags it added (cluster tags too, which earlier versions added), only while they
hold our value (one changed since is left, as no longer ours), and keeps them while load
balancers not ours of this cluster sit in those subnets (released). plan and enter share
one decision (`_decide`), the rollback preview and rollback another (`rollback_plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial

from orchestrator.aws import elbv2_tags, tolerate
from orchestrator.builders.ingress import NAME, NAMESPACE
from orchestrator.builders.subnets import (
    AVAILABILITY_ZONE,
    ROLE_TAGS,
    ROLE_VALUES,
    Subnet,
    classify,
    decide,
    discover,
    misplaced,
    misplaced_problem,
    not_found,
    uses_role_tags,
    with_tags,
    works,
    zone_problem,
)
from orchestrator.creating import creating
from orchestrator.errors import PhaseError
from orchestrator.ownership import kept_mark, kept_tag_key, tag_map
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CREATE, DELETE, LEAVE, USE, WRITES, Change, Undo
from orchestrator.store import Resource

KIND = "ec2:subnet-tag"
MARKER_PREFIX = "orchestrator:added-tags:"
CONTROLLER_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
STACK_TAG = "ingress.k8s.aws/stack"
SUBNET_GONE = "InvalidSubnetID.NotFound"  # EC2's answer for a subnet id that names nothing


def marker_key(deployment: str) -> str:
    return MARKER_PREFIX + deployment


def marker_value(identity: str, keys: Iterable[str]) -> str:
    return " ".join([identity, *sorted(set(keys))])


def read_marker(tags: dict[str, str], deployment: str) -> tuple[str, set[str]] | None:
    """(state identity, keys added) from a subnet's marker for `deployment`, if it has one."""
    value = tags.get(marker_key(deployment))
    if not value:
        return None
    identity, *keys = value.split()
    return identity, set(keys)


# A tag we added whose value someone changed since: theirs now.
CHANGED = "its value was changed after this deployment added it: no longer ours"


@dataclass(frozen=True)
class Decision:
    """What enter does in the VPC, as plan lists it (`changes`), how (`apply`), and the
    subnets as they will be after."""

    changes: list[Change]
    apply: Callable[[], None]
    subnets: list[Subnet]


def misplaced_ours(ctx: PhaseContext, subnets: list[Subnet]) -> list[Resource]:
    """Role tags this deployment added to subnets of the wrong kind (earlier versions of
    orchestrator tagged every subnet EKS listed), that still hold our value: they come off
    again. One changed since is not ours to take off."""
    role = ROLE_TAGS[ctx.config.alb_scheme]
    wrong = {
        s.id: s.tags for s in misplaced(subnets, ctx.config.cluster_name, ctx.config.alb_scheme)
    }
    withdrawn = []
    for resource in ctx.owned(KIND):
        subnet_id, key = resource.id.split("/", 1)
        if key == role and wrong.get(subnet_id, {}).get(key) == resource.detail["value"]:
            withdrawn.append(resource)
    return withdrawn


def without_tag(subnets: list[Subnet], subnet_ids: set[str], key: str) -> list[Subnet]:
    """The subnets as they will be once `key` is off those of `subnet_ids`."""
    return [
        replace(s, tags={k: v for k, v in s.tags.items() if k != key}) if s.id in subnet_ids else s
        for s in subnets
    ]


# ---- the phase -------------------------------------------------------------------------------


class SubnetTagsPhase(Phase):
    name = "subnet_tags"
    title = "make sure the load balancer controller finds the right subnets"
    inputs = ("cluster.name", "cluster.region", "kubeflow.alb.scheme")
    outputs = ("subnet_ids", "tags")
    reads = ("preflight",)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return self._decide(ctx).changes

    def enter(self, ctx: PhaseContext) -> None:
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        decision = self._decide(ctx)  # every read (and refusal) before the first write
        subnets = decision.subnets
        if any(c.action in WRITES for c in decision.changes):
            decision.apply()
            subnets = vpc_subnets(ctx)
        found = discover(subnets, cluster, scheme)
        if not works(found, scheme):  # changed since we looked, by someone else
            vpc_id = ctx.earlier("preflight")["vpc_id"]
            raise PhaseError(not_found(found, vpc_id), "run `orchestrator resume`")
        tags = {ROLE_TAGS[scheme]: "1"} if uses_role_tags(subnets, scheme) else {}
        ctx.outputs.update(subnet_ids=[s.id for s in found.subnets], tags=tags)

    def _decide(self, ctx: PhaseContext) -> Decision:
        """The one decision plan lists and enter applies: our role tags on subnets of the
        wrong kind withdrawn, then the tags to add (builders.subnets.decide), or the subnets
        the controller finds as they are. A refusal (a PhaseError) stops both, in the same
        words, before any write."""
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        role = ROLE_TAGS[scheme]
        subnets = vpc_subnets(ctx)
        withdrawn = misplaced_ours(ctx, subnets)
        changes = [
            Change(DELETE, resource.describe(), "not a suitable subnet") for resource in withdrawn
        ]
        subnets = without_tag(subnets, {r.id.split("/", 1)[0] for r in withdrawn}, role)
        plan = decide(subnets, cluster, scheme, ctx.earlier("preflight")["vpc_id"])
        for subnet_id, tags in plan.items():
            changes += [Change(CREATE, f"tag {k}={v} on {subnet_id}") for k, v in tags.items()]
        if not plan:
            found = ", ".join(s.id for s in discover(subnets, cluster, scheme).subnets)
            how = f"tagged {role}" if uses_role_tags(subnets, scheme) else "by their route tables"
            changes.append(Change(USE, f"the subnets the controller finds {how}: {found}"))

        def apply() -> None:
            for resource in withdrawn:
                subnet_id, key = resource.id.split("/", 1)
                ctx.say(f"removing {key} from {subnet_id}: it is not a suitable subnet")
                untag(ctx, subnet_id, {key: resource.detail["value"]})
                ctx.forget(resource)
            if plan:
                self._tag(ctx, plan)

        return Decision(changes, apply, with_tags(subnets, plan))

    def _tag(self, ctx: PhaseContext, plan: dict[str, dict[str, str]]) -> None:
        """Each tag is intended before the calls that make them, confirmed after them. As
        few calls as can be (one, usually): between two, a VPC just switched to role tags
        would hold too few tagged zones for every controller in it."""
        calls: dict[tuple[tuple[str, str], ...], list[str]] = {}
        with ExitStack() as creates:
            for subnet_id, tags in plan.items():
                for key, value in tags.items():
                    creates.enter_context(
                        creating(
                            ctx, KIND, f"{subnet_id}/{key}", f"tag {subnet_id} {key}", value=value
                        )
                    )
                added = set(tags) | recorded_keys(ctx, subnet_id)
                marker = {marker_key(ctx.deployment): marker_value(ctx.owner.identity, added)}
                # With the tags in one call, so the marker never says more or less than they do.
                calls.setdefault(tuple(sorted({**tags, **marker}.items())), []).append(subnet_id)
            for tagged, subnet_ids in calls.items():
                ctx.aws.ec2.create_tags(
                    Resources=subnet_ids, Tags=[{"Key": k, "Value": v} for k, v in tagged]
                )

    def verify(self, ctx: PhaseContext) -> str | None:
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        subnets = vpc_subnets(ctx)
        by_id = {s.id: s for s in subnets}
        for subnet_id in ctx.outputs["subnet_ids"]:
            tags = by_id[subnet_id].tags if subnet_id in by_id else {}
            for key in ctx.outputs["tags"]:
                if tags.get(key) not in ROLE_VALUES:  # a "0" is no role tag to the controller
                    return f"subnet {subnet_id} lost its tag {key}"
        vpc_id = ctx.earlier("preflight")["vpc_id"]
        problem = misplaced_problem(subnets, cluster, scheme)
        problem = problem or zone_problem(subnets, cluster, scheme, vpc_id)
        found = discover(subnets, cluster, scheme)
        return problem or (None if works(found, scheme) else not_found(found, vpc_id))

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        vpc_id = search.cluster["resourcesVpcConfig"]["vpcId"] if search.cluster else None
        return marked_tags(ctx, vpc_id)

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies: each tag we
        added deleted, or left (and why): changed since, it is no longer ours; under load
        balancers of the cluster not ours, it is released. Read all before the first delete,
        as the preview reads it."""
        owned = ctx.owned(KIND)
        subnet_ids = {r.id.split("/", 1)[0] for r in owned}
        current = {subnet_id: subnet_tags_of(ctx, subnet_id) for subnet_id in subnet_ids}
        users = foreign_load_balancers(ctx, subnet_ids)
        undos = []
        for resource in owned:
            subnet_id, key = resource.id.split("/", 1)
            value = resource.detail["value"]
            if current[subnet_id].get(key, value) != value:  # gone is fine: nothing to delete
                undos.append(Undo(resource, LEAVE, CHANGED, partial(disown, ctx, resource)))
            elif users.get(subnet_id):
                why = (
                    f"load balancers of this cluster not made for this deployment use subnet "
                    f"{subnet_id}: {', '.join(users[subnet_id])}"
                )
                keys = {r.id.split("/", 1)[1] for r in owned if r.id.startswith(f"{subnet_id}/")}
                release = partial(
                    ctx.release, resource, why, partial(release_tags, ctx, subnet_id, keys)
                )
                undos.append(Undo(resource, LEAVE, why, release))
            else:
                undos.append(Undo(resource, DELETE, "", partial(remove, ctx, resource)))
        return undos


def vpc_subnets(ctx: PhaseContext) -> list[Subnet]:
    """Every subnet of the cluster's VPC, classified by its route table."""
    vpc = [{"Name": "vpc-id", "Values": [ctx.earlier("preflight")["vpc_id"]]}]
    ec2 = ctx.aws.ec2
    subnets = list(ec2.pages("describe_subnets", "Subnets", Filters=vpc))
    return classify(
        subnets,
        list(ec2.pages("describe_route_tables", "RouteTables", Filters=vpc)),
        zone_types(ctx, {s["AvailabilityZoneId"] for s in subnets if s.get("AvailabilityZoneId")}),
    )


def zone_types(ctx: PhaseContext, zone_ids: set[str]) -> dict[str, str]:
    """Each zone's ZoneType (availability-zone, local-zone, wavelength-zone), by zone id."""
    if not zone_ids:
        return {}
    zones = ctx.aws.ec2.describe_availability_zones(ZoneIds=sorted(zone_ids))
    return {z["ZoneId"]: z.get("ZoneType", AVAILABILITY_ZONE) for z in zones["AvailabilityZones"]}


def recorded_keys(ctx: PhaseContext, subnet_id: str) -> set[str]:
    """The keys this state file's marker on the subnet lists (tags it added earlier)."""
    found = read_marker(subnet_tags_of(ctx, subnet_id), ctx.deployment)
    return found[1] if found and found[0] == ctx.owner.identity else set()


def subnet_tags_of(ctx: PhaseContext, subnet_id: str) -> dict[str, str]:
    """The subnet's tags; none once the subnet is gone (deleted by hand, say)."""
    found = tolerate(ctx.aws.ec2.describe_subnets, SUBNET_GONE, SubnetIds=[subnet_id])
    (subnet,) = (found or {}).get("Subnets") or [{}]
    return {t["Key"]: t.get("Value", "") for t in subnet.get("Tags", [])}


def untag(ctx: PhaseContext, subnet_id: str, ours: dict[str, str]) -> set[str]:
    """Remove tags we added, each only if it still holds our value (someone may have
    changed it), and drop them from our marker (the marker too, once it lists nothing).
    Returns the keys left as someone changed them."""
    current = subnet_tags_of(ctx, subnet_id)
    # With a Value, EC2 deletes a tag only if it still has that value.
    gone = [{"Key": k, "Value": v} for k, v in ours.items() if current.get(k) == v]
    gone += unmark(ctx, subnet_id, current, set(ours))
    if gone:
        ctx.aws.ec2.delete_tags(Resources=[subnet_id], Tags=gone)
    return {k for k, v in ours.items() if current.get(k, v) != v}


def remove(ctx: PhaseContext, resource: Resource) -> None:
    """Rollback's delete of one tag we added (already gone is fine); one changed since the
    decision is left, as not ours."""
    subnet_id, key = resource.id.split("/", 1)
    if untag(ctx, subnet_id, {key: resource.detail["value"]}):
        ctx.keep(resource, CHANGED)
    else:
        ctx.deleted(resource)


def disown(ctx: PhaseContext, resource: Resource) -> None:
    """Leave a tag we added that someone changed since: our marker stops listing it."""
    subnet_id, key = resource.id.split("/", 1)
    gone = unmark(ctx, subnet_id, subnet_tags_of(ctx, subnet_id), {key})
    if gone:
        ctx.aws.ec2.delete_tags(Resources=[subnet_id], Tags=gone)
    ctx.keep(resource, CHANGED)


def unmark(
    ctx: PhaseContext, subnet_id: str, current: dict[str, str], keys: set[str]
) -> list[dict[str, str]]:
    """Take `keys` off this state file's marker on the subnet (`current`: its tags): the
    marker is rewritten with the keys it still lists, or, once it lists none, returned as a
    tag to delete (in the caller's one DeleteTags)."""
    marker, key = read_marker(current, ctx.deployment), marker_key(ctx.deployment)
    identity = ctx.owner.identity
    if marker is None or marker[0] != identity:
        return []
    left = marker[1] - keys
    if not left:
        return [{"Key": key, "Value": current[key]}]
    ctx.aws.ec2.create_tags(
        Resources=[subnet_id], Tags=[{"Key": key, "Value": marker_value(identity, left)}]
    )
    return []


def release_tags(ctx: PhaseContext, subnet_id: str, keys: set[str], mark: str) -> None:
    """Leave tags we added for the load balancers that use them, as no longer ours: a kept
    tag says which and why, then our marker stops listing them (the marker goes once it
    lists nothing), so a later deployment finds them pre-existing."""
    ec2 = ctx.aws.ec2
    why = kept_mark(f"left {' '.join(sorted(keys))}: {mark}")
    ec2.create_tags(
        Resources=[subnet_id], Tags=[{"Key": kept_tag_key(ctx.deployment), "Value": why}]
    )
    gone = unmark(ctx, subnet_id, subnet_tags_of(ctx, subnet_id), keys)
    if gone:
        ec2.delete_tags(Resources=[subnet_id], Tags=gone)


def foreign_load_balancers(ctx: PhaseContext, subnet_ids: set[str]) -> dict[str, list[str]]:
    """Per subnet, the names of load balancers the controller made for this cluster but not
    for our Ingress: the controller re-discovers their subnets on every reconcile."""
    elbv2 = ctx.aws.elbv2
    balancers = [
        lb
        for lb in elbv2.pages("describe_load_balancers", "LoadBalancers")
        if {z.get("SubnetId") for z in lb.get("AvailabilityZones", [])} & subnet_ids
    ]
    users: dict[str, list[str]] = {}
    # One deleted meanwhile (by its controller, say) uses nothing any more: left out.
    tags_of = elbv2_tags(elbv2, [lb["LoadBalancerArn"] for lb in balancers])
    for lb in balancers:
        tags = tags_of.get(lb["LoadBalancerArn"])
        if tags is None or tags.get(CONTROLLER_CLUSTER_TAG) != ctx.config.cluster_name:
            continue
        if tags.get(STACK_TAG) == f"{NAMESPACE}/{NAME}":
            continue
        for zone in lb.get("AvailabilityZones", []):
            if zone.get("SubnetId") in subnet_ids:
                users.setdefault(zone["SubnetId"], []).append(lb["LoadBalancerName"])
    return users


# ---- marks: what carries the deployment's marker (import, the sweep) --------------------------


def marked_tags(ctx: PhaseContext, vpc_id: str | None) -> list[Found]:
    """The tags our marker on each subnet says we added, where they still are (in the
    cluster's VPC; in every VPC of the region when the cluster is not known). Shared: a
    rollback leaves a tag that others' load balancers rely on."""
    found = []
    filters = [{"Name": "tag-key", "Values": [marker_key(ctx.deployment)]}]
    if vpc_id is not None:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    for subnet in ctx.aws.ec2.pages("describe_subnets", "Subnets", Filters=filters):
        tags = tag_map(subnet.get("Tags", []))
        marker = read_marker(tags, ctx.deployment)
        if marker is None:
            continue
        identity, keys = marker
        for key in sorted(k for k in keys if k in tags):
            rid = f"{subnet['SubnetId']}/{key}"
            detail = {"value": tags[key]}
            found.append(Found("subnet_tags", KIND, rid, identity, detail, shared=True))
    return found
