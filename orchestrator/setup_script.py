"""What the old setup script made, found and checked, for `import --from-setup-script`.

The old script (setup_load_balancer.py in awslabs/kubeflow-manifests) wrote the ids and
ARNs of what it made back into its config.yaml; the rest it named by convention (its
policy `alb_ingress_controller_<cluster>...`, the ServiceAccount, the Ingress). Each thing
is found from those, checked to be what the script would have made for this config, and
becomes one finding: matches (taken over with --take-ownership), differs or missing (listed
and left alone), or not used by this config (left alone).

A match is recorded as the phase that makes such a thing records its own (a `Found`,
created: rollback removes it after reading its marks) and marked as that phase marks it:
AWS tags or Kubernetes labels naming this deployment and state file. Records carry no
marks of their own: their zone's tags are theirs, as for the phases' own records.

The engine imports no phase: the kinds the phases record are repeated here, and
tests/test_import_setup_script.py checks them against the phases'.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from orchestrator.aws import partition_of, tolerate
from orchestrator.builders import records
from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
    STS_AUDIENCE,
    controller_manifests,
    issuer_host,
    oidc_provider_arn,
)
from orchestrator.builders.ingress import NAME as INGRESS_NAME
from orchestrator.builders.ingress import NAMESPACE as INGRESS_NAMESPACE
from orchestrator.config import Config
from orchestrator.kube import tolerate_not_found
from orchestrator.ownership import DEPLOYMENT_LABEL, OWNER_TAG, tag_map
from orchestrator.phase import Found, PhaseContext

# The kinds and marks the phases use (states/...; checked by a test).
CERTIFICATE_KIND = "acm:certificate"
PURPOSE_TAG = "orchestrator:certificate"
POLICY_KIND = "iam:policy"
ROLE_KIND = "iam:role"
ATTACHMENT_KIND = "iam:role-policy-attachment"
OBJECT_KIND = "kubernetes:object"

# The script's conventions.
POLICY_PREFIX = "alb_ingress_controller_"
CONTROLLER_DEPLOYMENT = "aws-load-balancer-controller"  # its kustomize base's name
# Every object of its kustomize base carries this label (commonLabels); the webhook's Secret,
# made by cert-manager, is the one the Deployment mounts.
KUSTOMIZE_LABEL = "kustomize.component=aws-load-balancer-controller"
KUSTOMIZE_KINDS = (  # (apiVersion, kind, namespaced): the base's, but its Deployment's
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", False),
    ("v1", "ConfigMap", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io/v1", "Role", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", True),
    ("v1", "Service", True),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", False),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", False),
    ("networking.k8s.io/v1", "IngressClass", False),
    ("elbv2.k8s.aws/v1beta1", "IngressClassParams", False),
)
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
CERTIFICATE_ANNOTATION = "alb.ingress.kubernetes.io/certificate-arn"

MATCHES, DIFFERS, MISSING, UNUSED = "matches", "differs", "missing", "not used"
TAKE = "take over: mark it as this deployment's"


@dataclass(frozen=True)
class OldSetup:
    """What the old script's config says it made (None: the key is not there)."""

    zone_id: str | None
    root_certificate: str | None
    subdomain_certificates: tuple[str, ...]
    policy_arn: str | None
    service_account: str
    alb_dns: str | None


def old_setup(config: Config, written: dict[str, Any]) -> OldSetup:
    """The script's written-back keys (config.written_back) read for this config."""
    certificates = [written.get("route53.subDomain.certARN")]
    certificates += [v for k, v in written.items() if k.startswith("route53.subDomain.")]
    subdomain = tuple(
        dict.fromkeys(c for c in certificates if c and c.startswith("arn:") and ":acm:" in c)
    )
    return OldSetup(
        zone_id=config.subdomain_zone_id,
        root_certificate=written.get("route53.rootDomain.certARN"),
        subdomain_certificates=subdomain,
        policy_arn=written.get("kubeflow.alb.serviceAccount.policyArn"),
        service_account=written.get("kubeflow.alb.serviceAccount.name") or SERVICE_ACCOUNT,
        alb_dns=written.get("kubeflow.alb.dns"),
    )


