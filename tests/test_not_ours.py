"""Not ours, not touched: what the deployment finds in place is byte-for-byte the same after
a run, after a rollback to each phase, and after rollback --all; something with the
deployment's own name but not its ownership tag stops the run instead of being taken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import SUBDOMAIN, World, kube_client, kube_get, read_state

from orchestrator.errors import ExitCode
from orchestrator.states import phase_names

pytestmark = pytest.mark.complete  # slow: CI runs it (`pytest --complete`)

OTHER = "other.example.com"


def prepare_neighbours(world: World) -> dict[str, Any]:
    """Things a real account and cluster hold that the deployment must leave alone."""
    route53, acm = world.client("route53"), world.client("acm")
    zone = route53.create_hosted_zone(Name=OTHER, CallerReference="team-other-zone")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"app.{OTHER}",
                        "Type": "A",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.99"}],
                    },
                }
            ]
        },
    )
    certificate = acm.request_certificate(DomainName=f"*.{OTHER}", ValidationMethod="DNS")
    iam = world.client("iam", "us-east-1")
    provider = iam.create_open_id_connect_provider(
        Url=world.info["seeded"]["oidc_issuer"],
        ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
    )
    subnet = world.info["seeded"]["subnet_ids"][0]
    world.client("ec2").create_tags(
        Resources=[subnet], Tags=[{"Key": "kubernetes.io/role/elb", "Value": "1"}]
    )
    ingresses = kube_client(world).resources.get(api_version="networking.k8s.io/v1", kind="Ingress")
    ingresses.create(
        namespace="kubeflow",
        body={
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "notebooks", "namespace": "kubeflow"},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {"name": "notebooks", "port": {"number": 80}}
                                    },
                                }
                            ]
                        }
                    }
                ],
            },
        },
    )
    return {
        "zone_id": zone_id,
        "certificate": certificate["CertificateArn"],
        "provider": provider["OpenIDConnectProviderArn"],
        "subnet": subnet,
    }


def snapshot(world: World, neighbours: dict[str, Any]) -> str:
    """The neighbours as their APIs show them; of the root zone and the subnets, what was
    there before (our delegation record and subnet tags come and go)."""

    def plain(response: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}

    route53, acm = world.client("route53"), world.client("acm")
    iam, ec2 = world.client("iam", "us-east-1"), world.client("ec2")
    client = kube_client(world)
    unrelated = [
        r
        for r in world.records(world.root_zone_id)
        if not r["Name"].rstrip(".").endswith(SUBDOMAIN)
    ]
    subnets = ec2.describe_subnets(SubnetIds=world.info["seeded"]["subnet_ids"])["Subnets"]
    keys = neighbours.setdefault(
        "tag keys", {s["SubnetId"]: [t["Key"] for t in s.get("Tags", [])] for s in subnets}
    )
    tags = {
        s["SubnetId"]: sorted(
            (t["Key"], t["Value"]) for t in s.get("Tags", []) if t["Key"] in keys[s["SubnetId"]]
        )
        for s in subnets
    }
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=neighbours["provider"])
    return json.dumps(
        {
            "root zone": unrelated,
            "other zone": world.records(neighbours["zone_id"]),
            "other zone tags": plain(
                route53.list_tags_for_resource(
                    ResourceType="hostedzone", ResourceId=neighbours["zone_id"]
                )
            ),
            "certificate": plain(
                acm.describe_certificate(CertificateArn=neighbours["certificate"])
            ),
            "provider": plain(provider),
            "subnet tags there before": tags,
            "ingress": kube_get(client, "networking.k8s.io/v1", "Ingress", "notebooks", "kubeflow"),
            "gateway": kube_get(client, "v1", "Service", "istio-ingressgateway", "istio-system"),
        },
        sort_keys=True,
        default=str,
    )


def test_neighbours_are_untouched_by_run_every_rollback_and_rollback_all(
    world: World, workdir: Path
) -> None:
    neighbours = prepare_neighbours(world)
    before = snapshot(world, neighbours)
    config = str(world.config)

    done = world.cli("--config", config, "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(world, neighbours) == before, "changed by the run"
    iam_outputs = next(
        p for p in read_state(workdir / "state.json")["phases"] if p["name"] == "controller_iam"
    )["outputs"]
    assert iam_outputs["oidc_provider_arn"] == neighbours["provider"], "the provider is used"

    for phase in reversed(phase_names()[:-1]):
        back = world.cli("--config", config, "rollback", "--yes", "--to", phase, cwd=workdir)
        assert back.returncode == 0, (phase, back.stdout + back.stderr)
        assert snapshot(world, neighbours) == before, f"changed by rollback --to {phase}"
        again = world.cli("--config", config, "resume", cwd=workdir)
        assert again.returncode == 0, (phase, again.stdout + again.stderr)

    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert snapshot(world, neighbours) == before, "changed by rollback --all"


def test_a_zone_with_our_name_but_not_our_tag_stops_the_run(world: World, workdir: Path) -> None:
    route53 = world.client("route53")
    theirs = route53.create_hosted_zone(Name=SUBDOMAIN, CallerReference="someone-else")
    zone_id = theirs["HostedZone"]["Id"].split("/")[-1]
    failed = world.cli("--config", str(world.config), "run", cwd=workdir)
    assert failed.returncode == ExitCode.PHASE_FAILED
    assert "phase hosted_zone failed" in failed.stderr
    assert f"already exists ({zone_id}) and was not created by this deployment" in failed.stderr
    assert f"route53.subDomain.hostedZoneId: {zone_id}" in failed.stderr, "says how to use it"
    assert [z["Id"] for z in world.zones()] == [theirs["HostedZone"]["Id"]]
    assert (
        world.cli(
            "--config", str(world.config), "rollback", "--all", "--yes", cwd=workdir
        ).returncode
        == 0
    )
    assert [z["Id"] for z in world.zones()] == [theirs["HostedZone"]["Id"]], "never deleted"


def test_an_ingress_with_our_name_but_not_our_label_stops_the_run(
    world: World, workdir: Path
) -> None:
    client = kube_client(world)
    client.resources.get(api_version="networking.k8s.io/v1", kind="Ingress").create(
        namespace="istio-system",
        body={
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "istio-ingress", "namespace": "istio-system"},
            "spec": {
                "ingressClassName": "nginx",
                "defaultBackend": {
                    "service": {"name": "istio-ingressgateway", "port": {"number": 80}}
                },
            },
        },
    )
    before = kube_get(client, "networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
    failed = world.cli("--config", str(world.config), "run", cwd=workdir)
    assert failed.returncode == ExitCode.PHASE_FAILED
    assert "phase ingress failed" in failed.stderr
    assert "was not created by this deployment" in failed.stderr
    assert (
        world.cli(
            "--config", str(world.config), "rollback", "--all", "--yes", cwd=workdir
        ).returncode
        == 0
    )
    after = kube_get(client, "networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
    assert after == before, "neither changed nor deleted"
