"""End to end, the DNS and certificate half: the real CLI against a sandbox world,
checked through the AWS APIs."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections import Counter
from pathlib import Path

import pytest
from harness import SUBDOMAIN, World, cli, phase_status, read_state, wait_for
from test_e2e_full import assert_serving

from orchestrator.errors import ExitCode
from orchestrator.states import phase_names

# These tests are about the DNS and certificate half: they stop after it.
HALF = ("--until", "certificates_issued")
CERT_PHASES = phase_names()[: phase_names().index("certificates_issued") + 1]
# An ACM validation delay longer than any test: the certificates stay PENDING_VALIDATION.
NEVER = 24 * 3600.0


def status_json(w: World, cwd: Path, *extra: str) -> dict:
    done = w.cli("status", "--json", *extra, cwd=cwd)
    assert done.returncode in (ExitCode.OK, ExitCode.PHASE_FAILED, ExitCode.WAITING), done.stderr
    return json.loads(done.stdout)


def statuses(w: World, cwd: Path) -> dict[str, str]:
    """Statuses of the certificate half's phases (the others stay pending here)."""
    every = {p["name"]: p["status"] for p in status_json(w, cwd)["phases"]}
    assert all(every[name] == "pending" for name in every if name not in CERT_PHASES)
    return {name: every[name] for name in CERT_PHASES}


def waiting_phase(w: World, cwd: Path) -> dict:
    """The one phase a stopped command left waiting."""
    (phase,) = [p for p in status_json(w, cwd)["phases"] if p["status"] == "waiting"]
    return phase


def assert_deployed(w: World) -> None:
    """One zone, delegated from the root, one ISSUED certificate with its validation CNAME."""
    zones = w.zones()
    assert len(zones) == 1
    zone_id = zones[0]["Id"].split("/")[-1]
    name_servers = w.client("route53").get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
    delegation = w.record(w.root_zone_id, SUBDOMAIN, "NS")
    assert delegation is not None
    assert sorted(r["Value"].rstrip(".") for r in delegation["ResourceRecords"]) == sorted(
        ns.rstrip(".") for ns in name_servers
    )

    certificates = w.certificates()
    assert len(certificates) == 1
    certificate = certificates[0]
    assert certificate["Status"] == "ISSUED"
    for option in certificate["DomainValidationOptions"]:
        wanted = option["ResourceRecord"]
        record = w.record(zone_id, wanted["Name"].rstrip("."), "CNAME")
        assert record is not None, f"validation record {wanted['Name']} missing"
        assert record["ResourceRecords"][0]["Value"].rstrip(".") == wanted["Value"].rstrip(".")


