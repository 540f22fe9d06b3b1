"""What exists of a deployment, found by its tags and labels rather than by a state file.

Three commands need it. A `run` from a new state file first looks for resources of the
same deployment made by another state file, and refuses to go on beside them. `import`
rebuilds a lost state file from what it finds. `rollback --all` ends with a sweep: what
still carries the deployment's and this state file's marks is rolled back too, whatever
the state file said.

Each find is recorded the way the phase that makes it records it (kind, id, detail), so
the phases' own rollback handles a found resource as one it made: with every check of
ownership and sharing it applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.aws import partition_of, tolerate
from orchestrator.builders import records
from orchestrator.builders.controller_manifests import oidc_provider_arn, policy_arn
from orchestrator.kube import KubeError, tolerate_not_found
from orchestrator.ownership import (
    DEPLOYMENT_LABEL,
    OWNER_TAG,
    STATE_LABEL,
    STATE_TAG,
    describe_identity,
    tag_map,
)
from orchestrator.phase import PhaseContext
from orchestrator.states import phase_names
from orchestrator.states.certificates import (
    ALL_STATUSES,
    PURPOSE_TAG,
    list_certificates,
    validation_zone,
    wanted_certificates,
)
from orchestrator.states.controller import CRD, object_id
from orchestrator.states.controller import KIND as OBJECT
from orchestrator.states.controller_iam import (
    ATTACHMENT,
    NO_ENTITY,
    OIDC,
    POLICY,
    ROLE,
    iam_tags,
    names,
)
from orchestrator.states.hosted_zone import zone_tags, zones_named
from orchestrator.states.ingress import NAME, NAMESPACE, stack_tags
from orchestrator.states.subnet_tags import KIND as SUBNET_TAG
from orchestrator.states.subnet_tags import marker_key, read_marker

ZONE = "route53:hosted-zone"
CERTIFICATE = "acm:certificate"
INGRESS_ID = f"networking.k8s.io/v1/Ingress/{NAMESPACE}/{NAME}"

# The kinds of Kubernetes objects the controller phase applies (see manifests/), and where.
CONTROLLER_KINDS = (
    ("apiextensions.k8s.io/v1", CRD),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("elbv2.k8s.aws/v1beta1", "IngressClassParams"),
    ("networking.k8s.io/v1", "IngressClass"),
)


@dataclass(frozen=True)
class Found:
    """One thing of the deployment's: the phase that makes it, as that phase records it,
    and the identity of the state file its marks name (None: no identity mark)."""

    phase: str
    kind: str
    id: str
    identity: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.kind} {self.id}"


def find(ctx: PhaseContext) -> list[Found]:
    """Everything that carries the deployment's marks, in the order the phases make it.

    The cluster may not exist (a wrong region or name in the config that made the state,
    or a cluster deleted since): then what is found without it is found (Route 53, ACM,
    IAM, subnet tags by their marker, the Kubernetes API of the config's context if it
    answers), and what cannot be looked for is said."""
    cluster = _cluster(ctx)
    found = _zones(ctx)
    found += _certificates(ctx, {f.id: f for f in found if f.kind == ZONE})
    found += _iam(ctx, cluster)
    found += _subnet_tags(ctx, cluster["resourcesVpcConfig"]["vpcId"] if cluster else None)
    found += _kubernetes(ctx) if cluster else _kubernetes_if_reachable(ctx)
    order = {name: i for i, name in enumerate(phase_names())}
    return sorted(found, key=lambda f: order[f.phase])


def _cluster(ctx: PhaseContext) -> dict[str, Any] | None:
    """The config's EKS cluster, or None (said) if there is none of that name there."""
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
    this one would take for its own. Shared things are not counted: the cluster's OIDC
    provider, the load balancer controller and the subnet tags, which a rollback may leave
    for others who use them, and which another state file adopts (uses, never deletes)."""
    owner = ctx.owner
    return [
        f
        for f in found
        if not _is_ours(owner.identity, owner.pre_identity, f.identity) and not _shared(f)
    ]


def for_import(found: list[Found]) -> tuple[list[Found], list[Found]]:
    """(what `import` rebuilds the state file from, what it leaves out). A shared thing made
    by another state file than everything else is left out: a rollback of that state file
    kept it for others (before such things were released, it kept its marks too), and the
    lost state file used it as pre-existing, as the rebuilt one does."""
    made = {f.identity for f in found if not _shared(f)}
    if len(made) != 1:
        return found, []
    (identity,) = made
    left = [f for f in found if _shared(f) and f.identity != identity]
    return [f for f in found if f not in left], left


def _shared(found: Found) -> bool:
    return found.kind == OIDC or found.phase in ("controller", "subnet_tags")


def ours(ctx: PhaseContext, found: list[Found]) -> list[Found]:
    owner = ctx.owner
    return [f for f in found if _is_ours(owner.identity, owner.pre_identity, f.identity)]


def _is_ours(identity: str, pre_identity: bool, found: str | None) -> bool:
    return found == identity or (found is None and pre_identity)


def summary(found: list[Found], shown: int = 4) -> str:
    """Per owning state file, how many things and the first few of them, on one line."""
    parts = []
    for identity in dict.fromkeys(f.identity for f in found):
        items = [f for f in found if f.identity == identity]
        named = ", ".join(f.describe() for f in items[:shown])
        more = f" and {len(items) - shown} more" if len(items) > shown else ""
        parts.append(f"{len(items)} made by {describe_identity(identity or '')} ({named}{more})")
    return "; ".join(parts)


# ---- Route 53 --------------------------------------------------------------------------------


def _zones(ctx: PhaseContext) -> list[Found]:
    """Our hosted zones, their delegation in the root zone, and the alias record in them."""
    found = []
    for zone in zones_named(ctx, ctx.config.subdomain):
        zone_id = zone["Id"].removeprefix("/hostedzone/")
        tags = zone_tags(ctx, zone_id)
        if tags.get(OWNER_TAG) != ctx.deployment:
            continue
        identity = tags.get(STATE_TAG)
        servers = ctx.aws.route53.get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
        found.append(Found("hosted_zone", ZONE, zone_id, identity, {"name": ctx.config.subdomain}))
        if ctx.config.root_zone_id:
            delegation = records.get_record(
                ctx, ctx.config.root_zone_id, ctx.config.subdomain, "NS"
            )
            wanted = sorted(records.plain(s) for s in servers)
            if delegation and records.values_of(delegation) == wanted:
                found.append(_record("delegation", ctx.config.root_zone_id, delegation, identity))
        alias = records.get_record(ctx, zone_id, ctx.config.kubeflow_host, "A")
        if alias and alias.get("AliasTarget"):
            found.append(_record("dns_record", zone_id, alias, identity))
    return found


def _record(phase: str, zone_id: str, rrset: dict[str, Any], identity: str | None) -> Found:
    rid = records.record_id(zone_id, rrset["Name"], rrset["Type"])
    return Found(phase, records.KIND, rid, identity, {"zone": zone_id, "rrset": rrset})


# ---- ACM -------------------------------------------------------------------------------------


def _certificates(ctx: PhaseContext, zones: dict[str, Found]) -> list[Found]:
    """Our certificates, and their validation records where they are (our zone or root)."""
    acm = ctx.aws.acm
    domains = {want["domain"] for want in wanted_certificates(ctx.config)}
    found = []
    for summary_ in list_certificates(acm, ALL_STATUSES):
        if summary_["DomainName"] not in domains:
            continue  # only ours can be ours: no tag reads for the account's other certificates
        arn = summary_["CertificateArn"]
        tags = tag_map(acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", []))
        if tags.get(OWNER_TAG) != ctx.deployment:
            continue
        identity = tags.get(STATE_TAG)
        detail = {"domain": summary_["DomainName"], "purpose": tags.get(PURPOSE_TAG)}
        found.append(Found("certificates", CERTIFICATE, arn, identity, detail))
        certificate = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        for option in certificate.get("DomainValidationOptions", []):
            record = option.get("ResourceRecord")
            if record is None:
                continue
            for zone_id in [*zones, ctx.config.root_zone_id]:
                if zone_id is None:
                    continue
                live = records.get_record(ctx, zone_id, record["Name"], record["Type"])
                if live is not None and records.values_of(live) == [records.plain(record["Value"])]:
                    try:
                        validation_zone(ctx.config, zone_id, record["Name"])
                    except Exception:  # noqa: BLE001 - a name outside our zones: not ours
                        continue
                    found.append(_record("certificates", zone_id, live, identity))
                    break
    return _unique(found)


def _unique(found: list[Found]) -> list[Found]:
    """One find per (kind, id): certificates of one domain share their validation record."""
    seen: dict[tuple[str, str], Found] = {}
    for item in found:
        seen.setdefault((item.kind, item.id), item)
    return list(seen.values())


# ---- IAM -------------------------------------------------------------------------------------


def _iam(ctx: PhaseContext, cluster: dict[str, Any] | None) -> list[Found]:
    """Our role and policy (by their names), the attachment, and the OIDC provider if ours."""
    iam = ctx.aws.iam
    identity_doc = ctx.aws.sts.get_caller_identity()
    account, partition = identity_doc["Account"], partition_of(identity_doc["Arn"])
    role, policy_name = names(ctx.deployment)
    policy = policy_arn(account, policy_name, partition)
    if cluster is not None:
        issuer = cluster["identity"]["oidc"]["issuer"]
        providers = [oidc_provider_arn(account, issuer, partition)]
    else:  # which provider was the cluster's is unknown: each one's tags say if it is ours
        listed = iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
        providers = [p["Arn"] for p in listed]
    found = []
    wanted = [(ROLE, role), (POLICY, policy), *((OIDC, arn) for arn in providers)]
    for kind, rid in wanted:
        listed = tolerate(iam_tags, NO_ENTITY, ctx=ctx, kind=kind, rid=rid)
        if listed is None:
            continue
        tags = tag_map(listed)
        if tags.get(OWNER_TAG) == ctx.deployment:
            found.append(Found("controller_iam", kind, rid, tags.get(STATE_TAG)))
    if {f.kind for f in found} >= {ROLE, POLICY}:
        attached = iam.pages("list_attached_role_policies", RoleName=role)
        if any(p["PolicyArn"] == policy for p in attached):
            identity = next(f.identity for f in found if f.kind == ROLE)
            found.insert(0, Found("controller_iam", ATTACHMENT, f"{role}|{policy}", identity))
    return found


# ---- EC2 -------------------------------------------------------------------------------------


def _subnet_tags(ctx: PhaseContext, vpc_id: str | None) -> list[Found]:
    """The tags our marker on each subnet says we added, where they still are (in the
    cluster's VPC; in every VPC of the region when the cluster is not known)."""
    found = []
    filters = [{"Name": "tag-key", "Values": [marker_key(ctx.deployment)]}]
    if vpc_id is not None:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    subnets = ctx.aws.ec2.pages("describe_subnets", "Subnets", Filters=filters)
    for subnet in subnets:
        tags = tag_map(subnet.get("Tags", []))
        marker = read_marker(tags, ctx.deployment)
        if marker is None:
            continue
        identity, keys = marker
        for key in sorted(keys):
            if key in tags:
                rid = f"{subnet['SubnetId']}/{key}"
                found.append(Found("subnet_tags", SUBNET_TAG, rid, identity, {"value": tags[key]}))
    return found


# ---- Kubernetes ------------------------------------------------------------------------------


def _kubernetes(ctx: PhaseContext) -> list[Found]:
    """The controller's objects and the Ingress, by the deployment's label."""
    kube = ctx.kube
    selector = f"{DEPLOYMENT_LABEL}={ctx.deployment}"
    found = []
    for api_version, kind in CONTROLLER_KINDS:
        for obj in _listed(kube, api_version, kind, selector):
            obj = {**obj, "apiVersion": api_version, "kind": kind}
            identity = ((obj.get("metadata") or {}).get("labels") or {}).get(STATE_LABEL)
            found.append(Found("controller", OBJECT, object_id(obj), identity))
    ingress = kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
    labels = ((ingress or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(DEPLOYMENT_LABEL) == ctx.deployment:
        found.append(Found("ingress", OBJECT, INGRESS_ID, labels.get(STATE_LABEL)))
    elif ingress is None:
        # The Ingress is gone, but what the controller made for it may not be: the ingress
        # phase's rollback deletes such orphans by their tags.
        found += [Found("ingress", OBJECT, INGRESS_ID, identity) for identity in _orphans(ctx)]
    return found


def _kubernetes_if_reachable(ctx: PhaseContext) -> list[Found]:
    """Without the EKS cluster, the config's Kubernetes context may still answer (a wrong
    region or name: the context is the real cluster); if it does not, that is said, and
    what is in it is not looked for."""
    try:
        return _kubernetes(ctx)
    except KubeError as exc:
        if exc.status is not None:
            raise
        ctx.say(
            f"the Kubernetes API of the config's context could not be reached ({exc.message}): "
            "objects labelled with this deployment there were not looked for"
        )
        return []


def _listed(kube: Any, api_version: str, kind: str, selector: str) -> list[dict[str, Any]]:
    """Objects of a kind by label; none if the kind is not served (a CRD's, deleted)."""
    return tolerate_not_found(lambda: kube.list(api_version, kind, label_selector=selector)) or []


def _orphans(ctx: PhaseContext) -> set[str | None]:
    """The identities on what the controller made for our Ingress's stack and this
    deployment (its ALB, target groups, security groups), found by their tags."""
    return {
        tags.get(STATE_TAG)
        for tags in stack_tags(ctx, ctx.config.cluster_name)
        if tags.get(OWNER_TAG) == ctx.deployment
    }
