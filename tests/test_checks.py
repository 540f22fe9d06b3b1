"""Small rules a real account enforces: what counts as a working endpoint, an impaired ALB,
the webhook's firewall rule, and the controller image for clusters without internet egress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.builders.alb import impaired_warning
from orchestrator.builders.controller_manifests import controller_manifests
from orchestrator.builders.webhook_tls import webhook_certificates
from orchestrator.config import DEFAULT_CONTROLLER_IMAGE_REPOSITORY, load_config
from orchestrator.errors import UsageError
from orchestrator.kube import KubeError
from orchestrator.states import endpoint

CONFIG = """
cluster: {name: kube-eks-cluster, region: cn-north-1}
route53:
  rootDomain: {name: example.com}
  subDomain: {name: platform.example.com}
"""


def test_targets_must_be_healthy_before_the_endpoint_counts() -> None:
    initial = {"State": "initial", "Reason": "Elb.RegistrationInProgress"}
    assert endpoint.unhealthy([]) == "no targets registered"
    assert (
        endpoint.unhealthy([{"TargetHealth": initial}, {"TargetHealth": initial}])
        == "2 initial (Elb.RegistrationInProgress)"
    )
    one_healthy = [{"TargetHealth": initial}, {"TargetHealth": {"State": "healthy"}}]
    assert endpoint.unhealthy(one_healthy) is None
    assert endpoint.unhealthy([{"TargetHealth": {"State": "healthy"}}]) is None


@pytest.mark.parametrize(
    "status, works", [(200, True), (302, True), (404, True), (503, False), (502, False)]
)
def test_an_answer_of_5xx_is_not_a_working_endpoint(
    monkeypatch: pytest.MonkeyPatch, status: int, works: bool
) -> None:
    monkeypatch.setattr(endpoint.resolver, "lookup", lambda host, rtype: ["192.0.2.1"])
    monkeypatch.setattr(
        endpoint,
        "https_check",
        lambda host, address: {"http_status": status, "tls_version": "TLSv1.3"},
    )
    result, problem = endpoint.probe("kubeflow.platform.example.com")
    assert (result is not None) == works
    if not works:
        assert problem == f"https://kubeflow.platform.example.com/ answers HTTP {status}"


def test_an_impaired_alb_is_named_with_its_reason() -> None:
    balancer: dict[str, Any] = {
        "LoadBalancerName": "k8s-istiosys-istioing-0123456789",
        "State": {"Code": "active_impaired", "Reason": "capacity in us-west-2a"},
    }
    warning = impaired_warning(balancer)
    assert "k8s-istiosys-istioing-0123456789 is active_impaired: capacity in us-west-2a" in warning


def test_a_failed_webhook_call_points_at_the_security_group_rule() -> None:
    error = KubeError(
        "apply Ingress istio-ingress",
        500,
        "InternalError",
        'Internal error occurred: failed calling webhook "vingress.elbv2.k8s.aws": failed to '
        'call webhook: Post "https://aws-load-balancer-webhook-service.kube-system.svc:443/'
        'validate-networking-v1-ingress?timeout=10s": context deadline exceeded',
    )
    assert "TCP 9443 from the cluster's control plane security group" in error.hint


def test_the_controller_image_comes_from_the_configured_repository(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    # Not public.ecr.aws, which China's regions cannot pull from: the region's EKS registry.
    path.write_text(CONFIG)
    regional = (
        "918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn/amazon/aws-load-balancer-controller"
    )
    assert load_config(path).controller_image_repository == regional
    mirror = "registry.example.cn/mirror/aws-load-balancer-controller"
    path.write_text(CONFIG + f"kubeflow:\n  alb:\n    controller: {{imageRepository: {mirror}}}\n")
    config = load_config(path)
    assert config.controller_image_repository == mirror
    assert config.settings()["kubeflow.alb.controller.imageRepository"] == mirror
    ca, cert, key = webhook_certificates()
    objects = controller_manifests(
        cluster_name="c",
        region="cn-north-1",
        vpc_id="vpc-1",
        role_arn="arn:aws-cn:iam::1:role/r",
        labels={},
        webhook_ca_pem=ca,
        webhook_cert_pem=cert,
        webhook_key_pem=key,
        image_repository=mirror,
    )
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(mirror + ":v")


def test_a_state_from_before_the_image_setting_resumes_with_the_default(tmp_path: Path) -> None:
    from orchestrator.machine import check_state
    from orchestrator.states import all_phases
    from orchestrator.store import Resource, new_state

    # Before the setting, every deployment ran public.ecr.aws: the default of the aws partition.
    commercial = CONFIG.replace("cn-north-1", "us-west-2")
    path = tmp_path / "config.yaml"
    path.write_text(commercial)
    config = load_config(path)
    assert config.controller_image_repository == DEFAULT_CONTROLLER_IMAGE_REPOSITORY
    phases = all_phases()
    old = {k: v for k, v in config.settings().items() if "imageRepository" not in k}
    state = new_state(config.deployment_id, old, [p.name for p in phases])
    record = state.phase("controller")
    record.status, record.outputs = "done", {"mode": "installed", "deployment": "kube-system/x"}
    # What it installed pins the config (a phase holding nothing would not).
    record.resources = [Resource("kubernetes:object", "apps/v1/Deployment/kube-system/x", True)]
    check_state(state, config, phases, path)  # no refusal: the default is what it ran with
    path.write_text(commercial + "kubeflow:\n  alb:\n    controller: {imageRepository: r.io/a/b}\n")
    with pytest.raises(UsageError, match="imageRepository"):
        check_state(state, load_config(path), phases, path)


def test_an_impaired_alb_is_used_and_said_once_not_waited_for(tmp_path: Path) -> None:
    from moto.elbv2.models import elbv2_backends
    from phasekit import ACCOUNT, REGION, eks_network, phase_kit

    from orchestrator.builders.alb import serving_problem
    from orchestrator.states.load_balancer import LoadBalancerPhase

    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        balancer = kit.client("elbv2").create_load_balancer(
            Name="k8s-istiosys-istioing-0123456789",
            Subnets=list(network.public.values())[:2],
            Scheme="internet-facing",
        )["LoadBalancers"][0]
        impaired = elbv2_backends[ACCOUNT][REGION].load_balancers[balancer["LoadBalancerArn"]]
        impaired.state = "active_impaired"
        kit.store.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}
        )
        kit.store.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "istio-ingress", "namespace": "istio-system"},
                "spec": {"ingressClassName": "alb"},
            }
        )
        kit.store.patch_status(
            "networking.k8s.io/v1",
            "Ingress",
            "istio-ingress",
            "istio-system",
            {"loadBalancer": {"ingress": [{"hostname": balancer["DNSName"]}]}},
        )
        ctx = kit.ctx("load_balancer")
        LoadBalancerPhase().enter(ctx)  # checks once (no_wait): it must not wait
        assert ctx.outputs["load_balancer_arn"] == balancer["LoadBalancerArn"]
        assert LoadBalancerPhase().verify(ctx) is None
        # The endpoint's wait polls whether the ALB serves: it does, and is warned of once.
        warned: set[str] = set()
        for _ in range(3):
            assert serving_problem(ctx, balancer["LoadBalancerArn"], warned) is None
        assert kit.said().count("is active_impaired") == 1


def test_a_china_region_gets_aws_cn_arns_everywhere(tmp_path: Path) -> None:
    from phasekit import ACCOUNT, CONFIG, phase_kit

    from orchestrator.states.controller_iam import ControllerIamPhase

    china = CONFIG.__class__(**{**vars(CONFIG), "region": "cn-north-1"})
    with phase_kit(tmp_path, china) as kit:
        caller = kit.engine.aws().sts.get_caller_identity()["Arn"]
        assert caller.startswith("arn:aws-cn:")
        issuer = "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/CAFE"
        kit.done("preflight", account=ACCOUNT, caller_arn=caller, oidc_issuer=issuer)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        for key in ("role_arn", "policy_arn", "oidc_provider_arn"):
            assert ctx.outputs[key].startswith("arn:aws-cn:iam::"), key
        iam = kit.engine.aws().iam
        version = iam.get_policy_version(PolicyArn=ctx.outputs["policy_arn"], VersionId="v1")
        document = str(version["PolicyVersion"]["Document"])
        assert "arn:aws-cn:elasticloadbalancing:" in document and "arn:aws:" not in document
        assert ControllerIamPhase().verify(ctx) is None


def test_credentials_of_another_partition_than_the_region_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phasekit import phase_kit

    from orchestrator.aws import Aws
    from orchestrator.errors import PhaseError
    from orchestrator.states.preflight import PreflightPhase

    # As if cluster.region were in GovCloud while the credentials are commercial ones.
    monkeypatch.setattr(Aws, "region_partition", lambda self: "aws-us-gov")
    with phase_kit(tmp_path) as kit, pytest.raises(PhaseError) as refused:
        PreflightPhase().enter(kit.ctx("preflight"))
    assert refused.value.message.startswith(
        "cluster.region us-west-2 is in the AWS partition aws-us-gov, but the credentials are "
        "for aws (arn:aws:"
    )
