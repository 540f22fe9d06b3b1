"""Which subnets a load balancer goes into: the AWS Load Balancer Controller's auto-discovery,
with its default feature gates (SubnetsClusterTagCheck and SubnetDiscoveryByReachability on).

Candidates are the subnets of the controller's VPC whose role tag (`kubernetes.io/role/elb`
for internet-facing, `kubernetes.io/role/internal-elb` for internal) is "" or "1"; if none
has it, the subnets whose reachability matches the scheme (public iff its route table, its
explicit association else the VPC's main table, routes to an internet gateway). Subnets
tagged for other clusters only, and those with fewer than 8 free addresses, are dropped;
then one per zone is chosen, preferring subnets tagged for this cluster, then the lowest
id. The chosen subnets must all be of one locale (a regular Availability Zone, a Local Zone,
a Wavelength Zone, by the zone's ZoneType in DescribeAvailabilityZones; or an Outpost, by
the subnet's OutpostArn); an ALB needs two of them in Availability Zones, one elsewhere.
Note that the role tag wins over reachability: the controller puts an internet-facing ALB
into role-tagged private subnets without a word (and then nobody on the internet can reach
it; see tlsendpoint). And the other-cluster check matches the prefix `kubernetes.io/cluster`
with no trailing `/`: a tag `kubernetes.io/cluster-x` counts as another cluster's too.
"""

from __future__ import annotations

from typing import Any

from orchestrator_sandbox.albmodel import ModelError

Obj = dict[str, Any]

ROLE_TAGS = {
    "internet-facing": "kubernetes.io/role/elb",
    "internal": "kubernetes.io/role/internal-elb",
}
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster"
MIN_AVAILABLE_ADDRESSES = 8
MIN_ALB_SUBNETS = 2  # in regular Availability Zones; one elsewhere
AVAILABILITY_ZONE = "availability-zone"
ZONE_TYPES = (AVAILABILITY_ZONE, "local-zone", "wavelength-zone")
OUTPOST = "outpost"


def tags_of(resource: Obj) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in resource.get("Tags", [])}


# ---- pure rules --------------------------------------------------------------------------------


def is_public(subnet_id: str, route_tables: list[Obj]) -> bool:
    """Whether the subnet's route table sends traffic to an internet gateway."""
    main = explicit = None
    for table in route_tables:
        for association in table.get("Associations", []):
            if association.get("Main"):
                main = table
            if association.get("SubnetId") == subnet_id:
                explicit = table
    chosen = explicit or main
    if chosen is None:
        return False  # every VPC has a main table; without one, nothing routes anywhere
    return any(str(r.get("GatewayId", "")).startswith("igw") for r in chosen.get("Routes", []))


def role_tagged(subnets: list[Obj], scheme: str) -> list[Obj]:
    """The subnets whose role tag for the scheme is "" or "1"."""
    role_tag = ROLE_TAGS[scheme]
    return [s for s in subnets if tags_of(s).get(role_tag) in ("", "1")]


def reachable_for(subnets: list[Obj], route_tables: list[Obj], scheme: str) -> list[Obj]:
    """The subnets whose reachability matches the scheme: public for internet-facing."""
    public = scheme == "internet-facing"
    return [s for s in subnets if is_public(s["SubnetId"], route_tables) == public]


def tagged_for_other_clusters(subnet: Obj, cluster: str) -> bool:
    """Whether the subnet carries cluster tags, none of them for `cluster`."""
    keys = tags_of(subnet)
    if f"{CLUSTER_TAG_PREFIX}/{cluster}" in keys:
        return False
    return any(k.startswith(CLUSTER_TAG_PREFIX) for k in keys)


def locale_of(subnet: Obj, zone_types: dict[str, str] | None) -> str:
    """Where the subnet is: an Outpost, else its zone's type (`zone_types`: zone id -> type;
    None: every zone a regular Availability Zone)."""
    if subnet.get("OutpostArn"):
        return OUTPOST
    if zone_types is None:
        return AVAILABILITY_ZONE
    zone_type = zone_types.get(subnet.get("AvailabilityZoneId", ""), "")
    if zone_type not in ZONE_TYPES:
        raise _discovery_error(f"unknown zone type for subnet {subnet['SubnetId']}: {zone_type}")
    return zone_type


