"""The sandbox world's physics, seen only through public APIs (boto3, the Kubernetes client,
DNS and TLS): Deployments roll out, the simulated AWS Load Balancer Controller keeps to the
real one's preconditions, and the ALBs' HTTPS endpoint answers under the right names."""

from __future__ import annotations

import json
import ssl
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sandbox_support import World, binding_crd, wait_for

from orchestrator.states.endpoint import tunnel
from orchestrator_sandbox.albmodel import ModelError, parse_listen_ports, resource_name
from orchestrator_sandbox.irsa import policy_decision, trust_allows
from orchestrator_sandbox.pki import SandboxCA
from orchestrator_sandbox.tlsendpoint import balancer_name, covers

CLUSTER = "kube-eks-cluster"
SUBDOMAIN = "platform.example.com"
HOST = f"kubeflow.{SUBDOMAIN}"
ACCOUNT = "123456789012"
CONTROLLER = "aws-load-balancer-controller"  # its Deployment and ServiceAccount
ROLE = "alb-controller"
CREATE_LB = "elasticloadbalancing:CreateLoadBalancer"
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
INGRESS = ("istio-system", "istio-ingress")
DEADLINE = 15.0


# ---- the pure parts ----------------------------------------------------------------------------


def test_policy_evaluation_handles_strings_lists_wildcards_and_deny() -> None:
    allow = {"Statement": {"Effect": "Allow", "Action": "elasticloadbalancing:*"}}
    assert policy_decision([allow], CREATE_LB) == "allow"
    assert policy_decision([{"Statement": [{"Effect": "Allow", "Action": ["*"]}]}], CREATE_LB)
    narrow = {"Statement": [{"Effect": "Allow", "Action": ["elasticloadbalancing:Describe*"]}]}
    assert policy_decision([narrow], CREATE_LB) is None
    deny = {"Statement": [{"Effect": "Deny", "Action": CREATE_LB}]}
    assert policy_decision([allow, deny], CREATE_LB) == "deny"


def test_trust_needs_the_provider_the_subject_and_the_audience() -> None:
    host = "oidc.example/id/X"
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
    subject = f"system:serviceaccount:kube-system:{CONTROLLER}"
    trust = web_identity_trust(provider, host)
    assert trust_allows(trust, provider, host, subject)
    assert not trust_allows(trust, provider + "Y", host + "Y", subject)
    assert not trust_allows(trust, provider, host, subject + "-other")
    trust["Statement"][0]["Condition"]["StringEquals"][f"{host}:aud"] = "someone-else"
    assert not trust_allows(trust, provider, host, subject)


def test_names_listen_ports_and_certificate_coverage() -> None:
    name = resource_name("istio-system", "istio-ingress", CLUSTER, "x")
    assert name.startswith("k8s-istiosys-istioing-") and len(name) == 32
    assert parse_listen_ports(None) == (("HTTP", 80),)
    assert parse_listen_ports('[{"HTTP": 80}, {"HTTPS": 443}]') == (("HTTP", 80), ("HTTPS", 443))
    with pytest.raises(ModelError, match="listen-ports"):
        parse_listen_ports("[80]")
    assert covers("*.platform.example.com", "KUBEFLOW.platform.example.com.")
    assert not covers("*.platform.example.com", "a.b.platform.example.com")
    assert not covers("*.platform.example.com", "platform.example.com")
    lb = "k8s-a-b-1.us-west-2.elb.amazonaws.com"
    assert balancer_name(f"DualStack.{lb.upper()}.") == lb