def test_quick_start_from_an_empty_directory_then_again_changes_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, ORCHESTRATOR_POLL_MAX_INTERVAL="2")
    first = cli("run", "--sandbox", env=env, cwd=tmp_path)
    with World(tmp_path / ".sandbox") as w:
        assert first.returncode == 0, first.stdout + first.stderr
        assert_deployed(w)
        assert_serving(w, tmp_path)  # the whole job: Ingress, ALB, record, endpoint
        assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600

        writes = len(w.writes())
        zone_ids = [z["Id"] for z in w.zones()]
        certificates = [c["CertificateArn"] for c in w.certificates()]
        again = cli("run", "--sandbox", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert len(w.writes()) == writes, "a re-run of a finished deployment wrote to AWS"
        assert [z["Id"] for z in w.zones()] == zone_ids
        assert [c["CertificateArn"] for c in w.certificates()] == certificates
        assert "still true" in again.stdout

        # A user who forgets --sandbox on resume is told how to reach the world.
        bare = cli("resume", env=env, cwd=tmp_path)
        assert bare.returncode == 2
        assert "add --sandbox" in bare.stderr
        resumed = cli("resume", "--sandbox", env=env, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert len(w.writes()) == writes


@pytest.mark.complete
def test_rollback_to_hosted_zone_then_all_leaves_nothing_and_root_untouched(
    world: World, workdir: Path
) -> None:
    root_before = json.dumps(world.records(world.root_zone_id), sort_keys=True)
    config = str(world.config)
    assert world.cli("--config", config, "run", *HALF, cwd=workdir).returncode == 0
    assert_deployed(world)
    zone_id = world.zones()[0]["Id"].split("/")[-1]

    back = world.cli("--config", config, "rollback", "--yes", "--to", "hosted_zone", cwd=workdir)
    assert back.returncode == 0, back.stderr
    assert world.certificates() == []
    assert world.record(world.root_zone_id, SUBDOMAIN, "NS") is None
    assert len(world.zones()) == 1, "the zone must stay"
    assert {r["Type"] for r in world.records(zone_id)} == {"NS", "SOA"}, (
        "validation records must be gone"
    )
    assert statuses(world, workdir) == {
        name: "done" if name in ("preflight", "hosted_zone") else "rolled_back"
        for name in CERT_PHASES
    }

    everything = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert everything.returncode == 0, everything.stderr
    assert world.zones() == []
    assert world.certificates() == []
    assert json.dumps(world.records(world.root_zone_id), sort_keys=True) == root_before
    assert set(statuses(world, workdir).values()) == {"rolled_back"}

    # And it comes back from nothing, with no duplicates.
    again = world.cli("--config", config, "run", *HALF, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert_deployed(world)


def test_kill_9_while_waiting_for_validation_then_resume(tmp_path: Path, workdir: Path) -> None:
    with World.up(tmp_path / "slow", acm_delay=10.0) as w:
        config = str(w.config)
        run = w.start("--config", config, "run", *HALF, cwd=workdir)
        wait_for(
            lambda: phase_status(workdir / "state.json", "certificates_issued") == "waiting",
            what="the run to wait for ACM",
        )
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=10) == -signal.SIGKILL

        resumed = w.cli("--config", config, "resume", *HALF, cwd=workdir)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"took over the lock left by pid {run.pid}" in resumed.stderr
        assert_deployed(w)
        actions = Counter(c["action"] for c in w.writes())
        assert actions["RequestCertificate"] == 1
        assert actions["POST /2013-04-01/hostedzone"] == 1


@pytest.mark.complete
def test_no_wait_exits_3_waiting_and_resume_finishes(tmp_path: Path, workdir: Path) -> None:
    with World.up(tmp_path / "slow", acm_delay=6.0) as w:
        config = str(w.config)
        first = w.cli("--config", config, "run", "--no-wait", *HALF, cwd=workdir)
        assert first.returncode == ExitCode.WAITING, first.stdout + first.stderr
        what = waiting_phase(w, workdir)["waiting_for"]
        assert f"while waiting for {what.split(' (')[0]}" in first.stderr
        # Each later wait is checked once too: resume --no-wait until nothing is left.
        for _ in range(len(CERT_PHASES)):
            again = w.cli("--config", config, "resume", "--no-wait", *HALF, cwd=workdir)
            if again.returncode != ExitCode.WAITING:
                break
            assert waiting_phase(w, workdir)["status"] == "waiting"
        resumed = w.cli("--config", config, "resume", *HALF, cwd=workdir)
        assert resumed.returncode == 0, resumed.stderr
        assert set(statuses(w, workdir).values()) == {"done"}


@pytest.mark.complete
def test_max_wait_stops_waiting_resumably(tmp_path: Path, workdir: Path) -> None:
    # ACM never issues within this test, so "still waiting" cannot depend on how fast CI is.
    with World.up(tmp_path / "slow", acm_delay=NEVER) as w:
        config = str(w.config)
        assert (
            w.cli("--config", config, "run", "--until", "controller", cwd=workdir).returncode == 0
        )
        stopped = w.cli("--config", config, "run", "--max-wait", "1", *HALF, cwd=workdir)
        assert stopped.returncode == ExitCode.WAITING
        assert "run `orchestrator resume --config " in stopped.stderr
        assert waiting_phase(w, workdir)["name"] == "certificates_issued"
        later = w.cli("--config", str(w.config), "resume", "--max-wait", "3", *HALF, cwd=workdir)
        assert later.returncode == ExitCode.WAITING, "ACM never issues here"
        assert waiting_phase(w, workdir)["name"] == "certificates_issued"
        assert "ACM to issue" in waiting_phase(w, workdir)["waiting_for"]


@pytest.mark.complete
def test_until_stops_after_the_named_phase(world: World, workdir: Path) -> None:
    done = world.cli("--config", str(world.config), "run", "--until", "delegation", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert statuses(world, workdir) == {
        name: "done" if name in ("preflight", "hosted_zone", "delegation") else "pending"
        for name in CERT_PHASES
    }
    assert world.certificates() == []


def manual_config(w: World, directory: Path) -> Path:
    text = w.config.read_text().replace(f"    hostedZoneId: {w.root_zone_id}\n", "")
    assert "hostedZoneId" not in text
    path = directory / "manual.yaml"
    path.write_text(text)
    return path


@pytest.mark.complete
def test_manual_delegation_prints_ns_then_resumes_when_dns_answers(
    world: World, workdir: Path
) -> None:
    config = str(manual_config(world, workdir))
    parked = world.cli("--config", config, "run", *HALF, cwd=workdir)
    assert parked.returncode == ExitCode.WAITING, parked.stdout + parked.stderr
    zone_id = world.zones()[0]["Id"].split("/")[-1]
    name_servers = world.client("route53").get_hosted_zone(Id=zone_id)["DelegationSet"][
        "NameServers"
    ]
    for ns in name_servers:
        assert ns.rstrip(".") in parked.stderr
    assert statuses(world, workdir)["delegation"] == "needs_action"

    still = world.cli("--config", config, "resume", *HALF, cwd=workdir)
    assert still.returncode == ExitCode.WAITING, "DNS does not answer yet: still parked"

    # The human adds the NS records "at the registrar" (here the root zone, which the
    # sandbox's DNS server serves like the internet would).
    world.client("route53").change_resource_record_sets(
        HostedZoneId=world.root_zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": SUBDOMAIN,
                        "Type": "NS",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": ns} for ns in name_servers],
                    },
                }
            ]
        },
    )
    resumed = world.cli("--config", config, "resume", *HALF, cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = read_state(workdir / "state.json")
    delegation = next(p for p in state["phases"] if p["name"] == "delegation")
    assert delegation["outputs"]["checked_by"] == "dns"
    assert world.certificates()[0]["Status"] == "ISSUED"

    # Rollback leaves the human's NS record alone: orchestrator did not create it.
    assert (
        world.cli(
            "--config", config, "rollback", "--yes", "--to", "hosted_zone", cwd=workdir
        ).returncode
        == 0
    )
    assert world.record(world.root_zone_id, SUBDOMAIN, "NS") is not None


@pytest.mark.complete
def test_manual_delegation_confirmed_by_a_human(world: World, workdir: Path) -> None:
    config = str(manual_config(world, workdir))
    assert world.cli("--config", config, "run", *HALF, cwd=workdir).returncode == ExitCode.WAITING
    confirmed = world.cli(
        "--config",
        config,
        "resume",
        "--confirm",
        "delegation",
        "--until",
        "certificates",
        cwd=workdir,
    )
    assert confirmed.returncode == 0, confirmed.stderr
    state = read_state(workdir / "state.json")
    delegation = next(p for p in state["phases"] if p["name"] == "delegation")
    assert delegation["status"] == "done"
    assert delegation["outputs"]["checked_by"] == "operator"


@pytest.mark.complete
def test_a_second_concurrent_command_exits_2_and_ctrl_c_saves_state(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "slow", acm_delay=NEVER) as w:
        config = str(w.config)
        run = w.start("--config", config, "run", *HALF, cwd=workdir)
        wait_for(
            lambda: phase_status(workdir / "state.json", "certificates_issued") == "waiting",
            what="the run to wait for ACM",
        )
        second = w.cli("--config", config, "resume", *HALF, cwd=workdir)
        assert second.returncode == ExitCode.USAGE
        assert f"locked by pid {run.pid}" in second.stderr
        assert (
            w.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir).returncode
            == ExitCode.USAGE
        )
        assert w.cli("status", cwd=workdir).returncode == ExitCode.WAITING, "no lock needed"

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=20) == ExitCode.INTERRUPTED
        assert statuses(w, workdir)["certificates_issued"] == "waiting"
        later = w.cli("--config", config, "resume", "--no-wait", *HALF, cwd=workdir)
        assert later.returncode == ExitCode.WAITING, later.stderr


