"""preflight, subnet_tags and endpoint in process: moto's EKS, EC2 and ELBv2, and the
Kubernetes API emulator standing in for the cluster's API server.

More of preflight (another cluster's kubeconfig, partitions, subnets of one zone) and of
subnet_tags (classification, role tags on the wrong kind, tags other load balancers rely
on) is in test_preflight.py, test_subnets.py and test_checks.py. Not here (end to end,
against the sandbox world, with its DNS server and the ALB's HTTPS front end): the
endpoint's real DNS lookup and TLS handshake (`resolver.lookup` and `https_check` are
replaced here), and targets that are `initial` until health checks pass.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, Kit, Network, eks_cluster, eks_network, phase_kit, tags_of

from orchestrator import resolver
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.states import endpoint
from orchestrator.states.endpoint import EndpointPhase
from orchestrator.states.preflight import PreflightPhase
from orchestrator.states.subnet_tags import SubnetTagsPhase

ROLE = "kubernetes.io/role/elb"
INTERNAL = "kubernetes.io/role/internal-elb"
CLUSTER_TAG = "kubernetes.io/cluster/kube-eks-cluster"
HOST = "kubeflow.platform.example.com"


# ---- preflight -----------------------------------------------------------------------------------


def test_preflight_reads_the_world_and_writes_nothing(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        eks_cluster(kit, list(network.private.values()))
        ctx = kit.ctx("preflight")
        with kit.watching() as entering:
            PreflightPhase().enter(ctx)
            assert PreflightPhase().verify(ctx) is None
            PreflightPhase().rollback(ctx)
        assert entering.aws_writes == [] and entering.kube_writes == []
        assert ctx.outputs["account"] == ACCOUNT
        assert ctx.outputs["vpc_id"] == network.vpc_id
        assert ctx.outputs["subnet_ids"] == sorted(network.private.values())
        assert ctx.outputs["oidc_issuer"].startswith("https://")
        assert ctx.record.resources == []


def test_preflight_refuses_a_cluster_that_does_not_exist(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit, pytest.raises(PhaseError) as refused:
        PreflightPhase().enter(kit.ctx("preflight"))
    assert "EKS cluster 'kube-eks-cluster' not found in us-west-2" in refused.value.message
    assert "cluster.name" in refused.value.hint


def test_preflight_refuses_a_cluster_that_is_not_active(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        cluster = eks_cluster(kit, list(network.private.values()))
        cluster.status = "UPDATING"
        with pytest.raises(PhaseError) as refused:
            PreflightPhase().enter(kit.ctx("preflight"))
        assert refused.value.message == "EKS cluster 'kube-eks-cluster' is UPDATING, not ACTIVE"


@pytest.mark.parametrize(
    "zone_name, problem",
    [
        (None, "root hosted zone Z0NOSUCHZONE does not exist"),
        ("example.org", "is for 'example.org', not the root domain 'example.com'"),
    ],
)
def test_preflight_checks_the_root_zone_named_in_the_config(
    tmp_path: Path, zone_name: str | None, problem: str
) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        eks_cluster(kit, list(network.private.values()))
        zone_id = "Z0NOSUCHZONE"
        if zone_name:
            zone = kit.client("route53").create_hosted_zone(Name=zone_name, CallerReference="r")
            zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
        kit.configure(root_zone_id=zone_id)
        with pytest.raises(PhaseError) as refused:
            PreflightPhase().enter(kit.ctx("preflight"))
        assert problem in refused.value.message


def test_preflight_refuses_a_cluster_without_the_istio_gateway(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        eks_cluster(kit, list(network.private.values()), gateway=False)
        with pytest.raises(PhaseError) as refused:
            PreflightPhase().enter(kit.ctx("preflight"))
        assert refused.value.message == (
            "Service istio-system/istio-ingressgateway not found in the cluster"
        )


def test_preflight_verify_says_what_no_longer_holds(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        cluster = eks_cluster(kit, list(network.private.values()))
        ctx = kit.ctx("preflight")
        PreflightPhase().enter(ctx)
        subnets = [*network.private.values(), *network.public.values()]
        cluster.resources_vpc_config = {**cluster.resources_vpc_config, "subnetIds": subnets}
        assert PreflightPhase().verify(ctx) == "subnet_ids changed"
        kit.store.delete("v1", "Service", "istio-ingressgateway", "istio-system")
        assert PreflightPhase().verify(ctx) == (
            "Service istio-system/istio-ingressgateway not found in the cluster"
        )


# ---- subnet_tags ---------------------------------------------------------------------------------


def role_tagged(kit: Kit, subnets: list[str], key: str = ROLE) -> set[str]:
    return {s for s in subnets if key in tags_of(kit.client("ec2"), s)}


def vpc_using_role_tags(kit: Kit, key: str = ROLE) -> tuple[Network, list[str]]:
    """An eksctl VPC over four zones where cluster x tagged its subnet of zone d with `key`:
    the controller goes by role tags there, so ours (the same kind in a, b, c, returned)
    need the tag too."""
    ec2 = kit.client("ec2")
    network = eks_network(ec2, zones=("a", "b", "c", "d"))
    kind = network.public if key == ROLE else network.private
    *ours, theirs = kind.values()
    x = [{"Key": key, "Value": "1"}, {"Key": "kubernetes.io/cluster/x", "Value": "owned"}]
    ec2.create_tags(Resources=[theirs], Tags=x)
    kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
    return network, ours


def test_subnet_tags_add_the_role_tag_alone_and_a_second_enter_writes_nothing(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        network, ours = vpc_using_role_tags(kit)
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        assert all(r.created for r in ctx.record.resources)
        assert {r.id for r in ctx.record.resources} == {f"{s}/{ROLE}" for s in ours}
        every = [*network.public.values(), *network.private.values()]
        assert not [s for s in every if CLUSTER_TAG in tags_of(kit.client("ec2"), s)]
        with kit.watching() as again:
            SubnetTagsPhase().enter(ctx)
        assert again.aws_writes == []
        assert SubnetTagsPhase().verify(ctx) is None


def test_subnet_tags_already_in_place_are_used_and_left(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        theirs = list(network.public.values())[:2]
        ec2.create_tags(Resources=theirs, Tags=[{"Key": ROLE, "Value": "1"}])
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        with kit.watching() as entering:
            SubnetTagsPhase().enter(ctx)
        assert entering.aws_writes == []
        assert sorted(ctx.outputs["subnet_ids"]) == sorted(theirs)
        assert ctx.record.resources == []
        SubnetTagsPhase().rollback(ctx)
        assert role_tagged(kit, list(network.public.values())) == set(theirs)


def test_subnet_tags_for_an_internal_alb_go_on_private_subnets(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        kit.configure(alb_scheme="internal")
        network, ours = vpc_using_role_tags(kit, INTERNAL)
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        every = [*network.public.values(), *network.private.values()]
        assert role_tagged(kit, every[:-1], INTERNAL) == set(ours)
        assert role_tagged(kit, every, ROLE) == set()
        assert ctx.outputs["tags"] == {INTERNAL: "1"}
        SubnetTagsPhase().rollback(ctx)
        assert role_tagged(kit, ours, INTERNAL) == set()


def test_subnet_tags_an_internal_alb_in_an_eksctl_vpc_needs_none(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        kit.configure(alb_scheme="internal")
        network = eks_network(kit.client("ec2"))
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        with kit.watching() as entering:
            SubnetTagsPhase().enter(ctx)
        assert entering.aws_writes == []
        assert sorted(ctx.outputs["subnet_ids"]) == sorted(network.private.values())
        assert ctx.outputs["tags"] == {}


def test_subnet_tags_removed_behind_our_back_are_reported_and_added_again(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network, ours = vpc_using_role_tags(kit)
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        first, second, _ = sorted(ctx.outputs["subnet_ids"])
        ec2.delete_tags(Resources=[first, second], Tags=[{"Key": ROLE}])
        assert SubnetTagsPhase().verify(ctx) == f"subnet {first} lost its tag {ROLE}"
        SubnetTagsPhase().enter(ctx)
        assert role_tagged(kit, ours) == set(ours)
        assert SubnetTagsPhase().verify(ctx) is None


def test_subnet_tags_set_to_zero_are_lost_to_the_controller(tmp_path: Path) -> None:
    """The controller's filter matches "" and "1": a "0" is no role tag."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        _, ours = vpc_using_role_tags(kit)
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        first, *_ = sorted(ctx.outputs["subnet_ids"])
        ec2.create_tags(Resources=[first], Tags=[{"Key": ROLE, "Value": "0"}])
        assert SubnetTagsPhase().verify(ctx) == f"subnet {first} lost its tag {ROLE}"


