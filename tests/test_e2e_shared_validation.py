"""End to end: another team's certificates for the root domain, requested after our run in
the cluster's region (ECDSA) and in another region (RSA), validate with the root-zone CNAME
our run wrote (ACM gives an account one record per domain), and still find it after our
`rollback --all`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import World, left_behind, wait_for

from orchestrator.errors import ExitCode

ROOT = "example.com"


def with_root_certificate(world: World, workdir: Path) -> str:
    """The world's config, asking for the `*.<root>` certificate as well."""
    zone = f"    hostedZoneId: {world.root_zone_id}\n"
    text = world.config.read_text()
    assert zone in text
    config = workdir / "config.yaml"
    config.write_text(text.replace(zone, zone + "    wildcardCertificate: true\n"))
    return str(config)


def certificate(world: World, region: str, arn: str) -> dict[str, Any]:
    return world.client("acm", region).describe_certificate(CertificateArn=arn)["Certificate"]


def test_other_teams_certificates_keep_their_validation_record_through_our_rollback(
    world: World, workdir: Path
) -> None:
    config = with_root_certificate(world, workdir)
    ran = world.cli("--config", config, "run", "--until", "certificates_issued", cwd=workdir)
    assert ran.returncode == ExitCode.OK, ran.stdout + ran.stderr
    theirs = {
        "us-west-2": world.client("acm").request_certificate(
            DomainName=f"*.{ROOT}", ValidationMethod="DNS", KeyAlgorithm="EC_prime256v1"
        )["CertificateArn"],
        "eu-west-1": world.client("acm", "eu-west-1").request_certificate(
            DomainName=ROOT, ValidationMethod="DNS"
        )["CertificateArn"],
    }
    wait_for(
        lambda: all(certificate(world, r, a)["Status"] == "ISSUED" for r, a in theirs.items()),
        what="ACM to issue the other team's certificates with the record our run wrote",
    )

    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert gone.returncode == ExitCode.OK, gone.stdout + gone.stderr
    for region, arn in theirs.items():
        wanted = certificate(world, region, arn)["DomainValidationOptions"][0]["ResourceRecord"]
        live = world.record(world.root_zone_id, wanted["Name"].rstrip("."), "CNAME")
        assert live is not None, f"{region}'s certificate lost its validation record"
        assert [v["Value"] for v in live["ResourceRecords"]] == [wanted["Value"]]
        assert arn in gone.stdout  # said why the record was left
    assert left_behind(world, workdir / "state.json") == []
