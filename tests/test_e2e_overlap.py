"""What overlaps, end to end through the CLI against the sandbox world: the certificates are
requested while Route 53 still propagates the zone and the delegation, and the alias
record is written while the ALB still provisions. The world's own event log and AWS say
so, not the orchestrator.

Also the latency profile: `sandbox up --profile aws --time-scale F` scales AWS's typical
latencies, and a delay given explicitly wins over it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import World

from orchestrator.errors import ExitCode
from orchestrator_sandbox import events

pytestmark = pytest.mark.complete


def test_certificates_are_requested_while_the_delegation_propagates(
    tmp_path: Path, workdir: Path
) -> None:
    directory = tmp_path / "world"
    started = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sandbox", "up", "--dir", str(directory)]
        + ["--profile", "aws", "--time-scale", "0.02", "--dns-delay", "600"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    with World(directory) as world:
        settings = world.info["settings"]
        # The profile's latencies times 0.02; the flag given wins; a TTL is no latency.
        assert settings["alb_delay"] == pytest.approx(150 * 0.02)
        assert settings["acm_delay"] == pytest.approx(90 * 0.02)
        assert settings["dns_delay"] == 600
        assert settings["token_ttl"] == 900
        assert world.info["profile"] == "aws"

        done = world.cli(
            "--config", str(world.config), "run", "--until", "certificates", "--no-wait",
            cwd=workdir,
        )  # fmt: skip
        assert done.returncode == ExitCode.OK, done.stdout + done.stderr
        requested = [c for c in world.calls() if c["action"] == "RequestCertificate"]
        assert requested
        # Every change the run made to Route 53 (zone, delegation, validation records) is
        # still PENDING by the world's clock: none was waited for.
        changes = [e for e in events.read(directory) if e["kind"] == "route53.change"]
        made = [e for e in changes if e["ended"] - e["began"] == pytest.approx(600)]
        assert len(made) >= 3
        assert all(e["ended"] > time.time() for e in made)


def test_the_alias_is_written_while_the_alb_provisions(tmp_path: Path, workdir: Path) -> None:
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=600) as world:
        done = world.cli("--config", str(world.config), "run", "--until", "dns_record", cwd=workdir)
        assert done.returncode == ExitCode.OK, done.stdout + done.stderr
        (balancer,) = world.client("elbv2").describe_load_balancers()["LoadBalancers"]
        assert balancer["State"]["Code"] == "provisioning"
        route53 = world.client("route53")
        zone = next(
            z["Id"]
            for z in route53.list_hosted_zones()["HostedZones"]
            if z["Name"] == "platform.example.com."
        )
        records = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        alias = next(r for r in records if r["Name"] == "kubeflow.platform.example.com.")
        assert alias["AliasTarget"]["DNSName"].rstrip(".").endswith(balancer["DNSName"])

        # The endpoint is what waits for the ALB: it says so while it provisions.
        waiting = world.cli("--config", str(world.config), "resume", "--no-wait", cwd=workdir)
        assert waiting.returncode == ExitCode.WAITING, waiting.stdout + waiting.stderr
        assert "is provisioning" in waiting.stdout + waiting.stderr
