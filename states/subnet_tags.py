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
hold our value, and keeps them while load balancers not ours of this cluster sit in those
subnets.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.aws import elbv2_tags
from orchestrator.creating import creating
from orchestrator.errors import PhaseError
from orchestrator.ownership import kept_mark, kept_tag_key
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CREATE, DELETE, USE, Change
from orchestrator.states.ingress import NAME, NAMESPACE
from orchestrator.store import Resource

KIND = "ec2:subnet-tag"
ROLE_TAGS = {
    "internet-facing": "kubernetes.io/role/elb",
    "internal": "kubernetes.io/role/internal-elb",
}
# The controller takes any tag key starting with this (no trailing "/") as a cluster tag.
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster"
ROLE_VALUES = ("", "1")  # the values the controller's tag filter matches
MIN_FREE_ADDRESSES = 8  # a load balancer node needs room in its subnet
MIN_ZONES = 2  # an ALB spans at least two Availability Zones (one, elsewhere)
AVAILABILITY_ZONE = "availability-zone"  # a zone's ZoneType; also local-zone, wavelength-zone
OUTPOST = "outpost"  # a subnet with an OutpostArn
MARKER_PREFIX = "orchestrator:added-tags:"
CONTROLLER_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
STACK_TAG = "ingress.k8s.aws/stack"


# ---- pure: classifying a VPC's subnets --------------------------------------------------------


@dataclass(frozen=True)
class Subnet:
    id: str
    zone: str
    public: bool
    free_addresses: int
    tags: dict[str, str]
    locale: str = AVAILABILITY_ZONE  # the controller never mixes locales in one ALB

    def describe(self) -> str:
        return f"{self.id} ({self.zone}, {'public' if self.public else 'private'})"


