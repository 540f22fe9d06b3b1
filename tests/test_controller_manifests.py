"""The load balancer controller's manifests, IAM documents and webhook certificates (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from importlib import resources
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from orchestrator.builders.controller_manifests import (
    BUNDLED_VERSION,
    BUNDLED_VERSIONS,
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    SERVICE_ACCOUNT,
    WEBHOOK_SERVICE,
    cluster_name_of,
    controller_manifests,
    controller_policy,
    oidc_provider_arn,
    permissions,
    trust_policy,
)
from orchestrator.builders.running_controller import controller_version, parse_version
from orchestrator.builders.webhook_tls import webhook_certificates

LABELS = {"app.kubernetes.io/managed-by": "orchestrator", "orchestrator.dev/deployment": "dep-1"}
ROLE_ARN = "arn:aws:iam::123456789012:role/alb-controller-dep-1"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"
ISSUER_HOST = "oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"
PROVIDER_ARN = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER_HOST}"
CONTROLLER_SUBJECT = "system:serviceaccount:kube-system:aws-load-balancer-controller"
SERVICE_DNS = [
    f"{WEBHOOK_SERVICE}.kube-system.svc",
    f"{WEBHOOK_SERVICE}.kube-system.svc.cluster.local",
]

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def pems() -> tuple[str, str, str]:
    return webhook_certificates()


def build(pems: tuple[str, str, str], **overrides: Any) -> list[Obj]:
    """The manifests for the usual test cluster, with `overrides` to the builder's args."""
    ca, cert, key = pems
    args: dict[str, Any] = dict(
        cluster_name="kube-eks-cluster",
        region="us-west-2",
        vpc_id="vpc-0abc",
        role_arn=ROLE_ARN,
        labels=LABELS,
        webhook_ca_pem=ca,
        webhook_cert_pem=cert,
        webhook_key_pem=key,
    )
    return controller_manifests(**(args | overrides))


@pytest.fixture(scope="module")
def objects(pems: tuple[str, str, str]) -> list[Obj]:
    return build(pems)


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_spec(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


# ---- the template file --------------------------------------------------------------------------


@pytest.mark.parametrize("version", BUNDLED_VERSIONS)
def test_the_template_parses_as_plain_kubernetes_objects(version: str) -> None:
    text = (
        resources.files("orchestrator.builders")
        .joinpath("manifests", version, "aws-load-balancer-controller.yaml")
        .read_text()
    )
    assert "{{" not in text, "no templating syntax: the builder fills values in Python"
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(docs) >= 15
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


# ---- the objects --------------------------------------------------------------------------------


def test_every_object_is_named_and_carries_the_labels(objects: list[Obj]) -> None:
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]
        assert LABELS.items() <= obj["metadata"]["labels"].items(), obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == CONTROLLER_NAME


def test_apply_order_puts_definitions_and_identity_before_their_users(objects: list[Obj]) -> None:
    kinds = [o["kind"] for o in objects]
    crds = [i for i, k in enumerate(kinds) if k == "CustomResourceDefinition"]
    assert crds == [0, 1], "CRDs first"
    deployment = kinds.index("Deployment")
    for before in ("ServiceAccount", "ClusterRoleBinding", "RoleBinding", "Secret", "Service"):
        assert kinds.index(before) < deployment, before
    assert deployment < kinds.index("MutatingWebhookConfiguration")
    assert deployment < kinds.index("ValidatingWebhookConfiguration")
    assert kinds.index("IngressClassParams") < kinds.index("IngressClass") == len(kinds) - 1


def test_the_expected_objects_are_there(objects: list[Obj]) -> None:
    names = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    assert {
        ("CustomResourceDefinition", None, "targetgroupbindings.elbv2.k8s.aws"),
        ("CustomResourceDefinition", None, "ingressclassparams.elbv2.k8s.aws"),
        ("ServiceAccount", CONTROLLER_NAMESPACE, SERVICE_ACCOUNT),
        ("Secret", CONTROLLER_NAMESPACE, "aws-load-balancer-tls"),
        ("Service", CONTROLLER_NAMESPACE, WEBHOOK_SERVICE),
        ("Deployment", CONTROLLER_NAMESPACE, CONTROLLER_NAME),
        ("IngressClassParams", None, "alb"),
        ("IngressClass", None, "alb"),
    } <= names


