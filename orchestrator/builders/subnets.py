"""How the AWS Load Balancer Controller (v3) discovers an ALB's subnets in the cluster's VPC,
and what tags would make it find the right ones (see the subnet_tags phase for the rule in
words). The subnet_tags phase decides with it; preflight checks with it that an ALB can be
placed at all, without importing that phase."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.errors import PhaseError

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


# ---- classifying a VPC's subnets --------------------------------------------------------


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
