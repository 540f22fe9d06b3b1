"""An old-script deployment: what the setup script of awslabs/kubeflow-manifests
(`tests/e2e/utils/load_balancer/setup_load_balancer.py`, the one orchestrator replaces)
leaves in an account, made as that script makes it (`sandbox up --setup-script`).

Nothing of the script is copied here; its steps are played through the world's own AWS
and Kubernetes clients, in its order, waiting where it waits:

1. the subdomain's public hosted zone, with a random CallerReference (`<subdomain>-<10
   random characters>`), untagged; an NS record for it in the root zone (UPSERT, TTL 300);
2. a DNS-validated certificate for `*.<root>` (validation CNAMEs in the root zone), then
   one for `*.<subdomain>` with `*.<entry>` for each subject alternative name (validation
   CNAMEs in the subdomain's zone), both in the cluster's region, both untagged, each
   waited for until ISSUED;
3. what `eksctl utils associate-iam-oidc-provider` and `eksctl create iamserviceaccount`
   make: the cluster's OIDC provider, the role for `kube-system/aws-load-balancer-controller`
   (eksctl's CloudFormation names it `eksctl-<cluster>-addon-iamserviceaccount-Role1-<random>`
   and tags it with eksctl's tags; the `aws:cloudformation:*` tags CloudFormation adds
   cannot be written through IAM's API and are left out) with the controller's policy
   `alb_ingress_controller_<cluster><10 random characters>` attached, and the ServiceAccount
   (eksctl's label, the role's annotation);
4. the tag `kubernetes.io/cluster/<cluster>: shared` on the subnets EKS lists for the
   cluster. The controller the script installs (v2.4.7) finds subnets by their role tags
   only: its users' VPCs had them, as eksctl tags the subnets of a VPC it makes
   (`kubernetes.io/role/elb` on the public ones, `kubernetes.io/role/internal-elb` on the
   private ones), so the world adds those too;
5. `kustomize build | kubectl apply` of the controller (the kustomize base's objects, names,
   `kustomize.component` labels and selector, image v2.4.7, `--cluster-name=$(CLUSTER_NAME)`
   from its ConfigMap) and of the Ingress `istio-system/istio-ingress` (class by the old
   annotation, HTTPS 443 only, the certificate of step 2). cert-manager is not in the
   world: its Issuer and Certificate are not made; the Secret cert-manager would have
   issued from them (`aws-load-balancer-webhook-tls`) is, and the webhook configurations
   carry its CA, as cert-manager's CA injector would have written it. Each object is
   created as `kubectl apply` creates it: its field manager `kubectl-client-side-apply`
   owns every field it set (the ServiceAccount's, eksctl's), so a server-side apply by
   another manager keeps what it does not name, as on a real cluster;
6. once the world's controller has made the ALB and it is active, a CNAME (not an alias)
   `kubeflow.<subdomain>` to its DNS name, in the subdomain's zone;
7. the config the script writes back (`config-setup-script.yaml` in the world's directory).

What was made is published in world.json under `seeded.setup_script` (`read` returns it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from kube_api_emulator import NotFound
from orchestrator_sandbox.kubeseed import WEBHOOK_SERVICE, _b64, _crd, old_webhook_certificates
from orchestrator_sandbox.options import SETUP_SCRIPT_CONFIG
from orchestrator_sandbox.seed import ADOPTED_CONTROLLER_POLICY, irsa_trust

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
RELEASE = "v2.4.7"  # the release the script's kustomize base installs
IMAGE = f"public.ecr.aws/eks/aws-load-balancer-controller:{RELEASE}"
CONTROLLER_CONFIG = "aws-load-balancer-controller-config"
WEBHOOK_SECRET = "aws-load-balancer-webhook-tls"
WEBHOOK_CONFIGURATION = "aws-load-balancer-webhook"
INGRESS_NAME, INGRESS_NAMESPACE = "istio-ingress", "istio-system"
RECORD_TTL = 300  # every record the script writes
# The field manager `kubectl apply` (client-side) creates objects as: it then owns every
# field it set (an Update entry of managedFields), so a later server-side apply by another
# manager keeps what this one set and the applied config does not name.
KUBECTL_APPLY = "kubectl-client-side-apply"
EKSCTL = "eksctl"  # what eksctl's client-go calls are recorded as (its User-Agent's name)
STS_AUDIENCE = "sts.amazonaws.com"
# The thumbprint eksctl records for an EKS issuer (IAM no longer checks it for EKS).
OIDC_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
EKSCTL_VERSION = "0.150.0"
# The script's policy document is upstream's; the world checks CreateLoadBalancer only,
# so the broad policy an adopted controller's role has stands in for it.
CONTROLLER_POLICY = ADOPTED_CONTROLLER_POLICY

# The kustomize base's labels: `kustomize.component` on every object (commonLabels, also
# in the selector), the controller's name and component on the controller's own.
COMPONENT = {"kustomize.component": "aws-load-balancer-controller"}
NAMED = {"app.kubernetes.io/name": "aws-load-balancer-controller", **COMPONENT}
SELECTOR = {"app.kubernetes.io/component": "controller", **NAMED}

Obj = dict[str, Any]


@dataclass(frozen=True)
class SetupScriptDeployment:
    """What the script made: the ids and names its config names, and those it does not."""

    subdomain: str
    zone_id: str
    caller_reference: str
    root_certificate_arn: str
    certificate_arn: str
    policy_name: str
    policy_arn: str
    role_name: str
    role_arn: str
    service_account: str
    ingress: str  # namespace/name
    alb_dns: str
    config_path: str

    def published(self) -> dict[str, str]:
        return asdict(self)


def read(world_info: dict[str, Any]) -> SetupScriptDeployment:
    """What a world started with `--setup-script` made (from its world.json)."""
    return SetupScriptDeployment(**world_info["seeded"]["setup_script"])


def random_suffix() -> str:
    """Ten lower-case letters and digits, as the script draws them for its names."""
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(10))


# ---- waiting as the script waits (with a deadline, not its swallowed time-outs) ----------------


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"setup script: timed out waiting for {what}")
        time.sleep(0.1)


def change_records(route53: Any, zone_id: str, changes: list[Obj]) -> None:
    """One change batch, waited for until INSYNC, as the script changes every record."""
    change = route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": changes}
    )["ChangeInfo"]["Id"]

    def in_sync() -> bool:
        return route53.get_change(Id=change)["ChangeInfo"]["Status"] == "INSYNC"

    wait_until(in_sync, f"change {change}")


def upsert(name: str, rtype: str, values: list[str]) -> Obj:
    return {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": name,
            "Type": rtype,
            "TTL": RECORD_TTL,
            "ResourceRecords": [{"Value": value} for value in values],
        },
    }


# ---- the AWS side --------------------------------------------------------------------------------


def make_zone(route53: Any, subdomain: str, root_zone_id: str) -> tuple[str, str]:
    """The subdomain's zone and its delegation in the root zone; (zone id, CallerReference)."""
    reference = f"{subdomain}-{random_suffix()}"
    zone = route53.create_hosted_zone(Name=subdomain, CallerReference=reference)
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    servers = route53.get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
    change_records(route53, root_zone_id, [upsert(subdomain, "NS", servers)])
    return zone_id, reference


