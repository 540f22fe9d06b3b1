"""End to end, what operators do between commands: a second state file, a lost one, a
hand-edited one, a controller deleted by hand, resources deleted by hand, and the lock
sidestepped. None of it may cost a resource that is not ours, or leave one that is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import World, kube_client, kube_get, left_behind, phase_status, read_state, wait_for
from test_e2e_full import controller_made, install_team_controller

from orchestrator.errors import ExitCode

CONTROLLER = ("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")


def writes(world: World) -> tuple[int, int]:
    """How many writes the orchestrator made so far, to AWS and to Kubernetes."""
    return len(world.writes()), sum(1 for c in world.kube_calls() if c["write"])


def state_of(workdir: Path) -> dict[str, Any]:
    return read_state(workdir / "state.json")


def resources(workdir: Path, kind: str) -> list[dict[str, Any]]:
    return [r for p in state_of(workdir)["phases"] for r in p["resources"] if r["kind"] == kind]


def kubectl(world: World, *args: str) -> None:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(world.directory / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_a_second_state_file_refuses_and_leaves_the_first_intact(
    world: World, tmp_path: Path
) -> None:
    first, second = tmp_path / "laptop", tmp_path / "ci"
    first.mkdir(), second.mkdir()
    config = str(world.config)
    world.succeeds("run", cwd=first)
    before = writes(world)

    refused = world.cli("--config", config, "run", cwd=second)
    assert refused.returncode == ExitCode.USAGE, refused.stdout + refused.stderr
    identity = state_of(first)["identity"]
    assert f"made by state file {identity}" in refused.stderr
    assert "route53:hosted-zone" in refused.stderr
    assert "`orchestrator import --config " in refused.stderr
    assert writes(world) == before, "no write at all"
    # "Nothing was changed": no state file was left either, so nothing there to roll back.
    assert not (second / "state.json").exists(), "the refused state file is not left behind"
    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=second)
    assert gone.returncode == 2 and "no state file" in gone.stderr, gone.stderr
    assert writes(world) == before
    world.succeeds("run", cwd=first)
    assert writes(world) == before, "the first state's run verifies and writes nothing"


@pytest.mark.complete
def test_import_rebuilds_a_lost_state_and_rollback_leaves_nothing(
    world: World, workdir: Path
) -> None:
    world.succeeds("run", cwd=workdir)
    identity = state_of(workdir)["identity"]
    (workdir / "state.json").rename(workdir / "lost.json")

    shown = world.succeeds("import", cwd=workdir)
    assert "route53:hosted-zone" in shown.stdout and "nothing written" in shown.stdout
    assert not (workdir / "state.json").exists()

    world.succeeds("import", "--take-ownership", cwd=workdir)
    assert state_of(workdir)["identity"] == identity
    before = writes(world)
    world.succeeds("run", cwd=workdir)
    assert writes(world)[0] == before[0], "no AWS write: everything was found, not made"

    world.succeeds("rollback", "--all", "--yes", cwd=workdir)
    assert left_behind(world, workdir / "state.json") == []
    assert controller_made(world) == []


@pytest.mark.complete
def test_rollback_leaves_a_foreign_certificate_the_state_names_and_sweeps_ours(
    world: World, workdir: Path
) -> None:
    world.succeeds("run", "--until", "certificates", cwd=workdir)
    acm = world.client("acm")
    theirs = acm.request_certificate(
        DomainName="shop.example.org",
        ValidationMethod="DNS",
        Tags=[{"Key": "team", "Value": "other"}],
    )["CertificateArn"]
    (ours,) = [r["id"] for r in resources(workdir, "acm:certificate")]
    state = state_of(workdir)
    for phase in state["phases"]:
        for resource in phase["resources"]:
            if resource["kind"] == "acm:certificate":
                resource["id"] = theirs  # a hand edit, a bad merge, a copied state file
    (workdir / "state.json").write_text(json.dumps(state))

    gone = world.succeeds("rollback", "--all", "--yes", cwd=workdir)
    arns = [c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]]
    assert theirs in arns, "never deleted on the state file's word alone"
    assert ours not in arns, "the sweep by tag found ours"
    assert f"left acm:certificate {theirs} in place" in gone.stdout
    assert f"sweep: certificates: the state file did not list acm:certificate {ours}" in (
        gone.stdout
    )
    assert left_behind(world, workdir / "state.json") == []


@pytest.mark.complete
def test_a_bogus_certificate_arn_in_the_state_leaks_nothing(world: World, workdir: Path) -> None:
    world.succeeds("run", "--until", "certificates", cwd=workdir)
    text = (workdir / "state.json").read_text()
    (ours,) = [r["id"] for r in resources(workdir, "acm:certificate")]
    bogus = ours.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    (workdir / "state.json").write_text(text.replace(ours, bogus))
    world.succeeds("rollback", "--all", "--yes", cwd=workdir)
    assert world.certificates() == []
    assert left_behind(world, workdir / "state.json") == []


@pytest.mark.complete
def test_rollback_with_our_controller_deleted_by_hand_ends_0_and_leaves_nothing(
    world: World, workdir: Path
) -> None:
    world.succeeds("run", cwd=workdir)
    kubectl(world, "delete", "deployment", "-n", "kube-system", "aws-load-balancer-controller")
    gone = world.succeeds("rollback", "--all", "--yes", cwd=workdir)
    assert "installing it again to tear the ALB down" in gone.stdout
    # Started once the Ingress was being deleted, it never knew the backend group.
    assert "deleting the cluster's backend security group" in gone.stdout
    assert controller_made(world) == []
    assert left_behind(world, workdir / "state.json") == []
    assert kube_get(kube_client(world), *CONTROLLER) is None


@pytest.mark.complete
def test_a_zone_and_a_certificate_deleted_by_hand_are_made_again(
    world: World, workdir: Path
) -> None:
    world.succeeds("run", "--until", "certificates", cwd=workdir)
    zone = state_of(workdir)["phases"][1]["outputs"]["zone_id"]
    (certificate,) = [r["id"] for r in resources(workdir, "acm:certificate")]
    route53 = world.client("route53")
    for record in world.records(zone):
        if record["Type"] not in ("NS", "SOA"):
            route53.change_resource_record_sets(
                HostedZoneId=zone,
                ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]},
            )
    route53.delete_hosted_zone(Id=zone)
    world.client("acm").delete_certificate(CertificateArn=certificate)

    again = world.succeeds("run", cwd=workdir)
    assert "hosted_zone: was done, but hosted zone" in again.stdout
    (new_zone,) = world.zones()
    assert new_zone["Id"].split("/")[-1] != zone
    (new_certificate,) = world.certificates()
    assert new_certificate["CertificateArn"] != certificate
    assert new_certificate["Status"] == "ISSUED"


@pytest.mark.complete
def test_two_names_for_one_state_file_share_one_lock(tmp_path: Path, workdir: Path) -> None:
    with World.up(tmp_path / "slow", acm_delay=60.0) as world:
        (workdir / "alias.json").symlink_to(workdir / "state.json")
        config = str(world.config)
        holder = world.start("--config", config, "--state", "state.json", "run", cwd=workdir)
        try:
            wait_for(
                lambda: phase_status(workdir / "state.json", "certificates_issued") == "waiting",
                timeout=90,
                what="the first run to wait for ACM",
            )
            second = world.cli("--config", config, "--state", "alias.json", "run", cwd=workdir)
            assert second.returncode == ExitCode.USAGE, second.stdout + second.stderr
            assert f"locked by pid {holder.pid}" in second.stderr
        finally:
            holder.kill()
            holder.wait()


@pytest.mark.complete
def test_a_deleted_lock_file_lets_a_second_command_in_but_never_two_writers(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "slow", acm_delay=8.0) as world:
        config = str(world.config)
        first = world.start("--config", config, "run", cwd=workdir)
        try:
            wait_for(
                lambda: phase_status(workdir / "state.json", "certificates_issued") == "waiting",
                timeout=90,
                what="the first run to wait for ACM",
            )
            (workdir / "state.json.lock").unlink()  # by hand, or a clean-up script
            second = world.cli("--config", config, "run", cwd=workdir, timeout=120)
            stopped = first.wait(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert second.returncode == 0, second.stdout + second.stderr
        assert stopped == ExitCode.USAGE
        assert "was removed or replaced while this command held it" in first.stderr.read()
        assert {p["status"] for p in state_of(workdir)["phases"]} == {"done"}


@pytest.mark.complete
def test_rollback_stands_in_for_a_vanished_controller_that_is_not_ours(
    world: World, workdir: Path
) -> None:
    """Another team's controller, adopted by the run, is deleted before the rollback: it is
    not ours to bring back, so its teardown of our Ingress is done by the stack's tags."""
    install_team_controller(world)
    world.succeeds("run", cwd=workdir)
    assert state_of(workdir)["phases"][6]["outputs"]["mode"] == "adopted"
    kubectl(world, "delete", "deployment", "-n", "kube-system", "aws-load-balancer-controller")

    gone = world.succeeds("rollback", "--all", "--yes", cwd=workdir)
    assert "it is not this deployment's to bring back" in gone.stdout
    client = kube_client(world)
    assert (
        kube_get(client, "networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system") is None
    )
    assert world.client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    stack = [{"Name": "tag:ingress.k8s.aws/stack", "Values": ["istio-system/istio-ingress"]}]
    assert world.client("ec2").describe_security_groups(Filters=stack)["SecurityGroups"] == []
    assert left_behind(world, workdir / "state.json") == []


FILE_SIZE_LIMIT = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
sys.argv = ["orchestrator", *sys.argv[1:]]
runpy.run_module("orchestrator", run_name="__main__")
"""


@pytest.mark.complete
def test_a_state_file_that_cannot_be_written_stops_the_command_in_one_line(
    world: World, workdir: Path
) -> None:
    """As on a full disk: the first save fails, exit 1, one line, no traceback, no AWS call."""
    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, "--config", str(world.config), "run"],
        env=world.env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == ExitCode.PHASE_FAILED, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot write the state file state.json: File too large")
    assert not (workdir / "state.json").exists()
    assert [p.name for p in workdir.iterdir() if p.name.endswith(".tmp")] == []
    assert world.calls() == []