def test_the_service_account_carries_the_irsa_role(objects: list[Obj]) -> None:
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert pod_spec(objects)["serviceAccountName"] == SERVICE_ACCOUNT


def test_deployment_labels_go_on_the_pods_but_not_in_the_selector(objects: list[Obj]) -> None:
    spec = one(objects, "Deployment")["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": CONTROLLER_NAME}
    pod_labels = spec["template"]["metadata"]["labels"]
    assert LABELS.items() <= pod_labels.items()
    assert selector.items() <= pod_labels.items(), "the selector must match its own pods"


def test_labels_never_override_what_the_selector_matches(pems: tuple[str, str, str]) -> None:
    objects = build(pems, labels={"app.kubernetes.io/name": "something-else"})
    spec = one(objects, "Deployment")["spec"]
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == CONTROLLER_NAME


def test_the_args_carry_the_cluster_region_vpc_and_class(objects: list[Obj]) -> None:
    args = pod_spec(objects)["containers"][0]["args"]
    for arg in (
        "--cluster-name=kube-eks-cluster",
        "--aws-region=us-west-2",
        "--aws-vpc-id=vpc-0abc",
        "--ingress-class=alb",
    ):
        assert arg in args
    assert len(args) == len(set(args))


def test_the_deployment_runs_the_controller_safely(
    objects: list[Obj], pems: tuple[str, str, str]
) -> None:
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(objects)
    assert spec["priorityClassName"] == "system-cluster-critical"
    (container,) = spec["containers"]
    assert re.fullmatch(
        r"public\.ecr\.aws/eks/aws-load-balancer-controller:v\d+\.\d+\.\d+", container["image"]
    )
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "webhook-server": 9443,
        "metrics-server": 8080,
    }
    probe = container["livenessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", 61779)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp/k8s-webhook-server/serving-certs"
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "aws-load-balancer-tls"

    three = build(pems, replicas=3)
    assert one(three, "Deployment")["spec"]["replicas"] == 3


def test_the_webhook_service_reaches_the_webhook_port(objects: list[Obj]) -> None:
    service = one(objects, "Service")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    container = pod_spec(objects)["containers"][0]
    target = port["targetPort"]
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert by_name.get(target, target) == 9443
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_builds_are_independent_copies(pems: tuple[str, str, str]) -> None:
    first = build(pems)
    first[0]["metadata"]["name"] = "changed"
    assert build(pems)[0]["metadata"]["name"] != "changed"


# ---- webhook TLS --------------------------------------------------------------------------------


def decoded(secret: Obj, key: str) -> bytes:
    return base64.b64decode(secret["data"][key], validate=True)


def test_the_tls_secret_holds_a_serving_cert_that_chains_to_the_ca(objects: list[Obj]) -> None:
    secret = one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    ca = x509.load_pem_x509_certificate(decoded(secret, "ca.crt"))
    cert = x509.load_pem_x509_certificate(decoded(secret, "tls.crt"))
    assert b"PRIVATE KEY" in decoded(secret, "tls.key")

    cert.verify_directly_issued_by(ca)  # raises if the signature or issuer does not match
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == SERVICE_DNS
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_the_key_belongs_to_the_certificate(pems: tuple[str, str, str]) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    _, cert_pem, key_pem = pems
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    key = load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key() == cert.public_key()