def test_subnet_tags_one_removed_while_two_zones_stay_tagged_is_not_added_again(
    tmp_path: Path,
) -> None:
    """Two tagged zones are all the controller needs: enter adds nothing, and takes the
    subnet that lost its tag out of what it uses."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        vpc_using_role_tags(kit)
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        first, *rest = sorted(ctx.outputs["subnet_ids"])
        ec2.delete_tags(Resources=[first], Tags=[{"Key": ROLE}])
        assert SubnetTagsPhase().verify(ctx) == f"subnet {first} lost its tag {ROLE}"
        with kit.watching() as entering:
            SubnetTagsPhase().enter(ctx)
        assert entering.aws_writes == []
        assert sorted(ctx.outputs["subnet_ids"]) == rest
        assert SubnetTagsPhase().verify(ctx) is None


def test_subnet_tags_rollback_removes_only_tags_that_still_hold_our_value(
    tmp_path: Path,
) -> None:
    """A tag someone changed since is theirs now; one already removed is fine."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        _, ours = vpc_using_role_tags(kit)
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        changed, removed, untouched = sorted(ours)
        ec2.create_tags(Resources=[changed], Tags=[{"Key": ROLE, "Value": "0"}])
        ec2.delete_tags(Resources=[removed], Tags=[{"Key": ROLE}])
        SubnetTagsPhase().rollback(ctx)
        assert tags_of(ec2, changed).get(ROLE) == "0"
        assert ROLE not in tags_of(ec2, removed) and ROLE not in tags_of(ec2, untouched)
        assert not [k for k in tags_of(ec2, untouched) if k.startswith("orchestrator:")]
        assert ctx.record.resources == []