@dataclass(frozen=True)
class Finding:
    """One thing the script made: what it is, how it compares with what the script would
    have made, what the take-over does with it; `found` is what the state records of it and
    `mark` puts this deployment's marks on it (a match only)."""

    what: str
    id: str
    status: str
    why: str
    action: str
    found: tuple[Found, ...] = ()
    mark: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @property
    def matches(self) -> bool:
        return self.status == MATCHES

    def as_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "id": self.id,
            "status": self.status,
            "why": self.why,
            "action": self.action,
            "records": [{"phase": f.phase, "kind": f.kind, "id": f.id} for f in self.found],
        }


def survey(ctx: PhaseContext, old: OldSetup) -> list[Finding]:
    """Every finding, in the order the phases make them. Reads only."""
    zone, servers = zone_finding(ctx, old)
    zone_id = zone.id if zone.matches else None
    findings = [zone, delegation_finding(ctx, zone_id, servers)]
    findings += certificate_findings(ctx, old, zone_id)
    policy = policy_finding(ctx, old)
    findings += [policy, *role_findings(ctx, old, policy)]
    controller = controller_finding(ctx, old)
    findings.append(controller)
    if controller.matches:
        findings += controller_object_findings(ctx)
    subdomain_certificate = next(
        (f.id for f in findings if f.matches and f.what == f"certificate *.{ctx.config.subdomain}"),
        None,
    )
    findings.append(ingress_finding(ctx, old, subdomain_certificate))
    findings.append(alias_finding(ctx, old, zone_id))
    return findings


def _foreign_marks(tags: dict[str, str]) -> str | None:
    """Why a thing that already carries orchestrator's marks is no take-over's."""
    if OWNER_TAG in tags:
        return (
            f"it already carries orchestrator's marks (deployment {tags[OWNER_TAG]}): "
            "`orchestrator import` rebuilds a state from those"
        )
    return None


# ---- Route 53 ---------------------------------------------------------------------------------


def zone_finding(ctx: PhaseContext, old: OldSetup) -> tuple[Finding, list[str]]:
    """The zone's finding, and its name servers (read once: the delegation is checked
    against them)."""
    name = ctx.config.subdomain
    what = "hosted zone"
    if old.zone_id is None:
        why = "no route53.subDomain.hostedZoneId in the config"
        return Finding(what, name, MISSING, why, ""), []
    route53 = ctx.aws.route53
    described = tolerate(route53.get_hosted_zone, "NoSuchHostedZone", Id=old.zone_id)
    if described is None:
        return Finding(what, old.zone_id, MISSING, "no such hosted zone", "left alone"), []
    servers = sorted(records.plain(s) for s in described["DelegationSet"]["NameServers"])
    return _zone(ctx, old.zone_id, described["HostedZone"]), servers


def _zone(ctx: PhaseContext, zone_id: str, zone: dict[str, Any]) -> Finding:
    name, what, route53 = ctx.config.subdomain, "hosted zone", ctx.aws.route53
    if records.plain(zone["Name"]) != name:
        why = f"it is for {records.plain(zone['Name'])}, not {name}"
        return Finding(what, zone_id, DIFFERS, why, "left alone")
    if zone.get("Config", {}).get("PrivateZone"):
        return Finding(what, zone_id, DIFFERS, "it is a private zone", "left alone")
    listed = route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)
    foreign = _foreign_marks(tag_map(listed["ResourceTagSet"].get("Tags", [])))
    if foreign:
        return Finding(what, zone_id, DIFFERS, foreign, "left alone")

    def mark() -> None:
        route53.change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=ctx.owner_tags
        )

    found = Found("hosted_zone", records.ZONE_KIND, zone_id, ctx.owner.identity, {"name": name})
    why = f"public zone for {name}"
    action = f"{TAKE}; run uses it as it is"
    return Finding(what, zone_id, MATCHES, why, action, (found,), mark)