def test_certificates_for_another_service_and_their_lifetime() -> None:
    ca_pem, cert_pem, _ = webhook_certificates("hook", "ns", days=30)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["hook.ns.svc", "hook.ns.svc.cluster.local"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    assert webhook_certificates("hook", "ns")[0] != ca_pem, "a fresh CA each time"


def test_every_webhook_trusts_the_ca_and_calls_the_service(
    objects: list[Obj], pems: tuple[str, str, str]
) -> None:
    configs = [o for o in objects if o["kind"].endswith("WebhookConfiguration")]
    assert len(configs) == 2
    webhooks = [w for c in configs for w in c["webhooks"]]
    assert {w["name"] for w in webhooks} == {
        "mpod.elbv2.k8s.aws",
        "mtargetgroupbinding.elbv2.k8s.aws",
        "vtargetgroupbinding.elbv2.k8s.aws",
        "vingress.elbv2.k8s.aws",
    }
    for webhook in webhooks:
        client = webhook["clientConfig"]
        assert base64.b64decode(client["caBundle"]).decode() == pems[0], webhook["name"]
        assert client["service"]["name"] == WEBHOOK_SERVICE
        assert client["service"]["namespace"] == CONTROLLER_NAMESPACE
        assert client["service"]["path"].startswith("/")
        assert webhook["sideEffects"] == "None"
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["failurePolicy"] in ("Fail", "Ignore")


def test_pod_mutation_only_in_opted_in_namespaces(objects: list[Obj]) -> None:
    webhooks = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    pods = next(w for w in webhooks if w["name"] == "mpod.elbv2.k8s.aws")
    assert pods["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "elbv2.k8s.aws/pod-readiness-gate-inject",
                "operator": "In",
                "values": ["enabled"],
            }
        ]
    }
    assert pods["rules"][0]["resources"] == ["pods"]
    assert pods["rules"][0]["operations"] == ["CREATE"]
    # The controller's own pods are never sent to the webhook they are about to serve.
    excluded = pods["objectSelector"]["matchExpressions"][0]
    assert excluded == {
        "key": "app.kubernetes.io/name",
        "operator": "NotIn",
        "values": [CONTROLLER_NAME],
    }