def test_sandbox_ca_is_made_once_per_directory_and_issues_server_leaves(tmp_path: Path) -> None:
    first = SandboxCA(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    assert SandboxCA(tmp_path).cert_path.read_bytes() == first.cert_path.read_bytes()
    leaf_file = first.leaf(["*.platform.example.com", "platform.example.com"])
    assert first.leaf(("*.platform.example.com", "platform.example.com")) == leaf_file
    leaf = x509.load_pem_x509_certificate(leaf_file.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "*.platform.example.com",
        "platform.example.com",
    ]
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.issuer == x509.load_pem_x509_certificate(first.cert_path.read_bytes()).subject


# ---- fixtures and Kubernetes helpers (through the official client) ------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with World.up(tmp_path_factory.mktemp("sandbox") / "world", acm_delay=0.5, alb_delay=0.5) as w:
        yield w


@pytest.fixture(scope="module")
def kube(sandbox: World) -> Any:
    from kubernetes import config, dynamic

    return dynamic.DynamicClient(config.new_client_from_config(sandbox.env["KUBECONFIG"]))


def resource(kube: Any, api_version: str, kind: str) -> Any:
    return kube.resources.get(api_version=api_version, kind=kind)


def create(kube: Any, obj: dict[str, Any]) -> None:
    namespace = obj["metadata"].get("namespace")
    resource(kube, obj["apiVersion"], obj["kind"]).create(body=obj, namespace=namespace)


def merge_patch(kube: Any, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    resource(kube, obj["apiVersion"], obj["kind"]).patch(
        body=obj,
        name=meta["name"],
        namespace=meta.get("namespace"),
        content_type="application/merge-patch+json",
    )


def get(kube: Any, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return resource(kube, api_version, kind).get(name=name, namespace=namespace).to_dict()


def conditions(kube: Any, name: str, namespace: str) -> dict[str, dict[str, Any]]:
    status = get(kube, "apps/v1", "Deployment", name, namespace).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}


def events_of(kube: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = resource(kube, "v1", "Event").get(
        namespace=namespace, field_selector=f"involvedObject.name={name}"
    )
    return [item.to_dict() for item in listed.items]


def event(kube: Any, reason: str, text: str = "") -> Callable[[], dict[str, Any] | None]:
    """A probe for the Ingress's Event with `reason` whose message contains `text`."""

    def found() -> dict[str, Any] | None:
        matching = [
            e for e in events_of(kube, *INGRESS) if e["reason"] == reason and text in e["message"]
        ]
        return matching[0] if matching else None

    return found


def stays(condition: Callable[[], Any], seconds: float, what: str) -> None:
    """Assert `condition` holds throughout a short observation window (to see an absence)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert condition(), what
        time.sleep(0.05)


# ---- manifests ---------------------------------------------------------------------------------


def service_account(name: str, namespace: str, role_arn: str | None = None) -> dict[str, Any]:
    annotations = {"eks.amazonaws.com/role-arn": role_arn} if role_arn else {}
    meta = {"name": name, "namespace": namespace, "annotations": annotations}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def service(name: str, namespace: str) -> dict[str, Any]:
    spec = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def deployment(name: str, namespace: str, account: str, cluster: str = "") -> dict[str, Any]:
    args = [f"--cluster-name={cluster}", "--ingress-class=alb"] if cluster else []
    container = {"name": "main", "image": "public.ecr.aws/example/app:1", "args": args}
    pod = {"serviceAccountName": account, "containers": [container]}
    spec = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
    }
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def ingress(name: str, namespace: str, backend: str, certificate: str) -> dict[str, Any]:
    """An Ingress like the one the orchestrator applies."""
    prefix = "alb.ingress.kubernetes.io/"
    annotations = {
        prefix + "scheme": "internet-facing",
        prefix + "target-type": "ip",
        prefix + "certificate-arn": certificate,
        prefix + "listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
        prefix + "ssl-redirect": "443",
        prefix + "ssl-policy": SSL_POLICY,
        prefix + "load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true",
        prefix + "healthcheck-path": "/healthz/ready",
        prefix + "healthcheck-port": "15021",
        prefix + "tags": "team=platform,orchestrator:deployment=test",
    }
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": backend, "port": {"number": 80}}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [path]}}]},
    }


# ---- AWS helpers -------------------------------------------------------------------------------


def web_identity_trust(provider_arn: str, issuer_host: str) -> dict[str, Any]:
    claims = {
        f"{issuer_host}:sub": f"system:serviceaccount:kube-system:{CONTROLLER}",
        f"{issuer_host}:aud": "sts.amazonaws.com",
    }
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": claims},
    }
    return {"Version": "2012-10-17", "Statement": [statement]}


def allowing(*actions: str) -> str:
    statement = {"Effect": "Allow", "Action": list(actions), "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def load_balancers(w: World) -> list[dict[str, Any]]:
    return w.client("elbv2").describe_load_balancers()["LoadBalancers"]


def tags_of(w: World, arn: str) -> dict[str, str]:
    described = w.client("elbv2").describe_tags(ResourceArns=[arn])["TagDescriptions"][0]
    return {t["Key"]: t["Value"] for t in described["Tags"]}


def balancer_of(w: World, stack: str) -> dict[str, Any] | None:
    """The ALB the controller made for the Ingress `stack` (<ns>/<name>), found by its tags."""
    for balancer in load_balancers(w):
        if tags_of(w, balancer["LoadBalancerArn"]).get("ingress.k8s.aws/stack") == stack:
            return balancer
    return None


def listeners_of(w: World, balancer_arn: str) -> dict[tuple[str, int], dict[str, Any]]:
    listed = w.client("elbv2").describe_listeners(LoadBalancerArn=balancer_arn)["Listeners"]
    return {(x["Protocol"], x["Port"]): x for x in listed}


def in_use_by(w: World, certificate: str) -> list[str]:
    described = w.client("acm").describe_certificate(CertificateArn=certificate)["Certificate"]
    return described.get("InUseBy", [])


def upsert(w: World, zone_id: str, record: dict[str, Any]) -> None:
    change = {"Action": "UPSERT", "ResourceRecordSet": record}

    def accepted() -> bool:
        try:
            w.client("route53").change_resource_record_sets(
                HostedZoneId=zone_id, ChangeBatch={"Changes": [change]}
            )
        except ClientError as error:
            # Route 53 learns of a new ALB a moment after its creation (alias_delay).
            if "but that target was not found" in str(error):
                return False
            # A request beyond the account's five a second changed nothing: not an answer.
            if error.response["Error"]["Code"] == "Throttling":
                return False
            raise
        return True

    # Asked at most four times a second, within Route 53's five for the account.
    wait_for(accepted, timeout=30, every=0.25, what=f"Route 53 to accept {record['Name']}")


def delegated_zone(w: World) -> str:
    """The subdomain's hosted zone, delegated from the root zone as the orchestrator does."""
    zone = w.client("route53").create_hosted_zone(Name=SUBDOMAIN, CallerReference="test-world")
    servers = [{"Value": s} for s in zone["DelegationSet"]["NameServers"]]
    record = {"Name": SUBDOMAIN, "Type": "NS", "TTL": 300, "ResourceRecords": servers}
    upsert(w, w.root_zone_id, record)
    return zone["HostedZone"]["Id"].split("/")[-1]


def request_certificate(w: World, domain: str) -> str:
    return w.client("acm").request_certificate(DomainName=domain, ValidationMethod="DNS")[
        "CertificateArn"
    ]


def validate(w: World, zone_id: str, certificate: str) -> None:
    """Write the certificate's validation CNAME; ACM issues it once that resolves."""
    acm = w.client("acm")
    described = acm.describe_certificate(CertificateArn=certificate)["Certificate"]
    record = described["DomainValidationOptions"][0]["ResourceRecord"]
    values = [{"Value": record["Value"]}]
    cname = {"Name": record["Name"], "Type": "CNAME", "TTL": 300, "ResourceRecords": values}
    upsert(w, zone_id, cname)

    def issued() -> bool:
        status = acm.describe_certificate(CertificateArn=certificate)["Certificate"]["Status"]
        return status == "ISSUED"

    wait_for(issued, timeout=DEADLINE, what=f"{certificate} to be issued")


# ---- Deployments -------------------------------------------------------------------------------


def test_deployments_become_available_only_with_their_service_account(
    sandbox: World, kube: Any
) -> None:
    create(kube, service_account("runner", "kubeflow"))
    create(kube, deployment("ready", "kubeflow", "runner"))
    create(kube, deployment("orphan", "kubeflow", "ghost"))

    def ready() -> bool:
        found = get(kube, "apps/v1", "Deployment", "ready", "kubeflow")
        status = found.get("status") or {}
        return (
            conditions(kube, "ready", "kubeflow").get("Available", {}).get("status") == "True"
            and status.get("availableReplicas") == status.get("readyReplicas") == 2
            and status.get("observedGeneration") == found["metadata"]["generation"]
        )

    wait_for(ready, timeout=DEADLINE, what="Deployment kubeflow/ready to be available")
    failure = wait_for(
        lambda: conditions(kube, "orphan", "kubeflow").get("ReplicaFailure"),
        timeout=DEADLINE,
        what="a ReplicaFailure condition on kubeflow/orphan",
    )
    assert failure["status"] == "True"
    assert failure["message"].endswith(
        'error looking up service account kubeflow/ghost: serviceaccount "ghost" not found'
    )
    assert conditions(kube, "orphan", "kubeflow")["Available"]["status"] == "False"
    status = get(kube, "apps/v1", "Deployment", "orphan", "kubeflow")["status"]
    assert not status.get("availableReplicas")


# ---- the load balancer controller ---------------------------------------------------------------


class Estate:
    """The controller's AWS and Kubernetes surroundings, put right one step at a time."""

    def __init__(self, w: World, kube: Any) -> None:
        self.w, self.kube = w, kube
        self.iam = w.client("iam")
        issuer = w.client("eks").describe_cluster(name=CLUSTER)["cluster"]["identity"]["oidc"]
        self.issuer_host = issuer["issuer"].removeprefix("https://")
        self.provider_arn = ""

    def install_controller(self, cluster: str) -> None:
        create(self.kube, binding_crd())  # shipped with the controller's manifests
        create(self.kube, service_account(CONTROLLER, "kube-system"))
        create(self.kube, deployment(CONTROLLER, "kube-system", CONTROLLER, cluster))

    def controller_available(self) -> bool:
        available = conditions(self.kube, CONTROLLER, "kube-system").get("Available", {})
        return available.get("status") == "True"

    def serve_this_cluster(self) -> None:
        merge_patch(self.kube, deployment(CONTROLLER, "kube-system", CONTROLLER, CLUSTER))

    def annotate_with_untrusting_role(self) -> None:
        trust = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ]
        }
        role = self.iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
        account = service_account(CONTROLLER, "kube-system", role["Role"]["Arn"])
        merge_patch(self.kube, account)

    def create_oidc_provider(self) -> None:
        self.provider_arn = self.iam.create_open_id_connect_provider(
            Url=f"https://{self.issuer_host}",
            ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
        )["OpenIDConnectProviderArn"]

    def trust_with_describe_only_policy(self) -> None:
        trust = web_identity_trust(self.provider_arn, self.issuer_host)
        self.iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(trust))
        self._attach("describe-only", allowing("elasticloadbalancing:Describe*"))

    def allow_load_balancers(self) -> None:
        self._attach("controller", allowing("elasticloadbalancing:*", "ec2:*"))

    def _attach(self, name: str, document: str) -> None:
        arn = self.iam.create_policy(PolicyName=name, PolicyDocument=document)["Policy"]["Arn"]
        self.iam.attach_role_policy(RoleName=ROLE, PolicyArn=arn)