def delegation_finding(ctx: PhaseContext, zone_id: str | None, servers: list[str]) -> Finding:
    config = ctx.config
    what = f"NS delegation of {config.subdomain}"
    root = config.root_zone_id
    if root is None:
        why = "no route53.rootDomain.hostedZoneId: the delegation is at the registrar"
        return Finding(what, config.root_domain, UNUSED, why, "run checks it in DNS")
    if zone_id is None:
        return Finding(what, root, MISSING, "no hosted zone of the script's to delegate to", "")
    rid = records.record_id(root, config.subdomain, "NS")
    live = records.get_record(ctx, root, config.subdomain, "NS")
    if live is None:
        return Finding(what, rid, MISSING, f"no NS record in root zone {root}", "run writes it")
    if records.values_of(live) != servers:
        why = f"it names {', '.join(records.values_of(live))}, not zone {zone_id}'s servers"
        return Finding(what, rid, DIFFERS, why, "left alone; run stops at it")
    found = records.found("delegation", root, live, ctx.owner.identity)
    why = f"names zone {zone_id}'s name servers"
    action = "take over with the zone (the zone's marks are its marks)"
    return Finding(what, rid, MATCHES, why, action, (found,))


# ---- ACM --------------------------------------------------------------------------------------


def certificate_findings(ctx: PhaseContext, old: OldSetup, zone_id: str | None) -> list[Finding]:
    config = ctx.config
    sub = (f"*.{config.subdomain}", [f"*.{config.subdomain}", *config.subject_alternative_names])
    root = (f"*.{config.root_domain}", [f"*.{config.root_domain}"])
    wanted = [("subdomain", arn, *sub) for arn in old.subdomain_certificates]
    if old.root_certificate:
        wanted.append(("root", old.root_certificate, *root))
    findings = []
    for purpose, arn, domain, names in wanted:
        what = f"certificate {domain}"
        if purpose == "root" and not config.root_wildcard_certificate:
            why = "the config does not ask for it (route53.rootDomain.wildcardCertificate)"
            findings.append(Finding(what, arn, UNUSED, why, "left alone"))
            continue
        findings.append(_certificate(ctx, what, arn, purpose, names, zone_id))
    return findings


