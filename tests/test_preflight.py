"""preflight's checks that the config, the credentials and the kubeconfig describe one and
the same cluster, in one partition, with a VPC that can hold the ALB."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
from phasekit import CONFIG, eks_network, phase_kit

from orchestrator import pki
from orchestrator.aws import partition_of
from orchestrator.builders.controller_manifests import (
    controller_policy,
    oidc_provider_arn,
    policy_arn,
)
from orchestrator.errors import PhaseError
from orchestrator.states.preflight import PreflightPhase, other_cluster


def ca_pem(name: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    key = pki.new_key()
    cert = pki.ca_certificate(key, pki.common_name(name), now, now + datetime.timedelta(days=1))
    return pki.cert_pem(cert)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_same_ca_means_the_same_cluster_whatever_the_url() -> None:
    ca = ca_pem("kubernetes")
    assert (
        other_cluster("https://127.0.0.1:6443", ca.encode(), "https://X.eks.aws", b64(ca)) is None
    )


def test_another_ca_is_another_cluster_even_at_the_same_url() -> None:
    problem = other_cluster(
        "https://x.eks.aws", ca_pem("one").encode(), "https://x.eks.aws", b64(ca_pem("two"))
    )
    assert problem is not None and "another cluster's CA" in problem


def test_without_a_ca_the_url_decides() -> None:
    assert other_cluster("https://X.eks.aws:443/", None, "https://x.eks.aws", None) is None
    problem = other_cluster("https://10.0.0.1:6443", None, "https://x.eks.aws", b64(ca_pem("a")))
    assert problem == (
        "its API server is https://10.0.0.1:6443, but EKS reports the cluster's endpoint "
        "https://x.eks.aws"
    )


def test_arns_take_the_callers_partition() -> None:
    assert partition_of("arn:aws-cn:sts::123456789012:assumed-role/x/y") == "aws-cn"
    assert partition_of("arn:aws-us-gov:iam::123456789012:user/me") == "aws-us-gov"
    with pytest.raises(ValueError):
        partition_of("not-an-arn")
    assert oidc_provider_arn(
        "1", "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/X", "aws-cn"
    ) == ("arn:aws-cn:iam::1:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X")
    assert policy_arn("1", "p", "aws-us-gov") == "arn:aws-us-gov:iam::1:policy/p"
    china = str(controller_policy("aws-cn"))
    assert "arn:aws-cn:elasticloadbalancing:" in china and "arn:aws:" not in china
    assert "arn:aws:ec2:" in str(controller_policy())


# ---- the phase, in process ---------------------------------------------------------------------


def seed_cluster(kit: Any, subnet_ids: list[str], endpoint: str) -> None:
    """An ACTIVE EKS cluster in moto whose endpoint is `endpoint` (moto makes up its own)."""
    from moto.eks.models import eks_backends

    iam = kit.client("iam")
    role = iam.create_role(RoleName="eks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    kit.client("eks").create_cluster(
        name=CONFIG.cluster_name,
        roleArn=role,
        resourcesVpcConfig={"subnetIds": subnet_ids},
    )
    cluster = eks_backends["123456789012"]["us-west-2"].clusters[CONFIG.cluster_name]
    cluster.endpoint = endpoint
    cluster.resources_vpc_config = {
        **cluster.resources_vpc_config,
        "vpcId": kit.client("ec2").describe_subnets(SubnetIds=subnet_ids[:1])["Subnets"][0][
            "VpcId"
        ],
    }
    kit.store.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "istio-system"},
        }
    )
    kit.store.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"ports": [{"port": 80}]},
        }
    )


def test_preflight_refuses_a_kubeconfig_for_another_cluster(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        seed_cluster(
            kit, list(network.private.values()), "https://ABCDEF.gr7.us-west-2.eks.amazonaws.com"
        )
        with pytest.raises(PhaseError) as refused:
            PreflightPhase().enter(kit.ctx("preflight"))
        assert "does not point at EKS cluster 'kube-eks-cluster'" in refused.value.message
        assert kit.kube_server.url in refused.value.message
        assert "ABCDEF.gr7" in refused.value.message
        assert "aws eks update-kubeconfig --name kube-eks-cluster" in refused.value.hint


def test_preflight_refuses_a_vpc_without_public_subnets_in_two_zones(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"), zones=("a",))
        seed_cluster(kit, list(network.private.values()), kit.kube_server.url)
        with pytest.raises(PhaseError) as refused:
            PreflightPhase().enter(kit.ctx("preflight"))
        assert "needs public subnets" in refused.value.message
        assert f"us-west-2a ({network.public['us-west-2a']})" in refused.value.message


def test_preflight_records_the_partition_and_the_zones_for_the_alb(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        seed_cluster(kit, list(network.private.values()), kit.kube_server.url)
        ctx = kit.ctx("preflight")
        PreflightPhase().enter(ctx)
        assert ctx.outputs["partition"] == "aws"
        assert ctx.outputs["vpc_id"] == network.vpc_id
        assert ctx.outputs["load_balancer_zones"] == {z: [s] for z, s in network.public.items()}
        assert PreflightPhase().verify(ctx) is None