def test_alb_controller_preconditions_alb_endpoint_and_deletion(sandbox: World, kube: Any) -> None:
    w, estate = sandbox, Estate(sandbox, kube)
    zone_id = delegated_zone(w)
    certificate = request_certificate(w, f"*.{SUBDOMAIN}")
    create(kube, ingress(INGRESS[1], INGRESS[0], "istio-ingressgateway", certificate))

    def quiet() -> bool:
        return not events_of(kube, *INGRESS) and not load_balancers(w)

    # No controller runs: no ALB and no Events. Nor while it serves another cluster.
    stays(quiet, 1.0, "an Event or an ALB without a controller")
    estate.install_controller(cluster="someone-elses-cluster")
    wait_for(estate.controller_available, timeout=DEADLINE, what="the controller to run")
    stays(quiet, 1.0, "an Event or an ALB from the controller of another cluster")
    estate.serve_this_cluster()

    # Each unmet precondition is a Warning Event on the Ingress (and no ALB); then it is met.
    # (Subnets are no precondition here: untagged, the seeded VPC's public subnets are found
    # by their route tables; discovery is proven in test_sandbox_alb.)
    steps = [
        (
            "FailedDeployModel",
            "Failed deploy model due to NoCredentialProviders: no valid providers in chain",
            estate.annotate_with_untrusting_role,
        ),
        (
            "FailedDeployModel",
            "Failed deploy model due to WebIdentityErr: failed to retrieve credentials\n"
            "caused by: InvalidIdentityToken: No OpenIDConnect provider found in your account "
            f"for https://{estate.issuer_host}",
            estate.create_oidc_provider,
        ),
        (
            "FailedDeployModel",
            "Failed deploy model due to WebIdentityErr: failed to retrieve credentials\n"
            "caused by: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity",
            estate.trust_with_describe_only_policy,
        ),
        (
            "FailedDeployModel",
            f"Failed deploy model due to AccessDenied: User: arn:aws:sts::{ACCOUNT}:"
            f"assumed-role/{ROLE}/",
            estate.allow_load_balancers,
        ),
    ]
    for reason, text, put_right in steps:
        expect_warning(w, kube, reason, text)
        put_right()
    denied = event(kube, "FailedDeployModel", f"is not authorized to perform: {CREATE_LB}")()
    assert denied and denied["message"].endswith(
        f"because no identity-based policy allows the {CREATE_LB} action"
    )
    unsupported = (
        f"Failed deploy model due to UnsupportedCertificate: The certificate '{certificate}' "
        "must have a fully-qualified domain name, a supported signature, and a supported key size."
    )
    expect_warning(w, kube, "FailedDeployModel", unsupported)
    # Retried on every pass: the same Event counts up, rather than new ones piling up.
    repeated = event(kube, "FailedDeployModel", unsupported)
    wait_for(lambda: repeated()["count"] >= 2, timeout=DEADLINE, what="the Event to repeat")
    assert [e["message"] for e in events_of(kube, *INGRESS)].count(unsupported) == 1

    # Once the certificate is issued, the ALB follows.
    validate(w, zone_id, certificate)
    balancer = wait_for(lambda: balancer_of(w, "/".join(INGRESS)), timeout=DEADLINE, what="ALB")
    check_alb(w, kube, balancer, certificate)
    check_tls_endpoint(w, zone_id, balancer)
    second = check_second_ingress_and_new_certificate(w, kube, zone_id, certificate)

    # Deleting the Ingresses deletes their ALBs, target groups and security groups; each
    # Ingress stays (Terminating, the controller's finalizer) until all of that is gone.
    ingresses = resource(kube, "networking.k8s.io/v1", "Ingress")
    for namespace, name in (INGRESS, ("kubeflow", "dashboard")):
        ingresses.delete(name=name, namespace=namespace)
    elbv2, ec2 = w.client("elbv2"), w.client("ec2")
    wait_for(
        lambda: not load_balancers(w) and not elbv2.describe_target_groups()["TargetGroups"],
        timeout=DEADLINE,
        what="the ALBs and target groups to go",
    )
    assert in_use_by(w, certificate) == [] and in_use_by(w, second) == []
    ours = [{"Name": "tag:elbv2.k8s.aws/cluster", "Values": [CLUSTER]}]
    wait_for(
        lambda: not ec2.describe_security_groups(Filters=ours)["SecurityGroups"],
        timeout=DEADLINE,
        what="the security groups to go once the ALBs' interfaces drain",
    )
    wait_for(
        lambda: (
            not ingresses.get(namespace=INGRESS[0]).items
            and not ingresses.get(namespace="kubeflow").items
        ),
        timeout=DEADLINE,
        what="the Ingresses to go once their finalizer is removed",
    )