def _certificate(
    ctx: PhaseContext, what: str, arn: str, purpose: str, names: list[str], zone_id: str | None
) -> Finding:
    region = arn.split(":")[3] if arn.count(":") >= 5 else ""
    if region != ctx.config.region:
        why = f"it is in {region or 'no region'}; the ALB uses one in {ctx.config.region}"
        return Finding(what, arn, UNUSED, why, "left alone")
    acm = ctx.aws.acm
    described = tolerate(acm.describe_certificate, "ResourceNotFoundException", CertificateArn=arn)
    if described is None:
        return Finding(what, arn, MISSING, "no such certificate", "run requests one")
    certificate = described["Certificate"]
    has = sorted(certificate.get("SubjectAlternativeNames") or [certificate["DomainName"]])
    if certificate["DomainName"] != names[0] or has != sorted(set(names)):
        why = f"it is for {', '.join(has)}, not {', '.join(names)}"
        return Finding(what, arn, DIFFERS, why, "left alone")
    if certificate["Status"] != "ISSUED":
        return Finding(what, arn, DIFFERS, f"it is {certificate['Status']}", "left alone")
    tags = tag_map(acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", []))
    foreign = _foreign_marks(tags)
    if foreign:
        return Finding(what, arn, DIFFERS, foreign, "left alone")

    def mark() -> None:
        purpose_tag = {"Key": PURPOSE_TAG, "Value": purpose}
        acm.add_tags_to_certificate(CertificateArn=arn, Tags=[*ctx.owner_tags, purpose_tag])

    identity = ctx.owner.identity
    found = [
        Found(
            "certificates",
            CERTIFICATE_KIND,
            arn,
            identity,
            {"domain": names[0], "purpose": purpose},
        )
    ]
    found += _validation_records(ctx, certificate, zone_id)
    action = f"{TAKE}; run uses it as it is"
    return Finding(what, arn, MATCHES, f"ISSUED for {', '.join(names)}", action, tuple(found), mark)


def _validation_records(
    ctx: PhaseContext, certificate: dict[str, Any], zone_id: str | None
) -> list[Found]:
    """Its validation CNAMEs, in the script's zone or the root zone, as the certificates
    phase records them (marked by their zone, or by the certificate in the root zone)."""
    found = []
    zones = [z for z in (zone_id, ctx.config.root_zone_id) if z]
    for option in certificate.get("DomainValidationOptions", []):
        wanted = option.get("ResourceRecord")
        for zone in zones if wanted else []:
            live = records.get_record(ctx, zone, wanted["Name"], wanted["Type"])
            if live is not None and records.values_of(live) == [records.plain(wanted["Value"])]:
                found.append(records.found("certificates", zone, live, ctx.owner.identity))
                break
    return list({f.id: f for f in found}.values())


# ---- IAM and the ServiceAccount ---------------------------------------------------------------


def policy_finding(ctx: PhaseContext, old: OldSetup) -> Finding:
    """The script's policy: the one its config names, else the one its naming rule gives."""
    iam = ctx.aws.iam
    what = "IAM policy"
    arn = old.policy_arn
    if arn is None:
        prefix = f"{POLICY_PREFIX}{ctx.config.cluster_name}"
        named = [
            p["Arn"]
            for p in iam.pages("list_policies", Scope="Local")
            if p["PolicyName"].startswith(prefix)
        ]
        if len(named) != 1:
            why = f"{len(named)} policies named {prefix}..., and none in the config"
            return Finding(what, prefix, MISSING, why, "left alone")
        arn = named[0]
    if tolerate(iam.get_policy, "NoSuchEntity", PolicyArn=arn) is None:
        return Finding(what, arn, MISSING, "no such policy", "left alone")
    foreign = _foreign_marks(tag_map(list(iam.pages("list_policy_tags", PolicyArn=arn))))
    if foreign:
        return Finding(what, arn, DIFFERS, foreign, "left alone")

    def mark() -> None:
        iam.tag_policy(PolicyArn=arn, Tags=ctx.owner_tags)

    found = Found("controller_iam", POLICY_KIND, arn, ctx.owner.identity)
    action = f"{TAKE}; run replaces it with this tool's"
    return Finding(what, arn, MATCHES, "the script's controller policy", action, (found,), mark)


def role_findings(ctx: PhaseContext, old: OldSetup, policy: Finding) -> list[Finding]:
    """The role the ServiceAccount names: trusted by the cluster's OIDC provider for that
    ServiceAccount, with the policy attached; then the ServiceAccount itself."""
    account = ctx.kube.get("v1", "ServiceAccount", old.service_account, CONTROLLER_NAMESPACE)
    sa_id = f"v1/ServiceAccount/{CONTROLLER_NAMESPACE}/{old.service_account}"
    sa_what = "controller's ServiceAccount"
    if account is None:
        return [Finding(sa_what, sa_id, MISSING, "no such ServiceAccount", "run makes its own")]
    arn = ((account.get("metadata") or {}).get("annotations") or {}).get(ROLE_ANNOTATION) or ""
    role = arn.rsplit("/", 1)[-1]
    if not role:
        why = f"it names no role ({ROLE_ANNOTATION})"
        return [Finding(sa_what, sa_id, DIFFERS, why, "left alone")]
    role_finding = _role(ctx, old, role, policy)
    if not role_finding.matches:
        return [
            role_finding,
            Finding(sa_what, sa_id, DIFFERS, f"its role {role} does not match", "left alone"),
        ]
    why, action = f"names role {role}", "run annotates it with its own role"
    sa = _object_finding(ctx, sa_what, ("v1", "ServiceAccount"), account, why, action)
    return [role_finding, sa]


def _role(ctx: PhaseContext, old: OldSetup, role: str, policy: Finding) -> Finding:
    iam = ctx.aws.iam
    what = "IAM role"
    got = tolerate(iam.get_role, "NoSuchEntity", RoleName=role)
    if got is None:
        return Finding(what, role, MISSING, "no such role", "left alone")
    problem = _trust_problem(ctx, got["Role"].get("AssumeRolePolicyDocument"), old.service_account)
    if problem:
        return Finding(what, role, DIFFERS, problem, "left alone")
    attached = [p["PolicyArn"] for p in iam.pages("list_attached_role_policies", RoleName=role)]
    if not policy.matches or policy.id not in attached:
        return Finding(
            what, role, DIFFERS, f"policy {policy.id} is not attached to it", "left alone"
        )
    foreign = _foreign_marks(tag_map(list(iam.pages("list_role_tags", RoleName=role))))
    if foreign:
        return Finding(what, role, DIFFERS, foreign, "left alone")

    def mark() -> None:
        iam.tag_role(RoleName=role, Tags=ctx.owner_tags)

    identity = ctx.owner.identity
    found = (
        Found("controller_iam", ATTACHMENT_KIND, f"{role}|{policy.id}", identity),
        Found("controller_iam", ROLE_KIND, role, identity),
    )
    why = f"trusted for kube-system:{old.service_account}, policy attached"
    return Finding(
        what, role, MATCHES, why, f"{TAKE}; run replaces it with this tool's", found, mark
    )


def _trust_problem(ctx: PhaseContext, trust: Any, service_account: str) -> str | None:
    """Why the role is not the IRSA role of that ServiceAccount on this cluster (or None)."""
    cluster = ctx.aws.eks.describe_cluster(name=ctx.config.cluster_name)["cluster"]
    issuer = cluster["identity"]["oidc"]["issuer"]
    caller = ctx.aws.sts.get_caller_identity()
    provider = oidc_provider_arn(caller["Account"], issuer, partition_of(caller["Arn"]))
    subject = f"system:serviceaccount:{CONTROLLER_NAMESPACE}:{service_account}"
    host = issuer_host(issuer)
    document = trust if isinstance(trust, dict) else json.loads(unquote(str(trust or "{}")))
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        federated = (statement.get("Principal") or {}).get("Federated")
        equals = (statement.get("Condition") or {}).get("StringEquals") or {}
        audience = equals.get(f"{host}:aud", STS_AUDIENCE)
        if (
            federated == provider
            and equals.get(f"{host}:sub") == subject
            and audience == STS_AUDIENCE
        ):
            return None
    return f"its trust policy does not let {subject} in through {provider}"


# ---- Kubernetes -------------------------------------------------------------------------------


def controller_finding(ctx: PhaseContext, old: OldSetup) -> Finding:
    """The controller the script installed from kustomize, running as the ServiceAccount."""
    what = "controller Deployment"
    oid = f"apps/v1/Deployment/{CONTROLLER_NAMESPACE}/{CONTROLLER_DEPLOYMENT}"
    live = ctx.kube.get("apps/v1", "Deployment", CONTROLLER_DEPLOYMENT, CONTROLLER_NAMESPACE)
    if live is None:
        return Finding(what, oid, MISSING, "no such Deployment", "run installs its own")
    pod = ((live.get("spec") or {}).get("template") or {}).get("spec") or {}
    account = pod.get("serviceAccountName")
    if account != old.service_account:
        why = f"it runs as {account}, not {old.service_account}"
        return Finding(what, oid, DIFFERS, why, "left alone")
    names = [_cluster_name(ctx, c) for c in pod.get("containers") or []]
    if ctx.config.cluster_name not in names:
        shown = ", ".join(n for n in names if n) or "none"
        why = f"it is for cluster {shown} (--cluster-name), not {ctx.config.cluster_name}"
        return Finding(what, oid, DIFFERS, why, "left alone")
    why = f"for cluster {ctx.config.cluster_name}, as {account}"
    action = "run replaces it with this tool's release"
    return _object_finding(ctx, what, ("apps/v1", "Deployment"), live, why, action)


def controller_object_findings(ctx: PhaseContext) -> list[Finding]:
    """The rest of the script's controller install: each object its kustomize base made
    (by the base's label) and the webhook Secret its Deployment mounts. Run updates those
    this tool's release also has, and deletes the others once its controller runs."""
    ours = _release_objects(ctx)
    objects: list[tuple[str, str, dict[str, Any]]] = []
    for api_version, kind, namespaced in KUSTOMIZE_KINDS:
        namespace = CONTROLLER_NAMESPACE if namespaced else None
        listing = functools.partial(
            ctx.kube.list, api_version, kind, namespace, label_selector=KUSTOMIZE_LABEL
        )
        listed = tolerate_not_found(listing)  # None: a kind not served (its CRD is gone)
        objects += [(api_version, kind, obj) for obj in listed or []]
    deployment = ctx.kube.get("apps/v1", "Deployment", CONTROLLER_DEPLOYMENT, CONTROLLER_NAMESPACE)
    pod = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    for volume in pod.get("volumes") or []:
        name = (volume.get("secret") or {}).get("secretName")
        secret = ctx.kube.get("v1", "Secret", name, CONTROLLER_NAMESPACE) if name else None
        if secret is not None:
            objects.append(("v1", "Secret", secret))
    findings = []
    for api_version, kind, obj in objects:
        meta = obj["metadata"]
        oid = _object_id(api_version, kind, meta)
        what = f"controller's {kind}"
        why = "of the script's controller install"
        if oid in ours:
            action = "run updates it to ours"
        else:
            why += f"; controller {ctx.config.controller_version} has none"
            action = "run deletes it once its own controller runs"
        findings.append(_object_finding(ctx, what, (api_version, kind), obj, why, action))
    return findings


def _release_objects(ctx: PhaseContext) -> set[str]:
    """The ids of the objects the configured controller release is made of."""
    manifests = controller_manifests(
        cluster_name=ctx.config.cluster_name,
        region=ctx.config.region,
        vpc_id="",
        role_arn="",
        labels={},
        webhook_ca_pem="",
        webhook_cert_pem="",
        webhook_key_pem="",
        version=ctx.config.controller_version,
    )
    return {_object_id(o["apiVersion"], o["kind"], o["metadata"]) for o in manifests}


def _object_id(api_version: str, kind: str, meta: dict[str, Any]) -> str:
    return "/".join((api_version, kind, meta.get("namespace") or "", meta["name"]))


def _cluster_name(ctx: PhaseContext, container: dict[str, Any]) -> str | None:
    """The container's --cluster-name, as the kubelet hands it over: the script's kustomize
    writes `--cluster-name=$(CLUSTER_NAME)`, an env var from its ConfigMap."""
    args = list(container.get("args") or [])
    for i, arg in enumerate(args):
        if arg.startswith("--cluster-name="):
            return _expand(ctx, container, arg.split("=", 1)[1])
        if arg == "--cluster-name" and i + 1 < len(args):
            return _expand(ctx, container, args[i + 1])
    return None


def _expand(ctx: PhaseContext, container: dict[str, Any], value: str) -> str:
    """`$(NAME)` references to the container's env (a value, or a ConfigMap's key)."""

    def variable(match: re.Match[str]) -> str:
        for env in container.get("env") or []:
            if env.get("name") != match.group(1):
                continue
            if "value" in env:
                return str(env["value"])
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
            found = ctx.kube.get("v1", "ConfigMap", ref.get("name", ""), CONTROLLER_NAMESPACE)
            return str(((found or {}).get("data") or {}).get(ref.get("key", ""), match.group(0)))
        return match.group(0)

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", variable, value)


def ingress_finding(ctx: PhaseContext, old: OldSetup, certificate: str | None) -> Finding:
    """The script's Ingress: class alb, the subdomain's certificate, the ALB it wrote back."""
    what = "Ingress"
    oid = f"networking.k8s.io/v1/Ingress/{INGRESS_NAMESPACE}/{INGRESS_NAME}"
    live = ctx.kube.get("networking.k8s.io/v1", "Ingress", INGRESS_NAME, INGRESS_NAMESPACE)
    if live is None:
        return Finding(what, oid, MISSING, "no such Ingress", "run makes its own")
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    kind = (live.get("spec") or {}).get("ingressClassName") or annotations.get(CLASS_ANNOTATION)
    shown = annotations.get(CERTIFICATE_ANNOTATION)
    problem = None
    if kind != "alb":
        problem = f"its class is {kind}, not alb"
    elif certificate is None or shown != certificate:
        problem = f"it serves certificate {shown}, not one taken over"
    elif old.alb_dns and _hostname(live) != old.alb_dns:
        problem = f"its load balancer is {_hostname(live)}, not {old.alb_dns} (kubeflow.alb.dns)"
    if problem:
        return Finding(what, oid, DIFFERS, problem, "left alone")
    why = f"class alb, certificate taken over, load balancer {_hostname(live)}"
    action = "run keeps it until its controller owns it"
    return _object_finding(ctx, what, ("networking.k8s.io/v1", "Ingress"), live, why, action)


def _hostname(ingress: dict[str, Any]) -> str | None:
    balancers = (((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
    return balancers[0].get("hostname") if balancers else None


def alias_finding(ctx: PhaseContext, old: OldSetup, zone_id: str | None) -> Finding:
    """kubeflow.<subdomain> to the ALB: the script wrote a CNAME; an alias A counts too."""
    host = ctx.config.kubeflow_host
    what = f"DNS record {host}"
    if zone_id is None:
        return Finding(what, host, MISSING, "no hosted zone of the script's holds it", "")
    if not old.alb_dns:
        return Finding(what, host, MISSING, "no kubeflow.alb.dns in the config", "left alone")
    for rtype in ("CNAME", "A"):
        live = records.get_record(ctx, zone_id, host, rtype)
        if live is None:
            continue
        rid = records.record_id(zone_id, host, rtype)
        alias = (live.get("AliasTarget") or {}).get("DNSName")
        target = records.plain(alias).removeprefix("dualstack.") if alias else None
        values = [target] if target else records.values_of(live)
        if values != [records.plain(old.alb_dns)]:
            why = f"it points at {', '.join(v or '' for v in values)}, not {old.alb_dns}"
            return Finding(what, rid, DIFFERS, why, "left alone")
        found = records.found("dns_record", zone_id, live, ctx.owner.identity)
        action = "take over with the zone; run points it at the ALB as an alias"
        return Finding(what, rid, MATCHES, f"{rtype} to {old.alb_dns}", action, (found,))
    return Finding(what, host, MISSING, f"no record in zone {zone_id}", "run writes it")


def _object_finding(
    ctx: PhaseContext,
    what: str,
    api: tuple[str, str],
    obj: dict[str, Any],
    why: str,
    action: str,
) -> Finding:
    """A Kubernetes object that matched, to be labelled as this deployment's (by a merge
    patch: nothing else of it changes, so no pod restarts)."""
    api_version, kind = api
    meta = obj["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    oid = _object_id(api_version, kind, meta)
    labels = meta.get("labels") or {}
    if DEPLOYMENT_LABEL in labels:
        return Finding(
            what,
            oid,
            DIFFERS,
            _foreign_marks({OWNER_TAG: labels[DEPLOYMENT_LABEL]}) or "",
            "left alone",
        )

    def mark() -> None:
        ctx.kube.patch_metadata(
            api_version, kind, name, namespace, labels=dict(ctx.owner.labels), annotations={}
        )

    phase = "ingress" if kind == "Ingress" else "controller"
    found = Found(phase, OBJECT_KIND, oid, ctx.owner.identity, shared=phase == "controller")
    return Finding(what, oid, MATCHES, why, f"{TAKE}; {action}", (found,), mark)
