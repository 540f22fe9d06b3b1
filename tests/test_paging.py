"""The product reads every page of every list it decides on: in process, against moto whose
lists page at one item a page (the sandbox world's paging), each list is read whole, and
a record of another's on a later page of our zone stops the zone's deletion with our own
message naming it; end to end, the whole job and its rollback against such a world."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from harness import World, left_behind
from moto import mock_aws
from phasekit import phase_kit
from test_phase_network import alb, certificate, endpoint_kit
from test_sandbox_paging import OPERATIONS, REGION
from test_sandbox_paging import POLICY as DOCUMENT

from orchestrator import resolver
from orchestrator.aws import AwsClient, AwsError
from orchestrator.errors import PhaseError
from orchestrator.states.controller_iam import (
    ATTACHMENT,
    OIDC,
    POLICY,
    ROLE,
    ControllerIamPhase,
    marked_iam,
)
from orchestrator.states.endpoint import EndpointPhase
from orchestrator.states.hosted_zone import KIND as ZONE
from orchestrator.states.hosted_zone import HostedZonePhase
from orchestrator_sandbox.paging import page_lists, paginator

HOST = "oidc.eks.us-west-2.amazonaws.com/id/CAFE"
ISSUER = f"https://{HOST}"


@pytest.fixture
def pages_of_one() -> Iterator[None]:
    page_lists(1)
    try:
        yield
    finally:
        page_lists(None)


@pytest.mark.parametrize(
    ("service", "method"), sorted(OPERATIONS), ids=lambda v: str(v).replace("_", "-")
)
def test_pages_reads_every_page_whatever_the_api_calls_its_tokens(
    moto_env: str, pages_of_one: None, service: str, method: str
) -> None:
    with mock_aws():
        made: dict[str, Any] = {}

        def client(name: str) -> Any:
            return made.setdefault(name, boto3.client(name, region_name=REGION))

        kwargs = OPERATIONS[(service, method)](client)
        listed = list(AwsClient(client(service), service).pages(method, **kwargs))
        page_lists(None)
        key = paginator(service, client(service).meta.method_to_api_mapping[method])["result_key"]
        whole = getattr(client(service), method)(**kwargs)[key]
        assert listed == whole and len(listed) >= 3


def test_pages_stops_a_list_whose_token_comes_back(moto_env: str) -> None:
    iam = boto3.client("iam", region_name=REGION)
    looping = {"Roles": [], "IsTruncated": True, "Marker": "again"}
    with Stubber(iam) as stub:
        stub.add_response("list_roles", looping)
        stub.add_response("list_roles", looping, {"Marker": "again"})
        with pytest.raises(AwsError, match="RepeatedPageToken"):
            list(AwsClient(iam, "iam").pages("list_roles"))


def test_a_foreign_record_on_a_later_page_stops_the_zone_s_deletion_with_our_message(
    tmp_path: Path, pages_of_one: None
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = kit.ctx("hosted_zone")
        HostedZonePhase().enter(ctx)
        zone_id = ctx.outputs["zone_id"]
        route53 = kit.client("route53")
        # After the zone's own NS and SOA in Route 53's order: on the third page.
        theirs = {
            "Name": "team.platform.example.com",
            "Type": "TXT",
            "TTL": 60,
            "ResourceRecords": [{"Value": '"theirs"'}],
        }

        def change(action: str) -> None:
            batch = {"Changes": [{"Action": action, "ResourceRecordSet": theirs}]}
            route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)

        change("CREATE")
        with kit.watching() as rollback, pytest.raises(PhaseError) as stopped:
            HostedZonePhase().rollback(ctx)
        assert "team.platform.example.com TXT" in str(stopped.value)
        assert f"hosted zone {zone_id}" in str(stopped.value)
        assert "HostedZoneNotEmpty" not in str(stopped.value)  # ours, not Route 53's refusal
        assert rollback.aws_writes == []
        assert [r.id for r in ctx.owned(ZONE)] == [zone_id]  # left, and still ours to delete
        assert route53.get_hosted_zone(Id=zone_id)["HostedZone"]["Name"] == "platform.example.com."

        change("DELETE")  # once they move their record, the rollback finishes
        HostedZonePhase().rollback(ctx)
        assert ctx.owned(ZONE) == []
        page_lists(None)
        assert route53.list_hosted_zones()["HostedZones"] == []


def test_controller_iam_reads_its_tags_and_attachments_whole(
    tmp_path: Path, pages_of_one: None
) -> None:
    """Our role and policy carry two tags or more, our role another team's policy too (first
    in IAM's order): each list of them pages, and each is read whole, by the phase and by
    the sweep's and `import`'s look-up."""
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(ISSUER)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        iam = kit.client("iam")
        role = ctx.outputs["role_name"]
        theirs = iam.create_policy(PolicyName="aaa-their-policy", PolicyDocument=DOCUMENT)
        iam.attach_role_policy(RoleName=role, PolicyArn=theirs["Policy"]["Arn"])
        assert ControllerIamPhase().verify(ctx) is None
        with kit.watching() as again:
            ControllerIamPhase().enter(ctx)
        assert again.aws_writes == []
        cluster = {"identity": {"oidc": {"issuer": ISSUER}}}
        found = {f.kind for f in marked_iam(ctx, cluster)}
        assert found == {ROLE, POLICY, OIDC, ATTACHMENT}

        iam.detach_role_policy(RoleName=role, PolicyArn=theirs["Policy"]["Arn"])
        ControllerIamPhase().rollback(ctx)
        page_lists(None)
        assert ctx.record.resources == [] and ctx.record.kept == []
        assert iam.list_roles()["Roles"] == []
        assert [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]] == [
            "aaa-their-policy"
        ]
        assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []


def test_endpoint_reads_every_target_group_and_listener_of_an_internal_alb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pages_of_one: None
) -> None:
    """The ALB's second target group and its HTTPS listener, each on a second page, count."""
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: ["10.0.1.5"])
    with phase_kit(tmp_path) as kit:
        kit.configure(alb_scheme="internal")
        cert = certificate(kit)
        balancer = alb(kit, listener="HTTP")  # HTTP on 80 to a healthy group, first
        elbv2 = kit.client("elbv2")
        (first,) = elbv2.describe_target_groups()["TargetGroups"]
        second = elbv2.create_target_group(
            Name="k8s-istiosys-istioing-2",
            Protocol="HTTP",
            Port=80,
            VpcId=first["VpcId"],
            TargetType="ip",
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTPS",
            Port=443,
            Certificates=[{"CertificateArn": cert}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": second}],
        )
        endpoint_kit(kit, balancer, cert)
        ctx = kit.ctx("endpoint")
        assert EndpointPhase().verify(ctx) == (
            "target group k8s-istiosys-istioing-2 has no healthy target: no targets registered"
        )
        elbv2.register_targets(TargetGroupArn=second, Targets=[{"Id": "10.0.0.20", "Port": 8080}])
        assert EndpointPhase().verify(ctx) is None


# ---- end to end ---------------------------------------------------------------------------------


def test_a_full_run_and_rollback_read_pages_of_one_whole(tmp_path: Path) -> None:
    """The whole job and `rollback --all` against a world whose every list answers one item a
    page: done without a resume, and nothing left."""
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, page_size=1) as world:
        assert world.info["settings"]["page_size"] == 1
        workdir = tmp_path / "work"
        workdir.mkdir()
        config = str(world.config)
        done = world.cli("--config", config, "run", cwd=workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert left_behind(world, workdir / "state.json") == []
        assert world.zones() == [] and world.certificates() == []
        # The product's reads were answered a page at a time.
        reads = Counter(c["action"] for c in world.calls() if not c["write"])
        assert reads["DescribeSubnets"] > 1 and reads["ListCertificates"] > 1
        assert sum(n for action, n in reads.items() if action.endswith("/rrset")) > 1