# ---- endpoint: pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, status",
    [
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/2 302\r\n", 302),
        (b"HTTP/1.1 503 Service Temporarily Unavailable\r\n", 503),
        (b"SSH-2.0-OpenSSH_9.6\r\n", None),
        (b"HTTP/1.1 OK\r\n", None),
        (b"", None),
    ],
)
def test_endpoint_reads_the_status_of_an_http_status_line(line: bytes, status: int | None) -> None:
    assert endpoint.parse_status(line) == status


def test_endpoint_request_names_the_host_and_closes() -> None:
    request = endpoint.request_bytes(HOST).decode()
    assert request.startswith("GET / HTTP/1.1\r\n")
    assert f"\r\nHost: {HOST}\r\n" in request
    assert request.endswith("Connection: close\r\n\r\n")


def _verification_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError("certificate verify failed")
    error.verify_message = "Hostname mismatch, certificate is not valid for 'kubeflow...'"
    return error


@pytest.mark.parametrize(
    "addresses, failure, problem",
    [
        ([], None, f"{HOST} does not resolve yet"),
        (["192.0.2.1"], _verification_error(), f"TLS certificate not valid for {HOST}: Hostname"),
        (["192.0.2.1"], ConnectionRefusedError("refused"), "192.0.2.1:443: refused"),
        (["192.0.2.1"], ssl.SSLError("handshake"), "192.0.2.1:443: "),
    ],
    ids=["unresolved", "certificate", "refused", "tls"],
)
def test_endpoint_probe_says_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch,
    addresses: list[str],
    failure: Exception | None,
    problem: str,
) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: addresses)

    def https_check(host: str, address: str) -> dict[str, Any]:
        assert failure is not None, "no HTTPS request for a name that does not resolve"
        raise failure

    monkeypatch.setattr(endpoint, "https_check", https_check)
    result, said = endpoint.probe(HOST)
    assert result is None and said.startswith(problem)


def test_endpoint_probe_reports_a_working_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: ["192.0.2.1", "192.0.2.2"])
    monkeypatch.setattr(
        endpoint,
        "https_check",
        lambda host, address: {"http_status": 302, "tls_version": "TLSv1.3"},
    )
    result, problem = endpoint.probe(HOST)
    assert problem == ""
    assert result == {
        "url": f"https://{HOST}/",
        "address": "192.0.2.1",
        "http_status": 302,
        "tls_version": "TLSv1.3",
    }


# ---- endpoint: the phase, against moto's ALB -------------------------------------------------