def make_certificate(
    acm: Any, route53: Any, domain: str, zone_id: str, alternatives: list[str] | None = None
) -> str:
    """Request a DNS-validated certificate, write each validation record into `zone_id`
    (one change each), and wait until it is ISSUED; its ARN."""
    request: Obj = {"DomainName": domain, "ValidationMethod": "DNS"}
    if alternatives:
        request["SubjectAlternativeNames"] = alternatives
    arn = acm.request_certificate(**request)["CertificateArn"]

    def options() -> list[Obj] | None:
        found = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        listed = found.get("DomainValidationOptions") or []
        return listed if listed and listed[0].get("ResourceRecord") else None

    for option in wait_until(options, f"the validation records of {arn}"):
        record = option["ResourceRecord"]
        change_records(
            route53, zone_id, [upsert(record["Name"], record["Type"], [record["Value"]])]
        )

    def issued() -> bool:
        status = acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"]
        return status == "ISSUED"

    wait_until(issued, f"{arn} to be issued")
    return str(arn)


def make_controller_identity(
    iam: Any, cluster: str, cluster_arn: str, oidc_issuer: str
) -> tuple[str, str, str, str]:
    """The OIDC provider, the policy, and eksctl's role for the controller's ServiceAccount;
    (policy name, policy ARN, role name, role ARN)."""
    eksctl = [
        {"Key": "alpha.eksctl.io/cluster-name", "Value": cluster},
        {"Key": "alpha.eksctl.io/eksctl-version", "Value": EKSCTL_VERSION},
    ]
    # eksctl associates a provider only if the cluster has none.
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_open_id_connect_provider(
            Url=oidc_issuer,
            ClientIDList=[STS_AUDIENCE],
            ThumbprintList=[OIDC_THUMBPRINT],
            Tags=eksctl,
        )
    policy_name = f"alb_ingress_controller_{cluster}{random_suffix()}"
    policy_arn = iam.create_policy(
        PolicyName=policy_name, PolicyDocument=json.dumps(CONTROLLER_POLICY)
    )["Policy"]["Arn"]
    role_name = eksctl_role_name(cluster)
    trust = irsa_trust(cluster_arn, oidc_issuer, NAMESPACE, SERVICE_ACCOUNT)
    service_account_tag = {
        "Key": "alpha.eksctl.io/iamserviceaccount-name",
        "Value": f"{NAMESPACE}/{SERVICE_ACCOUNT}",
    }
    role = iam.create_role(
        RoleName=role_name,
        AssumeRolePolicyDocument=json.dumps(trust),
        Tags=[
            *eksctl,
            service_account_tag,
            {"Key": "eksctl.cluster.k8s.io/v1alpha1/cluster-name", "Value": cluster},
        ],
    )["Role"]
    iam.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
    return policy_name, str(policy_arn), role_name, str(role["Arn"])