@pytest.mark.complete
def test_corrupted_state_exits_2_and_is_left_untouched(world: World, workdir: Path) -> None:
    state = workdir / "state.json"
    state.write_bytes(b'{"schema": 1, "deployment": "x", "phases": [')
    before = state.read_bytes()
    for command in (["run"], ["resume"], ["rollback", "--all", "--yes"], ["status"]):
        done = world.cli("--config", str(world.config), *command, cwd=workdir)
        assert done.returncode == ExitCode.USAGE, (command, done.stderr)
        assert "corrupted" in done.stderr
        assert state.read_bytes() == before
    assert world.calls() == []


@pytest.mark.complete
def test_resume_with_another_subdomain_exits_2(world: World, workdir: Path) -> None:
    config = world.config
    assert (
        world.cli("--config", str(config), "run", "--until", "certificates", cwd=workdir).returncode
        == 0
    )
    state_before = (workdir / "state.json").read_bytes()
    calls_before = len(world.calls())
    moved = workdir / "moved.yaml"
    moved.write_text(config.read_text().replace("platform.example.com", "other.example.com"))
    done = world.cli("--config", str(moved), "resume", cwd=workdir)
    assert done.returncode == ExitCode.USAGE
    assert "route53.subDomain.name: 'platform.example.com' -> 'other.example.com'" in done.stderr
    assert (workdir / "state.json").read_bytes() == state_before
    assert len(world.calls()) == calls_before

    # A change that only affects phases not yet run is fine.
    sans = workdir / "sans.yaml"
    sans.write_text(config.read_text().replace("scheme: internet-facing", "scheme: internal"))
    assert world.cli("--config", str(sans), "resume", *HALF, cwd=workdir).returncode == 0