def test_ingress_validation_covers_networking_v1_ingresses(objects: list[Obj]) -> None:
    webhooks = one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    ingress = next(w for w in webhooks if w["name"] == "vingress.elbv2.k8s.aws")
    assert ingress["rules"] == [
        {
            "apiGroups": ["networking.k8s.io"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["ingresses"],
        }
    ]
    assert ingress["failurePolicy"] == "Fail"


# ---- CRDs, class and RBAC -----------------------------------------------------------------------


def structural_problems(schema: Obj, path: str = "") -> list[str]:
    """Where a schema breaks the structural rules the API server enforces (the common ones)."""
    problems = []
    special = schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "type" not in schema and not special:
        problems.append(f"{path or '/'}: no type")
    if "properties" in schema and schema.get("type") != "object":
        problems.append(f"{path}: properties on a non-object")
    for name, child in (schema.get("properties") or {}).items():
        problems += structural_problems(child, f"{path}.{name}")
    for name in schema.get("required") or []:
        if name not in (schema.get("properties") or {}):
            problems.append(f"{path}: required {name} is not a property")
    return problems


@pytest.mark.parametrize(
    "name,scope,kind",
    [
        ("targetgroupbindings.elbv2.k8s.aws", "Namespaced", "TargetGroupBinding"),
        ("ingressclassparams.elbv2.k8s.aws", "Cluster", "IngressClassParams"),
    ],
)
def test_the_crds_look_structurally_valid(
    objects: list[Obj], name: str, scope: str, kind: str
) -> None:
    crd = one(objects, "CustomResourceDefinition", name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = crd["spec"]
    assert name == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["group"] == "elbv2.k8s.aws"
    assert spec["scope"] == scope
    assert spec["names"]["kind"] == kind
    assert spec["names"]["listKind"] == f"{kind}List"
    assert [v["name"] for v in spec["versions"] if v["storage"]] == ["v1beta1"]
    for version in spec["versions"]:
        assert version["served"] is True
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        assert "spec" in schema["properties"]
        assert structural_problems(schema) == []
        for column in version.get("additionalPrinterColumns", []):
            assert column["name"] and column["type"] and column["jsonPath"].startswith(".")


def test_target_group_bindings_have_a_status_subresource(objects: list[Obj]) -> None:
    crd = one(objects, "CustomResourceDefinition", "targetgroupbindings.elbv2.k8s.aws")
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}


def test_the_ingress_class_points_at_its_parameters(objects: list[Obj]) -> None:
    params = one(objects, "IngressClassParams", "alb")
    assert params["apiVersion"] == "elbv2.k8s.aws/v1beta1"
    ingress_class = one(objects, "IngressClass", "alb")
    assert ingress_class["spec"]["controller"] == "ingress.k8s.aws/alb"
    assert ingress_class["spec"]["parameters"] == {
        "apiGroup": "elbv2.k8s.aws",
        "kind": "IngressClassParams",
        "name": "alb",
    }


def allows(rules: list[Obj], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and not r.get("resourceNames")
        for r in rules
    )


@pytest.mark.parametrize(
    "group,resource,verbs",
    [
        ("networking.k8s.io", "ingresses", "get list watch update patch"),
        ("networking.k8s.io", "ingresses/status", "update patch"),
        ("networking.k8s.io", "ingressclasses", "get list watch"),
        ("elbv2.k8s.aws", "ingressclassparams", "get list watch"),
        ("elbv2.k8s.aws", "targetgroupbindings", "get list watch create update patch delete"),
        ("elbv2.k8s.aws", "targetgroupbindings/status", "update patch"),
        ("", "services", "get list watch update patch"),
        ("", "endpoints", "get list watch"),
        ("discovery.k8s.io", "endpointslices", "get list watch"),
        ("", "pods", "get list watch"),
        ("", "pods/status", "update patch"),
        ("", "nodes", "get list watch"),
        ("", "namespaces", "get list watch"),
        ("", "events", "create patch"),
    ],
)
def test_the_cluster_role_grants_what_the_controller_uses(
    objects: list[Obj], group: str, resource: str, verbs: str
) -> None:
    rules = one(objects, "ClusterRole")["rules"]
    for verb in verbs.split():
        assert allows(rules, group, resource, verb), f"{verb} {group}/{resource}"


def test_the_cluster_role_reads_no_secrets_and_binds_the_service_account(
    objects: list[Obj],
) -> None:
    rules = one(objects, "ClusterRole")["rules"]
    assert not any("secrets" in r["resources"] or "*" in r["resources"] for r in rules)
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": CONTROLLER_NAMESPACE}
    ]


def test_leader_election_is_limited_to_its_lease_in_kube_system(objects: list[Obj]) -> None:
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == CONTROLLER_NAMESPACE
    leases = [r for r in role["rules"] if r["resources"] == ["leases"]]
    assert all(r["apiGroups"] == ["coordination.k8s.io"] for r in leases)
    named = [r for r in leases if r.get("resourceNames")]
    assert named and named[0]["resourceNames"] == ["aws-load-balancer-controller-leader"]
    assert {"get", "update"} <= set(named[0]["verbs"])
    assert any(r["verbs"] == ["create"] for r in leases)
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == SERVICE_ACCOUNT


# ---- reading an existing controller -------------------------------------------------------------


def deployment_with(*containers: Obj) -> Obj:
    return {"spec": {"template": {"spec": {"containers": list(containers)}}}}


def test_cluster_name_of_reads_either_flag_form() -> None:
    joined = deployment_with({"args": ["--ingress-class=alb", "--cluster-name=prod"]})
    split = deployment_with(
        {"name": "sidecar"}, {"args": ["--cluster-name", "staging", "--aws-region=x"]}
    )
    assert cluster_name_of(joined) == "prod"
    assert cluster_name_of(split) == "staging"


def test_cluster_name_of_without_the_flag_is_none() -> None:
    assert cluster_name_of(deployment_with({"args": ["--ingress-class=alb"]})) is None
    assert cluster_name_of(deployment_with({"args": ["--cluster-name"]})) is None
    assert cluster_name_of(deployment_with({})) is None
    assert cluster_name_of({}) is None