def expect_warning(w: World, kube: Any, reason: str, text: str) -> None:
    found = wait_for(event(kube, reason, text), timeout=DEADLINE, what=f"{reason}: {text!r}")
    assert (found["type"], found["source"]["component"]) == ("Warning", "ingress")
    assert not load_balancers(w)


def check_alb(w: World, kube: Any, balancer: dict[str, Any], certificate: str) -> None:
    elbv2, arn = w.client("elbv2"), balancer["LoadBalancerArn"]
    assert (balancer["Scheme"], balancer["Type"]) == ("internet-facing", "application")

    # The hostname is published once the whole stack is deployed (listeners come after the ALB).
    def hostname() -> str | None:
        live = get(kube, "networking.k8s.io/v1", "Ingress", INGRESS[1], INGRESS[0])
        entries = ((live.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return entries[0]["hostname"] if entries else None

    assert wait_for(hostname, timeout=DEADLINE, what="the hostname") == balancer["DNSName"]
    assert balancer["LoadBalancerName"].startswith("k8s-istiosys-istioing-")

    def state() -> str:
        return elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]["State"]

    wait_for(lambda: state()["Code"] == "active", timeout=DEADLINE, what="the ALB active")

    listeners = listeners_of(w, arn)
    assert set(listeners) == {("HTTP", 80), ("HTTPS", 443)}
    https = listeners[("HTTPS", 443)]
    assert [c["CertificateArn"] for c in https["Certificates"]] == [certificate]
    assert https["SslPolicy"] == SSL_POLICY
    redirect = listeners[("HTTP", 80)]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    config = redirect["RedirectConfig"]
    assert (config["Protocol"], config["Port"], config["StatusCode"]) == (
        "HTTPS",
        "443",
        "HTTP_301",
    )
    forward = https["DefaultActions"][0]
    assert forward["Type"] == "forward"

    tags = tags_of(w, arn)
    assert tags["elbv2.k8s.aws/cluster"] == CLUSTER
    assert tags["ingress.k8s.aws/stack"] == "istio-system/istio-ingress"
    assert tags["ingress.k8s.aws/resource"] == "LoadBalancer"
    assert (tags["team"], tags["orchestrator:deployment"]) == ("platform", "test")
    groups = elbv2.describe_target_groups(TargetGroupArns=[forward["TargetGroupArn"]])
    group = groups["TargetGroups"][0]
    # For ip targets, the port the pods listen on: the Service's targetPort.
    assert (group["TargetType"], group["Protocol"], group["Port"]) == ("ip", "HTTP", 8080)
    assert (group["HealthCheckPath"], group["HealthCheckPort"]) == ("/healthz/ready", "15021")
    assert tags_of(w, group["TargetGroupArn"])["ingress.k8s.aws/stack"] == "/".join(INGRESS)
    attributes = elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    drop = {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"}
    assert drop in attributes
    security = w.client("ec2").describe_security_groups(GroupIds=balancer["SecurityGroups"])
    groups = {g["GroupName"].split("-")[1]: g for g in security["SecurityGroups"]}
    assert set(groups) == {"istiosys", "traffic"}  # the stack's frontend and the shared backend
    frontend = {t["Key"]: t["Value"] for t in groups["istiosys"]["Tags"]}
    assert frontend["elbv2.k8s.aws/cluster"] == CLUSTER
    assert frontend["ingress.k8s.aws/resource"] == "ManagedLBSecurityGroup"
    assert {p["FromPort"] for p in groups["istiosys"]["IpPermissions"]} == {80, 443}

    assert in_use_by(w, certificate) == [arn]
    success = wait_for(event(kube, "SuccessfullyReconciled"), timeout=DEADLINE, what="success")
    assert (success["type"], success["message"]) == ("Normal", "Successfully reconciled")


def check_tls_endpoint(w: World, zone_id: str, balancer: dict[str, Any]) -> None:
    """kubeflow.<subdomain> -> (alias) the ALB -> the world's endpoint, TLS-verified."""
    alias = {
        "HostedZoneId": balancer["CanonicalHostedZoneId"],
        "DNSName": f"dualstack.{balancer['DNSName']}",
        "EvaluateTargetHealth": True,
    }
    upsert(w, zone_id, {"Name": HOST, "Type": "A", "AliasTarget": alias})
    server, _, port = w.env["ORCHESTRATOR_DNS_SERVERS"].partition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [server], int(port or 53)
    address = w.info["endpoints"]["alb"]

    def resolves() -> list[str] | None:
        # Route 53 serves the record once the change is INSYNC, a moment after the write.
        try:
            return [r.address for r in resolver.resolve(HOST, "A")]
        except dns.resolver.NXDOMAIN:
            return None

    assert wait_for(resolves, timeout=15, what="the alias to resolve") == [address]

    assert w.env["SSL_CERT_FILE"] == str(w.directory / "ca.pem")
    context = ssl.create_default_context(cafile=str(w.directory / "ca.pem"))
    # As any user reaches it: through the world's proxy, which the env names.
    proxy = w.env["HTTPS_PROXY"]
    assert proxy == w.info["endpoints"]["proxy"] == w.env["https_proxy"]

    def answer() -> str:
        with (
            tunnel(proxy, HOST, 443) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            return tls.makefile("rb").read().decode()

    def kubeflow_answers() -> str | None:
        # The ALB's own 503 until a target is healthy (new targets are `initial` a while).
        text = answer()
        if text.startswith("HTTP/1.1 503 Service Temporarily Unavailable\r\n"):
            return None
        return text

    answered = wait_for(kubeflow_answers, timeout=DEADLINE, what="a healthy target")
    assert answered.startswith("HTTP/1.1 302 Found\r\n")
    assert "\r\nLocation: /dex/auth?client_id=kubeflow-oidc-authservice&" in answered

    with (
        tunnel(proxy, HOST, 443) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="other.example.org")

    # Plain HTTP on 80: the ALB's redirect to HTTPS.
    with tunnel(proxy, HOST, 80) as plain:
        plain.sendall(f"GET /a?b=c HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        answer = plain.makefile("rb").read().decode()
    assert answer.startswith("HTTP/1.1 301 Moved Permanently\r\n")
    assert f"\r\nLocation: https://{HOST}/a?b=c\r\n" in answer

    # The proxy tunnels to the world's ALBs only.
    with pytest.raises(OSError, match="Tunnel connection failed: 502"):
        tunnel(proxy, "nowhere.example.org", 443)
    with pytest.raises(OSError, match="Tunnel connection failed: 403"):
        tunnel(proxy, HOST, 22)


def check_second_ingress_and_new_certificate(
    w: World, kube: Any, zone_id: str, certificate: str
) -> str:
    """Another Ingress gets its own ALB; a new certificate on it moves its HTTPS listener."""
    first = balancer_of(w, "/".join(INGRESS))["LoadBalancerArn"]  # type: ignore[index]
    create(kube, service("dashboard", "kubeflow"))
    create(kube, ingress("dashboard", "kubeflow", "dashboard", certificate))
    second = wait_for(lambda: balancer_of(w, "kubeflow/dashboard"), timeout=DEADLINE, what="ALB")
    arn = second["LoadBalancerArn"]
    assert arn != first
    wait_for(lambda: sorted(in_use_by(w, certificate)) == sorted([first, arn]), timeout=DEADLINE)

    other = request_certificate(w, HOST)
    validate(w, zone_id, other)
    changed = ingress("dashboard", "kubeflow", "dashboard", other)
    merge_patch(kube, {k: changed[k] for k in ("apiVersion", "kind", "metadata")})
    wait_for(lambda: in_use_by(w, other) == [arn], timeout=DEADLINE, what="the new cert used")
    assert in_use_by(w, certificate) == [first]
    https = listeners_of(w, arn)[("HTTPS", 443)]
    assert [c["CertificateArn"] for c in https["Certificates"]] == [other]
    return other