@pytest.mark.complete
def test_resume_without_a_state_file_exits_2(world: World, workdir: Path) -> None:
    done = world.cli("--config", str(world.config), "resume", *HALF, cwd=workdir)
    assert done.returncode == ExitCode.USAGE
    assert "nothing to resume" in done.stderr
    assert not (workdir / "state.json").exists()


@pytest.mark.complete
def test_status_json_lists_phases_in_run_order(world: World, workdir: Path) -> None:
    assert (
        world.cli(
            "--config", str(world.config), "run", "--until", "hosted_zone", cwd=workdir
        ).returncode
        == 0
    )
    report = status_json(world, workdir)
    assert report["deployment"].startswith("platform-example-com-")
    assert [p["name"] for p in report["phases"]] == phase_names()
    for phase in report["phases"]:
        assert set(phase) == {"name", "status", "outputs", "waiting_for", "error", "kept"}
    assert report["phases"][1]["outputs"]["zone_id"]


@pytest.mark.complete
def test_a_validation_record_deleted_by_hand_is_written_again(world: World, workdir: Path) -> None:
    config = str(world.config)
    assert world.cli("--config", config, "run", *HALF, cwd=workdir).returncode == 0
    zone_id = world.zones()[0]["Id"].split("/")[-1]
    (cname,) = [r for r in world.records(zone_id) if r["Type"] == "CNAME"]
    world.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": cname}]},
    )
    again = world.cli("--config", config, "run", *HALF, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "certificates: was done, but validation record" in again.stdout
    assert_deployed(world)