def eksctl_role_name(cluster: str) -> str:
    """As CloudFormation names the role of eksctl's stack: the stack's name cut to fit 64
    characters with the logical id and a random upper-case suffix."""
    suffix = "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(13))
    stack = f"eksctl-{cluster}-addon-iamserviceaccount"
    return f"{stack[: 64 - len(suffix) - 7]}-Role1-{suffix}"


def tag_subnets(ec2: Any, cluster: str, facts: dict[str, Any]) -> None:
    """The script's cluster tag on the cluster's listed subnets, and the role tags eksctl put
    on the VPC it made (see the module doc)."""
    ec2.create_tags(
        Resources=list(facts["subnet_ids"]),
        Tags=[{"Key": f"kubernetes.io/cluster/{cluster}", "Value": "shared"}],
    )
    ec2.create_tags(
        Resources=list(facts["public_subnet_ids"]),
        Tags=[{"Key": "kubernetes.io/role/elb", "Value": "1"}],
    )
    ec2.create_tags(
        Resources=list(facts["private_subnet_ids"]),
        Tags=[{"Key": "kubernetes.io/role/internal-elb", "Value": "1"}],
    )


def point_at_alb(route53: Any, elbv2: Any, store: Any, zone_id: str, subdomain: str) -> str:
    """Wait for the Ingress's ALB to be named and active, then CNAME `kubeflow.<subdomain>`
    to it; its DNS name."""

    def hostname() -> str | None:
        ingress = store.get("networking.k8s.io/v1", "Ingress", INGRESS_NAME, INGRESS_NAMESPACE)
        entries = ((ingress or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
        return (entries or [{}])[0].get("hostname")

    alb_dns = str(wait_until(hostname, "the Ingress's ALB"))

    def active() -> bool:
        balancers = elbv2.describe_load_balancers()["LoadBalancers"]
        return any(b["DNSName"] == alb_dns and b["State"]["Code"] == "active" for b in balancers)

    wait_until(active, f"{alb_dns} to be active")
    change_records(route53, zone_id, [upsert(f"kubeflow.{subdomain}", "CNAME", [alb_dns])])
    return alb_dns


# ---- the Kubernetes side -------------------------------------------------------------------------


def create_service_account(store: Any, role_arn: str) -> None:
    """The ServiceAccount `eksctl create iamserviceaccount` makes (its label, the role's
    annotation), with the kustomize base's labels `kubectl apply` later merges into it."""
    store.create(
        manager=EKSCTL,
        obj={
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": SERVICE_ACCOUNT,
                "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "eksctl", **SELECTOR},
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
        },
    )


def apply_controller(store: Any, cluster: str) -> None:
    """The kustomize base's controller, as `kubectl apply` leaves it (see the module doc)."""
    for kind, plural in (
        ("IngressClassParams", "ingressclassparams"),
        ("TargetGroupBinding", "targetgroupbindings"),
    ):
        crd = _crd(kind, plural, namespaced=kind == "TargetGroupBinding")
        crd["metadata"]["labels"] = dict(COMPONENT)
        store.create(manager=KUBECTL_APPLY, obj=crd)
    ca_pem, cert_pem, key_pem = old_webhook_certificates()
    for obj in controller_objects(cluster, ca_pem, cert_pem, key_pem):
        # The script applies again until the CRDs it names are established.
        wait_until(functools.partial(_created, store, obj), f"{obj['kind']} to be accepted")


def controller_objects(cluster: str, ca_pem: str, cert_pem: str, key_pem: str) -> list[Obj]:
    def meta(name: str, labels: dict[str, str] = NAMED) -> Obj:
        return {"name": name, "namespace": NAMESPACE, "labels": dict(labels)}

    rbac = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
    cluster_rules = [
        {
            "apiGroups": ["", "elbv2.k8s.aws", "networking.k8s.io", "extensions"],
            "resources": ["*"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }
    ]
    election_rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "update"]}
    ]
    container = {
        "name": "controller",
        "image": IMAGE,
        "args": ["--cluster-name=$(CLUSTER_NAME)", "--ingress-class=alb"],
        "env": [
            {
                "name": "CLUSTER_NAME",
                "valueFrom": {"configMapKeyRef": {"name": CONTROLLER_CONFIG, "key": "clusterName"}},
            }
        ],
        "ports": [{"containerPort": 9443, "name": "webhook-server", "protocol": "TCP"}],
        "volumeMounts": [
            {"mountPath": "/tmp/k8s-webhook-server/serving-certs", "name": "cert", "readOnly": True}
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(CONTROLLER_CONFIG, COMPONENT),
            "data": {"clusterName": cluster},
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _cluster_scoped(meta("aws-load-balancer-controller-role")),
            "rules": cluster_rules,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": _cluster_scoped(meta("aws-load-balancer-controller-rolebinding")),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "aws-load-balancer-controller-role",
            },
            "subjects": subject,
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": meta("aws-load-balancer-controller-leader-election-role"),
            "rules": election_rules,
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": meta("aws-load-balancer-controller-leader-election-rolebinding"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "aws-load-balancer-controller-leader-election-role",
            },
            "subjects": subject,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": WEBHOOK_SECRET,
                "namespace": NAMESPACE,
                "annotations": {
                    "cert-manager.io/certificate-name": "aws-load-balancer-serving-cert"
                },
            },
            "type": "kubernetes.io/tls",
            "data": {
                "ca.crt": _b64(ca_pem),
                "tls.crt": _b64(cert_pem),
                "tls.key": _b64(key_pem),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(WEBHOOK_SERVICE),
            "spec": {"ports": [{"port": 443, "targetPort": 9443}], "selector": dict(SELECTOR)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(SERVICE_ACCOUNT, SELECTOR),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dict(SELECTOR)},
                "template": {
                    "metadata": {"labels": dict(SELECTOR)},
                    "spec": {
                        "containers": [container],
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": SERVICE_ACCOUNT,
                        "volumes": [{"name": "cert", "secret": {"secretName": WEBHOOK_SECRET}}],
                    },
                },
            },
        },
        *webhook_configurations(_b64(ca_pem)),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": _cluster_scoped(meta("alb")),
            "spec": {
                "controller": "ingress.k8s.aws/alb",
                "parameters": {
                    "apiGroup": "elbv2.k8s.aws",
                    "kind": "IngressClassParams",
                    "name": "alb",
                },
            },
        },
        {
            "apiVersion": "elbv2.k8s.aws/v1beta1",
            "kind": "IngressClassParams",
            "metadata": _cluster_scoped(meta("alb")),
        },
    ]