def test_cluster_name_of_reads_what_the_builder_wrote(objects: list[Obj]) -> None:
    assert cluster_name_of(one(objects, "Deployment")) == "kube-eks-cluster"


# ---- IAM ----------------------------------------------------------------------------------------


def test_the_oidc_provider_arn() -> None:
    assert oidc_provider_arn("123456789012", ISSUER) == PROVIDER_ARN


def test_the_trust_policy_admits_only_the_controllers_service_account() -> None:
    assert trust_policy(oidc_provider_arn=PROVIDER_ARN, issuer=ISSUER) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER_ARN},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{ISSUER_HOST}:sub": CONTROLLER_SUBJECT,
                        f"{ISSUER_HOST}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def test_the_trust_policy_for_another_service_account() -> None:
    trust = trust_policy(
        oidc_provider_arn=PROVIDER_ARN, issuer=ISSUER, namespace="ns", service_account="sa"
    )
    (statement,) = trust["Statement"]
    assert (
        statement["Condition"]["StringEquals"][f"{ISSUER_HOST}:sub"]
        == "system:serviceaccount:ns:sa"
    )


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_controller_policy_is_valid_iam_json() -> None:
    policy = controller_policy()
    assert policy["Version"] == "2012-10-17"
    assert isinstance(policy["Statement"], list) and policy["Statement"]
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
        assert statement["Effect"] == "Allow"
        actions = listed(statement["Action"])
        assert actions and all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", a) for a in actions)
        assert all(r == "*" or r.startswith("arn:aws:") for r in listed(statement["Resource"]))
    # A managed policy may hold 6,144 characters, white space not counted.
    assert len(re.sub(r"\s", "", json.dumps(policy))) <= 6144


def actions_of(policy: Obj) -> dict[str, list[Obj]]:
    found: dict[str, list[Obj]] = {}
    for statement in policy["Statement"]:
        for action in listed(statement["Action"]):
            found.setdefault(action, []).append(statement)
    return found


def test_the_controller_policy_lets_it_build_load_balancers() -> None:
    actions = actions_of(controller_policy())
    for action in (
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:RegisterTargets",
        "ec2:CreateSecurityGroup",
        "ec2:DescribeSubnets",
        "acm:DescribeCertificate",
        "acm:ListCertificates",
        "iam:CreateServiceLinkedRole",
        "wafv2:AssociateWebACL",
        "shield:GetSubscriptionState",
        "cognito-idp:DescribeUserPoolClient",
    ):
        assert action in actions, action


def test_creating_and_deleting_is_tied_to_the_cluster_tag() -> None:
    actions = actions_of(controller_policy())
    (create,) = actions["elasticloadbalancing:CreateLoadBalancer"]
    assert create["Condition"] == {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}}
    for action in ("elasticloadbalancing:DeleteLoadBalancer", "ec2:DeleteSecurityGroup"):
        (statement,) = actions[action]
        assert statement["Condition"]["Null"]["aws:ResourceTag/elbv2.k8s.aws/cluster"] == "false"
    (linked,) = actions["iam:CreateServiceLinkedRole"]
    assert linked["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}
    }


def test_iam_accepts_both_documents(moto_env: str) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        iam = boto3.client("iam")
        arn = iam.create_policy(PolicyName="alb", PolicyDocument=json.dumps(controller_policy()))[
            "Policy"
        ]["Arn"]
        trust = trust_policy(oidc_provider_arn=PROVIDER_ARN, issuer=ISSUER)
        iam.create_role(RoleName="alb", AssumeRolePolicyDocument=json.dumps(trust))
        # What IAM stored is what was built: nothing dropped or rewritten.
        version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
        assert _document(version["Document"]) == controller_policy()
        assert _document(iam.get_role(RoleName="alb")["Role"]["AssumeRolePolicyDocument"]) == trust


