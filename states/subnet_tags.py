"""subnet_tags: make the load balancer controller find the right subnets for the ALB.

The AWS Load Balancer Controller discovers an ALB's subnets in the cluster's VPC (not only
among the subnets EKS lists): if any subnet carries the scheme's role tag
(`kubernetes.io/role/elb` for internet-facing, `kubernetes.io/role/internal-elb` for
internal), only role-tagged subnets are candidates; it drops subnets tagged for another
cluster and those with fewer than 8 free addresses, keeps one per Availability Zone
(those tagged for this cluster first, then the lowest id) and needs two zones
(docs/deploy/subnet_discovery.md, pkg/networking/subnet_resolver.go).

So an internet-facing ALB must find role-tagged *public* subnets (a route to an internet
gateway), an internal one *private* subnets, and no role-tagged subnet of the wrong kind.
This phase classifies the VPC's subnets by their route tables, tags one suitable subnet
in each zone that has none, and adds nothing where suitable subnets are tagged already.
Next to the tags it adds, a marker tag (`orchestrator:added-tags:<deployment>`: the
state file's identity and the keys it added) says whose they are, so that `import` and the
final sweep of `rollback --all` can find them without the state file. Rollback removes
only the tags it added, only while they hold our value, and keeps them while load
balancers not ours of this cluster sit in those subnets.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from orchestrator.creating import creating
from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CREATE, DELETE, USE, Change
from orchestrator.states.ingress import NAME, NAMESPACE
from orchestrator.store import Resource

KIND = "ec2:subnet-tag"
ROLE_TAGS = {
    "internet-facing": "kubernetes.io/role/elb",
    "internal": "kubernetes.io/role/internal-elb",
}
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
ROLE_VALUES = ("", "1")  # the values the controller's tag filter matches
MIN_FREE_ADDRESSES = 8  # a load balancer node needs room in its subnet
MIN_ZONES = 2  # an ALB spans at least two Availability Zones
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


def classify(subnets: list[dict[str, Any]], route_tables: list[dict[str, Any]]) -> list[Subnet]:
    """The VPC's subnets as facts: zone, public or private, free addresses, tags."""
    return [
        Subnet(
            id=s["SubnetId"],
            zone=s["AvailabilityZone"],
            public=routes_to_internet_gateway(route_table_of(s["SubnetId"], route_tables)),
            free_addresses=int(s.get("AvailableIpAddressCount", MIN_FREE_ADDRESSES)),
            tags={t["Key"]: t.get("Value", "") for t in s.get("Tags", [])},
        )
        for s in sorted(subnets, key=lambda s: s["SubnetId"])
    ]


def cluster_tag(cluster: str) -> str:
    return CLUSTER_TAG_PREFIX + cluster


def for_other_cluster(subnet: Subnet, cluster: str) -> bool:
    """Tagged for some cluster but not this one: the controller will not use it."""
    keys = [k for k in subnet.tags if k.startswith(CLUSTER_TAG_PREFIX)]
    return bool(keys) and cluster_tag(cluster) not in keys


def role_tagged(subnet: Subnet, scheme: str) -> bool:
    return subnet.tags.get(ROLE_TAGS[scheme]) in ROLE_VALUES


def usable(subnet: Subnet, cluster: str) -> bool:
    """Whether the controller would keep this subnet as a candidate at all."""
    return not for_other_cluster(subnet, cluster) and subnet.free_addresses >= MIN_FREE_ADDRESSES


def suitable(subnets: Iterable[Subnet], cluster: str, scheme: str) -> list[Subnet]:
    """Subnets an ALB of this scheme can sit in: the right kind, and usable."""
    public = scheme == "internet-facing"
    return [s for s in subnets if s.public == public and usable(s, cluster)]


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


def tags_to_add(subnets: list[Subnet], cluster: str, scheme: str) -> dict[str, dict[str, str]]:
    """Per subnet id, the tags to add so that the controller finds a suitable subnet in every
    zone that has one: nothing if suitable subnets in two zones carry the role tag already;
    otherwise one subnet in each zone without (this cluster's first, then the lowest id)."""
    role = ROLE_TAGS[scheme]
    zones = by_zone(suitable(subnets, cluster, scheme))
    covered = {zone for zone, found in zones.items() if any(role_tagged(s, scheme) for s in found)}
    if len(covered) >= MIN_ZONES:
        return {}
    plan = {}
    for zone, found in zones.items():
        if zone in covered:
            continue
        # A role tag with another value (say "0") is someone's decision: not overwritten.
        free = [s for s in found if role not in s.tags]
        if not free:
            continue
        pick = min(free, key=lambda s: (cluster_tag(cluster) not in s.tags, s.id))
        wanted = {role: "1", cluster_tag(cluster): "shared"}
        plan[pick.id] = {k: v for k, v in wanted.items() if k not in pick.tags}
    return plan