def webhook_configurations(ca_bundle: str) -> list[Obj]:
    """The base's two webhook configurations, their CA injected from the Secret."""

    def hook(name: str, path: str, group: str, resource: str, version: str) -> Obj:
        return {
            "name": name,
            "admissionReviewVersions": ["v1beta1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "clientConfig": {
                "caBundle": ca_bundle,
                "service": {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE, "path": path},
            },
            "rules": [
                {
                    "apiGroups": [group],
                    "apiVersions": [version],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [resource],
                }
            ],
        }

    metadata = {
        "name": WEBHOOK_CONFIGURATION,
        "labels": dict(NAMED),
        "annotations": {
            "cert-manager.io/inject-ca-from": f"{NAMESPACE}/aws-load-balancer-serving-cert"
        },
    }
    binding = ("elbv2.k8s.aws", "targetgroupbindings", "v1beta1")
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": metadata,
            "webhooks": [
                hook(
                    "mtargetgroupbinding.elbv2.k8s.aws",
                    "/mutate-elbv2-k8s-aws-v1beta1-targetgroupbinding",
                    *binding,
                )
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": metadata,
            "webhooks": [
                hook(
                    "vtargetgroupbinding.elbv2.k8s.aws",
                    "/validate-elbv2-k8s-aws-v1beta1-targetgroupbinding",
                    *binding,
                ),
                hook(
                    "vingress.elbv2.k8s.aws",
                    "/validate-networking-v1-ingress",
                    "networking.k8s.io",
                    "ingresses",
                    "v1",
                ),
            ],
        },
    ]