def choose(found: list[Obj], cluster: str, zone_types: dict[str, str] | None = None) -> list[Obj]:
    """Filter the candidates and pick one per zone, sorted by id; ModelError if they are of
    several locales, or too few."""
    others = [s for s in found if tagged_for_other_clusters(s, cluster)]
    eligible = [s for s in found if s not in others]
    starved = [s for s in eligible if s["AvailableIpAddressCount"] < MIN_AVAILABLE_ADDRESSES]
    eligible = [s for s in eligible if s not in starved]
    if not eligible:
        raise _discovery_error(
            f"unable to resolve at least one subnet. Evaluated {len(found)} subnets: "
            f"{len(others)} are tagged for other clusters, and {len(starved)} have "
            "insufficient available IP addresses"
        )
    mine = f"{CLUSTER_TAG_PREFIX}/{cluster}"
    by_zone: dict[str, Obj] = {}
    # Tagged for this cluster first, then the lowest id: the first seen in a zone wins.
    for subnet in sorted(eligible, key=lambda s: (mine not in tags_of(s), s["SubnetId"])):
        by_zone.setdefault(subnet["AvailabilityZone"], subnet)
    chosen = sorted(by_zone.values(), key=lambda s: s["SubnetId"])
    locales = sorted({locale_of(s, zone_types) for s in chosen})
    if len(locales) > 1:
        raise _discovery_error(f"subnets in multiple locales: [{' '.join(locales)}]")
    minimum = MIN_ALB_SUBNETS if locales == [AVAILABILITY_ZONE] else 1
    if len(chosen) < minimum:
        raise _discovery_error(
            f"subnets count less than minimal required count: {len(chosen)} < {minimum}"
        )
    return chosen


def _discovery_error(cause: str) -> ModelError:
    return ModelError("build", f"couldn't auto-discover subnets: {cause}")


# ---- against EC2 -------------------------------------------------------------------------------


def vpc_subnets(ec2: Any, vpc_id: str) -> list[Obj]:
    paginator = ec2.get_paginator("describe_subnets")
    pages = paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return [s for page in pages for s in page["Subnets"]]


def vpc_route_tables(ec2: Any, vpc_id: str) -> list[Obj]:
    paginator = ec2.get_paginator("describe_route_tables")
    pages = paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return [t for page in pages for t in page["RouteTables"]]


def zone_types(ec2: Any) -> dict[str, str]:
    """Every zone of the region, opted in or not (Local Zones need opting in): id -> type."""
    zones = ec2.describe_availability_zones(AllAvailabilityZones=True)["AvailabilityZones"]
    return {z["ZoneId"]: z.get("ZoneType", AVAILABILITY_ZONE) for z in zones}


def discover(
    ec2: Any, vpc_id: str, cluster: str, scheme: str, by_reachability: bool = True
) -> list[Obj]:
    """The subnets the controller gives a new ALB of `scheme` (see the module doc). A
    controller before v2.13.0 (`by_reachability` False) knows role-tagged subnets only."""
    subnets = vpc_subnets(ec2, vpc_id)
    found = role_tagged(subnets, scheme)
    if not found and by_reachability:
        found = reachable_for(subnets, vpc_route_tables(ec2, vpc_id), scheme)
    return choose(found, cluster, zone_types(ec2))


def all_public(ec2: Any, subnet_ids: list[str]) -> bool:
    """Whether every one of the subnets routes to an internet gateway."""
    if not subnet_ids:
        return False
    subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    tables = vpc_route_tables(ec2, subnets[0]["VpcId"])
    return all(is_public(s["SubnetId"], tables) for s in subnets)


def private_blocks(ec2: Any, vpc_id: str) -> list[str]:
    """The CIDR blocks of the VPC's private subnets (all of its subnets if none is private),
    by zone then id: where the cluster's pods get their addresses."""
    subnets = sorted(vpc_subnets(ec2, vpc_id), key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
    tables = vpc_route_tables(ec2, vpc_id)
    private = [s for s in subnets if not is_public(s["SubnetId"], tables)]
    return [s["CidrBlock"] for s in private or subnets]