def _document(stored: Any) -> Any:
    """IAM returns a policy document URL-encoded, or (boto3) already parsed."""
    return stored if isinstance(stored, dict) else json.loads(urllib.parse.unquote(stored))


# ---- one bundle per controller release ---------------------------------------------------------

# The effective permissions of upstream's docs/install/iam_policy.json at each bundled
# release's tag of github.com/kubernetes-sigs/aws-load-balancer-controller, as the sha256 of
# `json.dumps(permissions(document))` (permissions: orchestrator.builders.
# controller_manifests). Recompute one with, in a clone of upstream:
#   git show v3.5.0:docs/install/iam_policy.json | python -c 'import json, sys, hashlib;
#   from orchestrator.builders.controller_manifests import permissions;
#   print(hashlib.sha256(json.dumps(permissions(json.load(sys.stdin))).encode()).hexdigest())'
# The file is byte-identical from v2.13.1 to v3.5.0, so both digests are the same.
UPSTREAM_PERMISSIONS = {
    "v3.4.3": "fd399c6ca968d382abbada85cc217482ac2e1e190e9c4ecf26a52694836e78fe",
    "v3.5.0": "fd399c6ca968d382abbada85cc217482ac2e1e190e9c4ecf26a52694836e78fe",
}


def permissions_digest(document: Obj) -> str:
    return hashlib.sha256(json.dumps(permissions(document)).encode()).hexdigest()


def test_each_bundled_release_has_its_manifests_and_policy_and_the_newest_is_the_default() -> None:
    bundled = resources.files("orchestrator.builders").joinpath("manifests")
    assert sorted(d.name for d in bundled.iterdir() if d.is_dir()) == sorted(BUNDLED_VERSIONS)
    assert set(UPSTREAM_PERMISSIONS) == set(BUNDLED_VERSIONS)
    assert max(BUNDLED_VERSIONS, key=parse_version) == BUNDLED_VERSION


@pytest.mark.parametrize("version", BUNDLED_VERSIONS)
def test_each_bundle_runs_the_image_of_its_release(
    pems: tuple[str, str, str], version: str
) -> None:
    deployment = one(build(pems, version=version), "Deployment")
    assert controller_version(deployment) == parse_version(version)
    mirrored = one(build(pems, version=version, image_repository="r.example/alb"), "Deployment")
    image = mirrored["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"r.example/alb:{version}"


@pytest.mark.parametrize("version", BUNDLED_VERSIONS)
def test_each_bundles_policy_grants_what_upstreams_policy_of_that_release_grants(
    version: str,
) -> None:
    assert permissions_digest(controller_policy(version=version)) == UPSTREAM_PERMISSIONS[version]


def test_permissions_do_not_depend_on_how_statements_are_cut() -> None:
    cut_one_way = {
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": ["ec2:A", "ec2:B"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "ec2:A",
                "Resource": "*",
                "Condition": {"Null": {"aws:ResourceTag/t": "false"}},
            },
            {
                "Effect": "Allow",
                "Action": "ec2:C",
                "Resource": ["x", "y"],
                "Condition": {"StringEquals": {"k": ["b", "a"]}},
            },
        ]
    }
    cut_another = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ec2:C",
                "Resource": "y",
                "Condition": {"StringEquals": {"k": ["a", "b"]}},
            },
            {"Effect": "Allow", "Action": "ec2:B", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["ec2:C"],
                "Resource": "x",
                "Condition": {"StringEquals": {"k": ["a", "b"]}},
            },
            {"Effect": "Allow", "Action": "ec2:A", "Resource": ["*"]},
        ]
    }
    assert permissions(cut_one_way) == permissions(cut_another)
    narrower = {"Statement": cut_another["Statement"][:-1]}
    assert permissions(narrower) != permissions(cut_one_way)


def test_an_unbundled_release_is_refused() -> None:
    with pytest.raises(ValueError, match="v3.5.0"):
        controller_policy(version="v9.9.9")
