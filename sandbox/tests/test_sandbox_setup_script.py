"""`sandbox up --setup-script`: a deployment made as the old setup script makes one
(setupscript.py), and the two rules of the real world it needs: the kubelet expands
`$(VAR)` in a container's arguments, and a CNAME to a load balancer's name resolves."""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sandbox_support import World, wait_for

from kube_api_emulator import ObjectStore
from orchestrator.states.endpoint import tunnel
from orchestrator_sandbox.albcontroller import container_flag
from orchestrator_sandbox.dnsview import Zone, resolve

CLUSTER = "kube-eks-cluster"
SUBDOMAIN = "platform.example.com"
HOST = f"kubeflow.{SUBDOMAIN}"


# ---- the world's rules ---------------------------------------------------------------------------


def controller(args: list[str], env: list[dict[str, Any]]) -> dict[str, Any]:
    container = {"name": "controller", "image": "x:v2.4.7", "args": args, "env": env}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system"},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def test_the_kubelet_expands_variables_in_a_containers_arguments() -> None:
    store = ObjectStore()
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "kube-system"},
            "data": {"clusterName": CLUSTER},
        }
    )
    from_map = {"configMapKeyRef": {"name": "settings", "key": "clusterName"}}
    env = [
        {"name": "CLUSTER_NAME", "valueFrom": from_map},
        {"name": "VPC", "value": "vpc-1"},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k"}}},
    ]
    deployment = controller(
        ["--cluster-name=$(CLUSTER_NAME)", "--aws-vpc-id", "$(VPC)", "--x=$(MISSING)$$"], env
    )

    assert container_flag(deployment, "--cluster-name", store) == CLUSTER
    assert container_flag(deployment, "--aws-vpc-id", store) == "vpc-1"
    # A reference that cannot be resolved stays as written; `$$` is a `$`.
    assert container_flag(deployment, "--x", store) == "$(MISSING)$"


def test_a_cname_to_a_load_balancers_name_resolves() -> None:
    alb = "k8s-istiosys-istioing-0123456789-1.us-west-2.elb.amazonaws.com"
    zone = Zone("Z1", SUBDOMAIN)
    zone.records[(HOST, "CNAME")] = {
        "Type": "CNAME",
        "TTL": 300,
        "ResourceRecords": [{"Value": alb}],
    }

    def active(name: str) -> list[str]:
        return ["127.0.0.1"] if name == alb else []

    answer = resolve([zone], HOST, "A", active)

    assert answer.rcode == "NOERROR"
    assert answer.records == [(HOST, "CNAME", 300, alb), (alb, "A", 60, "127.0.0.1")]
    # A load balancer that is not active (or not there) does not resolve.
    assert resolve([zone], HOST, "A", lambda _name: []).rcode == "NXDOMAIN"