def apply_ingress(store: Any, certificate_arn: str, scheme: str) -> None:
    """The `istio-ingress` kustomize (its https overlay), as `kubectl apply` leaves it."""
    labels = {"kustomize.component": "istio-ingress"}
    store.create(
        manager=KUBECTL_APPLY,
        obj={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "istio-ingress-parameters",
                "namespace": INGRESS_NAMESPACE,
                "labels": labels,
            },
            "data": {"loadBalancerScheme": scheme, "certArn": certificate_arn},
        },
    )
    backend = {"service": {"name": "istio-ingressgateway", "port": {"number": 80}}}
    store.create(
        manager=KUBECTL_APPLY,
        obj={
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": INGRESS_NAME,
                "namespace": INGRESS_NAMESPACE,
                "labels": labels,
                "annotations": {
                    "kubernetes.io/ingress.class": "alb",
                    "alb.ingress.kubernetes.io/certificate-arn": certificate_arn,
                    "alb.ingress.kubernetes.io/listen-ports": '[{"HTTPS":443}]',
                    "alb.ingress.kubernetes.io/load-balancer-attributes": (
                        "routing.http.drop_invalid_header_fields.enabled=true"
                    ),
                    "alb.ingress.kubernetes.io/scheme": scheme,
                    "alb.ingress.kubernetes.io/target-type": "ip",
                },
            },
            "spec": {
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/*",
                                    "pathType": "ImplementationSpecific",
                                    "backend": backend,
                                }
                            ]
                        }
                    }
                ]
            },
        },
    )


# ---- the whole script ----------------------------------------------------------------------------


def run_setup_script(
    clients: dict[str, Any],
    store: Any,
    facts: dict[str, Any],
    config_text: str,
    directory: Path,
) -> SetupScriptDeployment:
    """Play the script from the world's config for the cluster of `facts` (its seeded facts)
    against the world; write the config as the script leaves it; what it made."""
    config = yaml.safe_load(config_text)
    cluster, subdomain = facts["cluster"], config["route53"]["subDomain"]["name"]
    scheme = config["kubeflow"]["alb"]["scheme"]
    alternatives = config["route53"]["subDomain"].get("subjectAlternativeNames") or []
    route53, acm = clients["route53"], clients["acm"]

    zone_id, reference = make_zone(route53, subdomain, facts["root_zone_id"])
    root = config["route53"]["rootDomain"]["name"]
    root_arn = make_certificate(acm, route53, f"*.{root}", facts["root_zone_id"])
    wildcards = [f"*.{entry}" for entry in alternatives]
    certificate_arn = make_certificate(acm, route53, f"*.{subdomain}", zone_id, wildcards)
    policy_name, policy_arn, role_name, role_arn = make_controller_identity(
        clients["iam"], cluster, facts["cluster_arn"], facts["oidc_issuer"]
    )
    create_service_account(store, role_arn)
    tag_subnets(clients["ec2"], cluster, facts)
    apply_controller(store, cluster)
    apply_ingress(store, certificate_arn, scheme)
    alb_dns = point_at_alb(route53, clients["elbv2"], store, zone_id, subdomain)

    config["route53"]["subDomain"]["hostedZoneId"] = zone_id
    config["route53"]["rootDomain"]["certARN"] = root_arn
    config["route53"]["subDomain"]["certARN"] = certificate_arn
    service_account = {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, "policyArn": policy_arn}
    config["kubeflow"] = {
        "alb": {"serviceAccount": service_account, "dns": alb_dns, "scheme": scheme}
    }
    path = directory / SETUP_SCRIPT_CONFIG
    path.write_text(yaml.safe_dump(config))
    return SetupScriptDeployment(
        subdomain=subdomain,
        zone_id=zone_id,
        caller_reference=reference,
        root_certificate_arn=root_arn,
        certificate_arn=certificate_arn,
        policy_name=policy_name,
        policy_arn=policy_arn,
        role_name=role_name,
        role_arn=role_arn,
        service_account=f"{NAMESPACE}/{SERVICE_ACCOUNT}",
        ingress=f"{INGRESS_NAMESPACE}/{INGRESS_NAME}",
        alb_dns=alb_dns,
        config_path=str(path),
    )


def _created(store: Any, obj: Obj) -> bool:
    try:
        store.create(manager=KUBECTL_APPLY, obj=obj)
    except NotFound:
        return False  # its CRD is not established yet
    return True


def _cluster_scoped(metadata: Obj) -> Obj:
    """kubectl drops the namespace kustomize puts on a cluster-scoped object."""
    return {k: v for k, v in metadata.items() if k != "namespace"}