def route_table_of(subnet_id: str, route_tables: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The subnet's route table: its explicit association, else the VPC's main table."""
    main = None
    for table in route_tables:
        for association in table.get("Associations", []):
            if association.get("SubnetId") == subnet_id:
                return table
            if association.get("Main"):
                main = table
    return main


def routes_to_internet_gateway(table: dict[str, Any] | None) -> bool:
    """Public means a route to an internet gateway, as the controller and EC2 see it."""
    return any(
        str(route.get("GatewayId", "")).startswith("igw-")
        for route in (table or {}).get("Routes", [])
    )


def classify(
    subnets: list[dict[str, Any]],
    route_tables: list[dict[str, Any]],
    zone_types: dict[str, str] | None = None,
) -> list[Subnet]:
    """The VPC's subnets as facts: zone, public or private, free addresses, tags, locale
    (`zone_types`: each zone id's ZoneType; without it, all but Outposts count as
    Availability Zones)."""
    return [
        Subnet(
            id=s["SubnetId"],
            zone=s["AvailabilityZone"],
            public=routes_to_internet_gateway(route_table_of(s["SubnetId"], route_tables)),
            free_addresses=int(s.get("AvailableIpAddressCount", MIN_FREE_ADDRESSES)),
            tags={t["Key"]: t.get("Value", "") for t in s.get("Tags", [])},
            locale=locale_of(s, zone_types or {}),
        )
        for s in sorted(subnets, key=lambda s: s["SubnetId"])
    ]


def locale_of(subnet: dict[str, Any], zone_types: dict[str, str]) -> str:
    """An Outpost, else its zone's type: the controller's locales."""
    if subnet.get("OutpostArn"):
        return OUTPOST
    return zone_types.get(subnet.get("AvailabilityZoneId", ""), AVAILABILITY_ZONE)


def cluster_tag(cluster: str) -> str:
    return f"{CLUSTER_TAG_PREFIX}/{cluster}"


def cluster_tagged(subnet: Subnet) -> bool:
    return any(k.startswith(CLUSTER_TAG_PREFIX) for k in subnet.tags)


def for_other_cluster(subnet: Subnet, cluster: str) -> bool:
    """Tagged for some cluster but not this one: the controller will not use it."""
    return cluster_tagged(subnet) and cluster_tag(cluster) not in subnet.tags


def role_tagged(subnet: Subnet, scheme: str) -> bool:
    return subnet.tags.get(ROLE_TAGS[scheme]) in ROLE_VALUES


def usable(subnet: Subnet, cluster: str) -> bool:
    """Whether the controller would keep this subnet as a candidate at all."""
    return not for_other_cluster(subnet, cluster) and subnet.free_addresses >= MIN_FREE_ADDRESSES


def suitable(subnets: Iterable[Subnet], cluster: str, scheme: str) -> list[Subnet]:
    """Subnets an ALB of this scheme can sit in: the right kind, and usable."""
    public = scheme == "internet-facing"
    return [s for s in subnets if s.public == public and usable(s, cluster)]


def in_zones(subnets: Iterable[Subnet]) -> list[Subnet]:
    """Those in regular Availability Zones: not Local or Wavelength Zones, not Outposts."""
    return [s for s in subnets if s.locale == AVAILABILITY_ZONE]


def by_zone(subnets: Iterable[Subnet]) -> dict[str, list[Subnet]]:
    zones: dict[str, list[Subnet]] = {}
    for subnet in subnets:
        zones.setdefault(subnet.zone, []).append(subnet)
    return dict(sorted(zones.items()))


def misplaced(subnets: Iterable[Subnet], cluster: str, scheme: str) -> list[Subnet]:
    """Usable subnets of the wrong kind carrying the role tag: the controller would take
    them as candidates and could put the ALB there (internet-facing in a private subnet)."""
    public = scheme == "internet-facing"
    return [
        s for s in subnets if s.public != public and usable(s, cluster) and role_tagged(s, scheme)
    ]


# ---- pure: the controller's discovery, and what we add to it --------------------------------


def uses_role_tags(subnets: Iterable[Subnet], scheme: str) -> bool:
    """Whether the controller picks this scheme's subnets by role tag in this VPC: it does as
    soon as one subnet carries the tag ("" or "1"), else it goes by reachability."""
    return any(role_tagged(s, scheme) for s in subnets)


def candidates(subnets: list[Subnet], scheme: str) -> list[Subnet]:
    """The role-tagged subnets if any, else those of the scheme's reachability."""
    if uses_role_tags(subnets, scheme):
        return [s for s in subnets if role_tagged(s, scheme)]
    public = scheme == "internet-facing"
    return [s for s in subnets if s.public == public]


@dataclass(frozen=True)
class Discovery:
    """What the controller resolves for a new load balancer: subnets, or its error."""

    subnets: tuple[Subnet, ...] = ()
    error: str | None = None


def discover(subnets: list[Subnet], cluster: str, scheme: str) -> Discovery:
    """The controller's discovery (v3, default feature gates) for `cluster`'s new ALB: of the
    candidates, drop other clusters' and full subnets, keep one per zone (this cluster's
    first, then the lowest id), all of one locale, two of them in Availability Zones."""
    found = candidates(subnets, scheme)
    others = [s for s in found if for_other_cluster(s, cluster)]
    full = [s for s in found if s not in others and s.free_addresses < MIN_FREE_ADDRESSES]
    eligible = [s for s in found if s not in others and s not in full]
    if not eligible:
        return Discovery(
            error=f"unable to resolve at least one subnet. Evaluated {len(found)} subnets: "
            f"{len(others)} are tagged for other clusters, and {len(full)} have insufficient "
            "available IP addresses"
        )
    chosen = [
        min(zone, key=lambda s: (cluster_tag(cluster) not in s.tags, s.id))
        for zone in by_zone(eligible).values()
    ]
    locales = sorted({s.locale for s in chosen})
    if len(locales) > 1:
        return Discovery(error=f"subnets in multiple locales: [{' '.join(locales)}]")
    least = MIN_ZONES if locales == [AVAILABILITY_ZONE] else 1
    if len(chosen) < least:
        return Discovery(
            error=f"subnets count less than minimal required count: {len(chosen)} < {least}"
        )
    return Discovery(tuple(sorted(chosen, key=lambda s: s.id)))


def works(found: Discovery, scheme: str) -> bool:
    """Resolved, and into subnets of the scheme's kind."""
    public = scheme == "internet-facing"
    return found.error is None and all(s.public == public for s in found.subnets)


def tags_to_add(subnets: list[Subnet], cluster: str, scheme: str) -> dict[str, dict[str, str]]:
    """Per subnet id, the tags to add so that the controller finds suitable subnets: none
    where its discovery works as the VPC is (by reachability, the usual case, or by the
    role tags there). Else the role tag (never a cluster tag: other clusters' controllers
    would then refuse the subnet) on one suitable subnet in each Availability Zone that has
    no tagged one."""
    if works(discover(subnets, cluster, scheme), scheme):
        return {}
    role = ROLE_TAGS[scheme]
    # A VPC using role tags already: a subnet only this cluster may use changes nothing for
    # others. One about to start using them: a subnet every cluster may use, as each of
    # their controllers will look among the role-tagged subnets only from then on.
    switching = not uses_role_tags(subnets, scheme)
    covered = {s.zone for s in subnets if role_tagged(s, scheme) and usable(s, cluster)}
    plan = {}
    for zone, found in by_zone(in_zones(suitable(subnets, cluster, scheme))).items():
        # A role tag with another value (say "0") is someone's decision: not overwritten.
        free = [s for s in found if role not in s.tags]
        if zone in covered or not free:
            continue
        if switching:
            pick = min(free, key=lambda s: (cluster_tagged(s), s.id))
        else:
            pick = min(free, key=lambda s: (cluster_tag(cluster) not in s.tags, s.id))
        plan[pick.id] = {role: "1"}
    return plan


def with_tags(subnets: list[Subnet], plan: dict[str, dict[str, str]]) -> list[Subnet]:
    """The subnets as they will be once the plan's tags are added."""
    return [replace(s, tags={**s.tags, **plan.get(s.id, {})}) for s in subnets]


def other_clusters(subnets: Iterable[Subnet], cluster: str) -> list[str]:
    """The clusters the VPC's cluster tags name, but this one; and "": any cluster that
    tagged no subnet (such as a neighbour's, on a VPC found by reachability)."""
    named = {
        k.removeprefix(CLUSTER_TAG_PREFIX + "/")
        for s in subnets
        for k in s.tags
        if k.startswith(CLUSTER_TAG_PREFIX + "/")
    }
    return [*sorted(named - {cluster, ""}), ""]


def broken_for_others(
    before: list[Subnet], after: list[Subnet], cluster: str, scheme: str
) -> list[str]:
    """Other clusters whose controllers resolve their subnets now but would not after."""
    broken = []
    for other in other_clusters(before, cluster):
        lost = discover(after, other, scheme).error
        if lost and discover(before, other, scheme).error is None:
            broken.append(f"{f'cluster {other}' if other else 'a cluster with no tags'} ({lost})")
    return broken


def zone_problem(subnets: list[Subnet], cluster: str, scheme: str, vpc_id: str) -> str | None:
    """Why an ALB of this scheme cannot be placed in this VPC, or None."""
    zones = by_zone(in_zones(suitable(subnets, cluster, scheme)))
    if len(zones) >= MIN_ZONES:
        return None
    kind = (
        "public subnets (a route to an internet gateway)"
        if scheme == "internet-facing"
        else ("private subnets (no route to an internet gateway)")
    )
    found = ", ".join(f"{z} ({', '.join(s.id for s in found)})" for z, found in zones.items())
    return (
        f"an {scheme} ALB needs {kind} in at least {MIN_ZONES} Availability Zones, with at "
        f"least {MIN_FREE_ADDRESSES} free addresses and not tagged for another cluster; VPC "
        f"{vpc_id} has them in {len(zones)} zone(s){': ' + found if found else ''}"
    )


def misplaced_problem(subnets: list[Subnet], cluster: str, scheme: str) -> str | None:
    wrong = misplaced(subnets, cluster, scheme)
    if not wrong:
        return None
    return (
        f"{', '.join(s.describe() for s in wrong)} carr{'ies' if len(wrong) == 1 else 'y'} "
        f"{ROLE_TAGS[scheme]}, which orchestrator did not add; the load balancer controller "
        f"takes role-tagged subnets as its only candidates, so the {scheme} ALB could land in "
        f"a {'private' if scheme == 'internet-facing' else 'public'} subnet"
    )


def not_found(found: Discovery, vpc_id: str) -> str:
    return (
        f"the load balancer controller would not find subnets for the ALB in VPC {vpc_id}: "
        f"{found.error or 'it would take ' + ', '.join(s.describe() for s in found.subnets)}"
    )


def decide(
    subnets: list[Subnet], cluster: str, scheme: str, vpc_id: str
) -> dict[str, dict[str, str]]:
    """The tags to add (tags_to_add), or PhaseError if the ALB cannot be placed, or adding
    them would stop another cluster's controller in the VPC from resolving its subnets."""
    problem = misplaced_problem(subnets, cluster, scheme)
    if problem:
        raise PhaseError(
            problem,
            f"remove {ROLE_TAGS[scheme]} from those subnets (or tag them for another "
            "cluster), then run `orchestrator resume`",
        )
    problem = zone_problem(subnets, cluster, scheme, vpc_id)
    if problem:
        raise PhaseError(problem, "add suitable subnets, then run `orchestrator resume`")
    plan = tags_to_add(subnets, cluster, scheme)
    after = with_tags(subnets, plan)
    found = discover(after, cluster, scheme)
    if not works(found, scheme):
        raise PhaseError(
            not_found(found, vpc_id),
            f"tag suitable subnets {ROLE_TAGS[scheme]} (and take the tag off the others), "
            "then run `orchestrator resume`",
        )
    broken = broken_for_others(subnets, after, cluster, scheme)
    if broken:
        raise PhaseError(
            f"tagging {', '.join(plan)} {ROLE_TAGS[scheme]} would stop the load balancer "
            f"controllers of other clusters in VPC {vpc_id} from finding subnets: "
            + "; ".join(broken),
            "tag subnets for the ALB so that every cluster's controller in the VPC finds its "
            "own, then run `orchestrator resume`",
        )
    return plan


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


# ---- the phase -------------------------------------------------------------------------------


class SubnetTagsPhase(Phase):
    name = "subnet_tags"
    title = "make sure the load balancer controller finds the right subnets"
    inputs = ("cluster.name", "cluster.region", "kubeflow.alb.scheme")
    outputs = ("subnet_ids", "tags")
    reads = ("preflight",)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        subnets = vpc_subnets(ctx)
        role = ROLE_TAGS[scheme]
        withdrawn = {s.id for s in misplaced(subnets, cluster, scheme)} & {
            r.id.split("/", 1)[0] for r in ctx.owned(KIND) if r.id.endswith(f"/{role}")
        }
        changes = [Change(DELETE, f"tag {role} on {s}", "not a suitable subnet") for s in withdrawn]
        subnets = [
            replace(s, tags={k: v for k, v in s.tags.items() if k != role})
            if s.id in withdrawn
            else s
            for s in subnets
        ]
        plan = decide(subnets, cluster, scheme, ctx.earlier("preflight")["vpc_id"])
        for subnet_id, tags in plan.items():
            changes += [Change(CREATE, f"tag {k}={v} on {subnet_id}") for k, v in tags.items()]
        if not plan:
            found = ", ".join(s.id for s in discover(subnets, cluster, scheme).subnets)
            how = f"tagged {role}" if uses_role_tags(subnets, scheme) else "by their route tables"
            changes.append(Change(USE, f"the subnets the controller finds {how}: {found}"))
        return changes

    def enter(self, ctx: PhaseContext) -> None:
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        vpc_id = ctx.earlier("preflight")["vpc_id"]
        subnets = vpc_subnets(ctx)
        if self._withdraw_misplaced(ctx, subnets):
            subnets = vpc_subnets(ctx)
        plan = decide(subnets, cluster, scheme, vpc_id)
        if plan:
            self._tag(ctx, plan)
            subnets = vpc_subnets(ctx)
        found = discover(subnets, cluster, scheme)
        if not works(found, scheme):  # changed since we looked, by someone else
            raise PhaseError(not_found(found, vpc_id), "run `orchestrator resume`")
        tags = {ROLE_TAGS[scheme]: "1"} if uses_role_tags(subnets, scheme) else {}
        ctx.outputs.update(subnet_ids=[s.id for s in found.subnets], tags=tags)

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

    def _withdraw_misplaced(self, ctx: PhaseContext, subnets: list[Subnet]) -> bool:
        """Role tags this deployment added to subnets of the wrong kind (earlier versions of
        orchestrator tagged every subnet EKS listed) come off again; True if any did."""
        role = ROLE_TAGS[ctx.config.alb_scheme]
        wrong = {s.id for s in misplaced(subnets, ctx.config.cluster_name, ctx.config.alb_scheme)}
        withdrawn = False
        for resource in ctx.owned(KIND):
            subnet_id, key = resource.id.split("/", 1)
            if subnet_id in wrong and key == role:
                ctx.say(f"removing {key} from {subnet_id}: it is not a suitable subnet")
                untag(ctx, subnet_id, {key: resource.detail["value"]})
                ctx.forget(resource)
                withdrawn = True
        return withdrawn

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

    def rollback(self, ctx: PhaseContext) -> None:
        owned = ctx.owned(KIND)
        by_subnet: dict[str, list[Resource]] = {}
        for resource in owned:
            by_subnet.setdefault(resource.id.split("/", 1)[0], []).append(resource)
        users = foreign_load_balancers(ctx, set(by_subnet))
        for subnet_id, resources in by_subnet.items():
            if users.get(subnet_id):
                keys = {r.id.split("/", 1)[1] for r in resources}
                ctx.release(
                    resources,
                    f"load balancers of this cluster not made for this deployment use subnet "
                    f"{subnet_id}: {', '.join(users[subnet_id])}",
                    functools.partial(release_tags, ctx, subnet_id, keys),
                )
                continue
            untag(ctx, subnet_id, {r.id.split("/", 1)[1]: r.detail["value"] for r in resources})
            for resource in resources:
                ctx.deleted(resource)


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
    (subnet,) = ctx.aws.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"] or [{}]
    return {t["Key"]: t.get("Value", "") for t in subnet.get("Tags", [])}


def untag(ctx: PhaseContext, subnet_id: str, ours: dict[str, str]) -> None:
    """Remove tags we added, each only if it still holds our value (someone may have
    changed it), and drop them from our marker (the marker too, once it lists nothing)."""
    current = subnet_tags_of(ctx, subnet_id)
    # With a Value, EC2 deletes a tag only if it still has that value.
    gone = [{"Key": k, "Value": v} for k, v in ours.items() if current.get(k) == v]
    marker = read_marker(current, ctx.deployment)
    key = marker_key(ctx.deployment)
    if marker is not None and marker[0] == ctx.owner.identity:
        left = marker[1] - set(ours)
        if left:
            ctx.aws.ec2.create_tags(
                Resources=[subnet_id],
                Tags=[{"Key": key, "Value": marker_value(ctx.owner.identity, left)}],
            )
        else:
            gone.append({"Key": key, "Value": current[key]})
    if gone:
        ctx.aws.ec2.delete_tags(Resources=[subnet_id], Tags=gone)


def release_tags(ctx: PhaseContext, subnet_id: str, keys: set[str], mark: str) -> None:
    """Leave tags we added for the load balancers that use them, as no longer ours: a kept
    tag says which and why, then our marker stops listing them (the marker goes once it
    lists nothing), so a later deployment finds them pre-existing."""
    ec2, identity = ctx.aws.ec2, ctx.owner.identity
    why = kept_mark(f"left {' '.join(sorted(keys))}: {mark}")
    ec2.create_tags(
        Resources=[subnet_id], Tags=[{"Key": kept_tag_key(ctx.deployment), "Value": why}]
    )
    current = subnet_tags_of(ctx, subnet_id)
    marker, key = read_marker(current, ctx.deployment), marker_key(ctx.deployment)
    if marker is None or marker[0] != identity:
        return
    left = marker[1] - keys
    if left:
        ec2.create_tags(
            Resources=[subnet_id], Tags=[{"Key": key, "Value": marker_value(identity, left)}]
        )
    else:
        ec2.delete_tags(Resources=[subnet_id], Tags=[{"Key": key, "Value": current[key]}])


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