def test_a_cname_holds_its_name_alone() -> None:
    """Route 53 refuses an A beside the script's CNAME (and a CNAME beside an A); one batch
    that deletes the CNAME and creates the A replaces it."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from orchestrator_sandbox.route53 import make_route53_strict

    cname = {"Name": HOST, "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": "a.b."}]}
    a_record = {"Name": HOST, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]}

    def change(*changes: tuple[str, dict[str, Any]]) -> None:
        batch = [{"Action": action, "ResourceRecordSet": rrset} for action, rrset in changes]
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": batch})

    with mock_aws():
        make_route53_strict()
        route53 = boto3.client("route53", region_name="us-east-1")
        zone_id = route53.create_hosted_zone(Name=SUBDOMAIN, CallerReference="z")["HostedZone"][
            "Id"
        ]
        change(("CREATE", cname))
        with pytest.raises(ClientError) as refused:
            change(("UPSERT", a_record))
        assert refused.value.response["Error"]["Code"] == "InvalidChangeBatch"
        assert "conflicting RRSet of type  CNAME" in refused.value.response["Error"]["Message"]

        change(("DELETE", cname), ("CREATE", a_record))
        with pytest.raises(ClientError) as refused:
            change(("CREATE", cname))
        assert "conflicts with other records" in refused.value.response["Error"]["Message"]


@pytest.mark.parametrize("other", [["--leftovers"], ["--adopted-controller", "v2.4.0"]])
def test_the_setup_script_makes_its_own_controller_alone(
    tmp_path: Path, other: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator_sandbox import cli

    with pytest.raises(SystemExit) as refused:
        cli.main(["up", "--dir", str(tmp_path), "--setup-script", *other])
    assert refused.value.code == 2
    assert "--setup-script makes its own controller" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing started


# ---- the old script's deployment -----------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("setup-script") / "world"
    with World.up(directory, acm_delay=0.3, alb_delay=0.3, setup_script=True) as w:
        yield w


def test_the_zone_and_certificates_are_the_scripts_untagged(world: World) -> None:
    made = world.setup_script
    route53, acm = world.client("route53"), world.client("acm")
    zone = route53.get_hosted_zone(Id=made.zone_id)
    assert zone["HostedZone"]["Name"] == f"{SUBDOMAIN}."
    assert re.fullmatch(rf"{re.escape(SUBDOMAIN)}-[a-z0-9]{{10}}", made.caller_reference)
    assert zone["HostedZone"]["CallerReference"] == made.caller_reference
    tags = route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=made.zone_id)
    assert tags["ResourceTagSet"]["Tags"] == []
    # Delegated from the root zone.
    records = route53.list_resource_record_sets(
        HostedZoneId=world.root_zone_id, StartRecordName=SUBDOMAIN, StartRecordType="NS"
    )["ResourceRecordSets"]
    ns = next(r for r in records if r["Name"] == f"{SUBDOMAIN}." and r["Type"] == "NS")
    servers = zone["DelegationSet"]["NameServers"]
    assert sorted(v["Value"].rstrip(".") for v in ns["ResourceRecords"]) == sorted(
        s.rstrip(".") for s in servers
    )

    for arn, domain in (
        (made.root_certificate_arn, "*.example.com"),
        (made.certificate_arn, f"*.{SUBDOMAIN}"),
    ):
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        assert (cert["DomainName"], cert["Status"]) == (domain, "ISSUED")
        assert arn.split(":")[3] == world.info["seeded"]["region"]
        assert acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", []) == []

    # `kubeflow.<subdomain>` is a CNAME to the ALB, not an alias.
    records = route53.list_resource_record_sets(
        HostedZoneId=made.zone_id, StartRecordName=HOST, StartRecordType="CNAME"
    )["ResourceRecordSets"]
    cname = next(r for r in records if r["Name"] == f"{HOST}.")
    assert cname["Type"] == "CNAME"
    assert cname["ResourceRecords"] == [{"Value": made.alb_dns}]


def test_the_controllers_identity_is_eksctls(world: World) -> None:
    made = world.setup_script
    iam = world.client("iam")
    assert re.fullmatch(rf"alb_ingress_controller_{CLUSTER}[a-z0-9]{{10}}", made.policy_name)
    assert iam.list_policy_tags(PolicyArn=made.policy_arn)["Tags"] == []
    role = iam.get_role(RoleName=made.role_name)["Role"]
    assert made.role_name.startswith(f"eksctl-{CLUSTER}-addon-iamserviceacco")
    assert len(made.role_name) <= 64
    tags = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
    assert tags["alpha.eksctl.io/cluster-name"] == CLUSTER
    assert tags["alpha.eksctl.io/iamserviceaccount-name"] == made.service_account
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    subject = "system:serviceaccount:kube-system:aws-load-balancer-controller"
    assert subject in condition.values()
    attached = iam.list_attached_role_policies(RoleName=made.role_name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [made.policy_arn]


def test_the_kustomize_controller_and_ingress_run(world: World) -> None:
    made = world.setup_script
    from kubernetes import client, config

    api = config.new_client_from_config(str(world.directory / "kubeconfig"))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    account = core.read_namespaced_service_account("aws-load-balancer-controller", "kube-system")
    assert account.metadata.labels["app.kubernetes.io/managed-by"] == "eksctl"
    assert account.metadata.labels["kustomize.component"] == "aws-load-balancer-controller"
    assert account.metadata.annotations["eks.amazonaws.com/role-arn"] == made.role_arn
    deployment = apps.read_namespaced_deployment("aws-load-balancer-controller", "kube-system")
    assert deployment.spec.selector.match_labels == {
        "app.kubernetes.io/component": "controller",
        "app.kubernetes.io/name": "aws-load-balancer-controller",
        "kustomize.component": "aws-load-balancer-controller",
    }
    container = deployment.spec.template.spec.containers[0]
    assert container.image == "public.ecr.aws/eks/aws-load-balancer-controller:v2.4.7"
    assert "--cluster-name=$(CLUSTER_NAME)" in container.args
    assert "app.kubernetes.io/managed-by" not in (deployment.metadata.labels or {})
    secret = core.read_namespaced_secret("aws-load-balancer-webhook-tls", "kube-system")
    assert "tls.crt" in secret.data
    assert base64.b64decode(secret.data["ca.crt"])

    ingress = client.NetworkingV1Api(api).read_namespaced_ingress("istio-ingress", "istio-system")
    annotations = ingress.metadata.annotations
    assert annotations["kubernetes.io/ingress.class"] == "alb"
    assert ingress.spec.ingress_class_name is None
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == made.certificate_arn
    assert ingress.metadata.labels == {"kustomize.component": "istio-ingress"}
    assert ingress.status.load_balancer.ingress[0].hostname == made.alb_dns


def test_the_config_is_written_back_as_the_script_writes_it(world: World) -> None:
    made = world.setup_script
    assert Path(made.config_path) == world.directory / "config-setup-script.yaml"
    written = yaml.safe_load(Path(made.config_path).read_text())
    assert written["route53"]["subDomain"]["hostedZoneId"] == made.zone_id
    assert written["route53"]["subDomain"]["certARN"] == made.certificate_arn
    assert written["route53"]["rootDomain"]["certARN"] == made.root_certificate_arn
    assert written["route53"]["rootDomain"]["hostedZoneId"] == world.root_zone_id
    assert written["kubeflow"]["alb"] == {
        "serviceAccount": {
            "name": "aws-load-balancer-controller",
            "namespace": "kube-system",
            "policyArn": made.policy_arn,
        },
        "dns": made.alb_dns,
        "scheme": "internet-facing",
    }
    assert written["cluster"] == {"name": CLUSTER, "region": world.info["seeded"]["region"]}


def test_the_endpoint_answers(world: World) -> None:
    context = ssl.create_default_context(cafile=str(world.directory / "ca.pem"))
    proxy = world.env["HTTPS_PROXY"]

    def answer() -> str | None:
        with (
            tunnel(proxy, HOST, 443) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            text = tls.makefile("rb").read().decode()
        # The ALB's own 503 until a target is healthy.
        return None if text.startswith("HTTP/1.1 503") else text

    answered = wait_for(answer, timeout=30, what="kubeflow to answer")
    assert answered.startswith("HTTP/1.1 302 Found\r\n")