def zone_problem(subnets: list[Subnet], cluster: str, scheme: str, vpc_id: str) -> str | None:
    """Why an ALB of this scheme cannot be placed in this VPC, or None."""
    zones = by_zone(suitable(subnets, cluster, scheme))
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
    title = "tag the right subnets for the load balancer controller's discovery"
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
        for subnet_id, tags in tags_to_add(subnets, cluster, scheme).items():
            changes += [Change(CREATE, f"tag {k}={v} on {subnet_id}") for k, v in tags.items()]
        if not changes:
            changes.append(Change(USE, f"the subnets already tagged {role}"))
        return changes

    def enter(self, ctx: PhaseContext) -> None:
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        subnets = vpc_subnets(ctx)
        if self._withdraw_misplaced(ctx, subnets):
            subnets = vpc_subnets(ctx)
        problem = misplaced_problem(subnets, cluster, scheme)
        if problem:
            raise PhaseError(
                problem,
                f"remove {ROLE_TAGS[scheme]} from those subnets (or tag them for another "
                "cluster), then run `orchestrator resume`",
            )
        for subnet_id, tags in tags_to_add(subnets, cluster, scheme).items():
            self._tag(ctx, subnet_id, tags)
        subnets = vpc_subnets(ctx)
        problem = zone_problem(subnets, cluster, scheme, ctx.earlier("preflight")["vpc_id"])
        if problem:
            raise PhaseError(problem, "add suitable subnets, then run `orchestrator resume`")
        used = [s.id for s in suitable(subnets, cluster, scheme) if role_tagged(s, scheme)]
        ctx.outputs.update(subnet_ids=used, tags={ROLE_TAGS[scheme]: "1"})

    def _tag(self, ctx: PhaseContext, subnet_id: str, tags: dict[str, str]) -> None:
        # Each tag is intended before the one call that makes them all, confirmed after it.
        with ExitStack() as creates:
            for key, value in tags.items():
                creates.enter_context(
                    creating(ctx, KIND, f"{subnet_id}/{key}", f"tag {subnet_id} {key}", value=value)
                )
            added = set(tags) | recorded_keys(ctx, subnet_id)
            marker = {marker_key(ctx.deployment): marker_value(ctx.owner.identity, added)}
            # One call, so the marker never says more or less than the tags do.
            ctx.aws.ec2.create_tags(
                Resources=[subnet_id],
                Tags=[{"Key": k, "Value": v} for k, v in {**tags, **marker}.items()],
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
                if tags.get(key) is None:
                    return f"subnet {subnet_id} lost its tag {key}"
        problem = misplaced_problem(subnets, cluster, scheme)
        if problem:
            return problem
        return zone_problem(subnets, cluster, scheme, ctx.earlier("preflight")["vpc_id"])

    def rollback(self, ctx: PhaseContext) -> None:
        owned = ctx.owned(KIND)
        by_subnet: dict[str, list[Resource]] = {}
        for resource in owned:
            by_subnet.setdefault(resource.id.split("/", 1)[0], []).append(resource)
        users = foreign_load_balancers(ctx, set(by_subnet))
        for subnet_id, resources in by_subnet.items():
            if users.get(subnet_id):
                ctx.keep(
                    resources,
                    f"load balancers of this cluster not made for this deployment use subnet "
                    f"{subnet_id}: {', '.join(users[subnet_id])}",
                )
                continue
            untag(ctx, subnet_id, {r.id.split("/", 1)[1]: r.detail["value"] for r in resources})
            for resource in resources:
                ctx.deleted(resource)


def vpc_subnets(ctx: PhaseContext) -> list[Subnet]:
    """Every subnet of the cluster's VPC, classified by its route table."""
    vpc = [{"Name": "vpc-id", "Values": [ctx.earlier("preflight")["vpc_id"]]}]
    ec2 = ctx.aws.ec2
    return classify(
        list(ec2.pages("describe_subnets", "Subnets", Filters=vpc)),
        list(ec2.pages("describe_route_tables", "RouteTables", Filters=vpc)),
    )


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
    for start in range(0, len(balancers), 20):  # DescribeTags takes 20 ARNs at most
        batch = balancers[start : start + 20]
        described = elbv2.describe_tags(ResourceArns=[lb["LoadBalancerArn"] for lb in batch])
        tags_of = {
            d["ResourceArn"]: {t["Key"]: t.get("Value") for t in d.get("Tags", [])}
            for d in described["TagDescriptions"]
        }
        for lb in batch:
            tags = tags_of.get(lb["LoadBalancerArn"], {})
            if tags.get(CONTROLLER_CLUSTER_TAG) != ctx.config.cluster_name:
                continue
            if tags.get(STACK_TAG) == f"{NAMESPACE}/{NAME}":
                continue
            for zone in lb.get("AvailabilityZones", []):
                if zone.get("SubnetId") in subnet_ids:
                    users.setdefault(zone["SubnetId"], []).append(lb["LoadBalancerName"])
    return users