def alb(kit: Kit, *, targets: int = 1, listener: str = "HTTPS", cert: str | None = None) -> dict:
    """An ALB whose listener (HTTPS on 443, or HTTP on 80) forwards to an IP target group
    with `targets` (healthy: moto reports every registered target so)."""
    ec2, elbv2 = kit.client("ec2"), kit.client("elbv2")
    network = eks_network(ec2)
    (balancer,) = elbv2.create_load_balancer(
        Name="k8s-istiosys-istioing-0123456789", Subnets=list(network.public.values())[:2]
    )["LoadBalancers"]
    (group,) = elbv2.create_target_group(
        Name="k8s-istiosys-istioing-1",
        Protocol="HTTP",
        Port=80,
        VpcId=network.vpc_id,
        TargetType="ip",
    )["TargetGroups"]
    if targets:
        elbv2.register_targets(
            TargetGroupArn=group["TargetGroupArn"],
            Targets=[{"Id": f"10.0.0.{10 + i}", "Port": 8080} for i in range(targets)],
        )
    https = listener == "HTTPS"
    elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol=listener,
        Port=443 if https else 80,
        **({"Certificates": [{"CertificateArn": cert or certificate(kit)}]} if https else {}),
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )
    return balancer


def certificate(kit: Kit) -> str:
    return kit.client("acm").request_certificate(DomainName=f"*.{HOST.split('.', 1)[1]}")[
        "CertificateArn"
    ]


def endpoint_kit(kit: Kit, balancer: dict, cert: str) -> None:
    kit.done("load_balancer", load_balancer_arn=balancer["LoadBalancerArn"])
    kit.done("certificates_issued", certificate_arn=cert)


def test_endpoint_waits_for_healthy_targets_before_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: ["192.0.2.1"])

    def no_request(host: str, address: str) -> dict[str, Any]:
        raise AssertionError("no HTTPS request before the targets are healthy")

    monkeypatch.setattr(endpoint, "https_check", no_request)
    with phase_kit(tmp_path) as kit:
        cert = certificate(kit)
        endpoint_kit(kit, alb(kit, targets=0, cert=cert), cert)
        ctx = kit.ctx("endpoint")
        reason = "target group k8s-istiosys-istioing-1 has no healthy target: no targets registered"
        assert EndpointPhase().verify(ctx) == reason
        with pytest.raises(StillWaiting) as waiting:
            EndpointPhase().enter(ctx)
        assert waiting.value.waiting_for == f"https://{HOST}/ to answer"
        assert reason in kit.said()


def test_endpoint_that_answers_is_recorded_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: ["192.0.2.1"])
    monkeypatch.setattr(
        endpoint,
        "https_check",
        lambda host, address: {"http_status": 302, "tls_version": "TLSv1.3"},
    )
    with phase_kit(tmp_path) as kit:
        cert = certificate(kit)
        endpoint_kit(kit, alb(kit, cert=cert), cert)
        ctx = kit.ctx("endpoint")
        with kit.watching() as entering:
            EndpointPhase().enter(ctx)
            EndpointPhase().rollback(ctx)
        assert entering.aws_writes == []
        assert ctx.outputs["url"] == f"https://{HOST}/" and ctx.outputs["http_status"] == 302
        assert f"Kubeflow answers at https://{HOST}/ (HTTP 302, TLSv1.3)" in kit.said()
        assert EndpointPhase().verify(ctx) is None


@pytest.mark.parametrize(
    "resolves, listener, ours, problem",
    [
        (False, "HTTPS", True, f"{HOST} does not resolve yet"),
        (True, "HTTP", True, "the ALB has no HTTPS listener on port 443 yet"),
        (True, "HTTPS", False, "the HTTPS listener does not serve certificate "),
        (True, "HTTPS", True, None),
    ],
    ids=["unresolved", "http only", "other certificate", "works"],
)
def test_endpoint_of_an_internal_alb_is_checked_without_an_https_request(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resolves: bool,
    listener: str,
    ours: bool,
    problem: str | None,
) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: ["10.0.1.5"] if resolves else [])

    def no_request(host: str, address: str) -> dict[str, Any]:
        raise AssertionError("an internal ALB is not reachable from here: no HTTPS request")

    monkeypatch.setattr(endpoint, "https_check", no_request)
    with phase_kit(tmp_path) as kit:
        kit.configure(alb_scheme="internal")
        cert, other = certificate(kit), certificate(kit)
        balancer = alb(kit, listener=listener, cert=cert if ours else other)
        endpoint_kit(kit, balancer, cert)
        ctx = kit.ctx("endpoint")
        said = EndpointPhase().verify(ctx)
        if problem is None:
            assert said is None
            EndpointPhase().enter(ctx)
            assert ctx.outputs["http_status"] is None
            assert "the HTTPS request was skipped: the ALB is internal" in kit.said()
        else:
            assert said is not None and said.startswith(problem)
