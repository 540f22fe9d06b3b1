"""A deployment's state in S3, end to end through the CLI against the sandbox world (whose
moto serves S3, conditional writes included): two working directories stand for two
machines of one team."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import World, start, wait_for

from orchestrator.errors import ExitCode

pytestmark = pytest.mark.complete

BUCKET = "team-state"
KEY = "kubeflow/platform/state.json"
STATE = f"s3://{BUCKET}/{KEY}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3) as w:
        w.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )
        yield w


def machine(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    return directory


def lock_holder(world: World) -> dict[str, Any] | None:
    s3 = world.client("s3")
    try:
        body = s3.get_object(Bucket=BUCKET, Key=f"{KEY}.lock")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def waiting_for_acm(world: World, where: Path) -> bool:
    shown = world.cli("--state", STATE, "status", "--json", cwd=where)
    phases = json.loads(shown.stdout)["phases"] if shown.stdout.strip() else []
    return any(p["name"] == "certificates_issued" and p["status"] == "waiting" for p in phases)


def test_two_machines_share_one_deployment_through_s3(world: World, tmp_path: Path) -> None:
    laptop, ci = machine(tmp_path, "laptop"), machine(tmp_path, "ci")
    config = str(world.config)

    started = world.cli("--config", config, "--state", STATE, "run", "--until", "certificates",
                        cwd=laptop)  # fmt: skip
    assert started.returncode == ExitCode.OK, started.stdout + started.stderr
    assert list(laptop.iterdir()) == []  # no local state file
    assert "does not keep versions" in started.stderr

    # The other machine sees the same deployment, phase by phase.
    seen = world.cli("--state", STATE, "status", "--json", cwd=ci)
    here = world.cli("--state", STATE, "status", "--json", cwd=laptop)
    assert seen.returncode == here.returncode, seen.stdout + seen.stderr
    assert json.loads(seen.stdout) == json.loads(here.stdout)
    assert json.loads(seen.stdout)["phases"][3] == {
        **json.loads(seen.stdout)["phases"][3],
        "name": "certificates",
        "status": "done",
    }

    # A copy comes down to a local file, and goes back up; another state file's does not.
    pulled = world.cli("--state", STATE, "state", "pull", "copy.json", cwd=ci)
    assert pulled.returncode == ExitCode.OK, pulled.stdout + pulled.stderr
    copy = json.loads((ci / "copy.json").read_text())
    assert copy["deployment"] == json.loads(here.stdout)["deployment"]
    (ci / "other.json").write_text(json.dumps({**copy, "identity": "f" * 16}))
    refused = world.cli("--state", STATE, "state", "push", "other.json", cwd=ci)
    assert refused.returncode == ExitCode.USAGE, refused.stdout + refused.stderr
    assert "another state file of deployment" in refused.stderr
    pushed = world.cli("--state", STATE, "state", "push", "copy.json", cwd=ci)
    assert pushed.returncode == ExitCode.OK, pushed.stdout + pushed.stderr
    # Pushed, the local file only points to S3: a command on it changes nothing.
    assert sorted(p.name for p in ci.iterdir()) == ["copy.json", "other.json"]  # no lock files
    pointer = (ci / "copy.json").read_bytes()
    stale = world.cli("--config", config, "--state", "copy.json", "run", cwd=ci)
    assert stale.returncode == ExitCode.USAGE, stale.stdout + stale.stderr
    assert f"was pushed to {STATE}" in stale.stderr
    assert (ci / "copy.json").read_bytes() == pointer
    (ci / "copy.json").unlink()
    (ci / "other.json").unlink()
    # A bucket that does not exist is named, not taken for a deployment not started.
    gone = world.cli("--state", "s3://no-such-bucket/kubeflow/state.json", "status", cwd=ci)
    assert gone.returncode == ExitCode.USAGE, gone.stdout + gone.stderr
    assert "the bucket no-such-bucket does not exist" in gone.stderr

    finished = world.cli("--config", config, "--state", STATE, "resume", cwd=ci)
    assert finished.returncode == ExitCode.OK, finished.stdout + finished.stderr
    assert lock_holder(world) is None  # released on the way out
    # The world's request log has the state's S3 requests, as it has every AWS call.
    s3_writes = [c for c in world.writes() if c["service"] == "s3"]
    assert any(f"/{BUCKET}/{KEY}" in c["action"] for c in s3_writes)
    head = world.client("s3").head_object(Bucket=BUCKET, Key=KEY)
    assert head["ServerSideEncryption"] == "AES256"

    undone = world.cli("--config", config, "--state", STATE, "rollback", "--all", "--yes",
                       cwd=laptop)  # fmt: skip
    assert undone.returncode == ExitCode.OK, undone.stdout + undone.stderr
    zones = world.client("route53").list_hosted_zones()["HostedZones"]
    assert not [z for z in zones if z["Name"] == "platform.example.com."]


def test_a_second_command_is_refused_and_a_killed_holders_lease_is_taken_over(
    world: World, tmp_path: Path
) -> None:
    laptop, ci = machine(tmp_path, "laptop"), machine(tmp_path, "ci")
    config = str(world.config)
    env = {**world.env, "ORCHESTRATOR_S3_LEASE": "3"}
    holder = start("--config", config, "--state", STATE, "run", cwd=laptop, env=env)
    try:
        locked = wait_for(lambda: lock_holder(world), what="the run to take the lock")
        assert locked["command"] == "run" and locked["pid"] == holder.pid

        refused = world.cli("--config", config, "--state", STATE, "resume", cwd=ci, env=env)
        assert refused.returncode == ExitCode.USAGE, refused.stdout + refused.stderr
        assert f"locked by run of {locked['user']}" in refused.stderr
        assert f"pid {holder.pid}" in refused.stderr
        assert f"lock ID {locked['id']}; its lease ends at " in refused.stderr

        holder.send_signal(signal.SIGKILL)  # no way out runs: the lock stays, its lease ends
        holder.wait(timeout=30)
        # With --lock-timeout, the next command waits for the lease to end, then goes on.
        taken = world.cli("--config", config, "--state", STATE, "resume", "--lock-timeout",
                          "1m", cwd=ci, env=env)  # fmt: skip
        assert taken.returncode == ExitCode.OK, taken.stdout + taken.stderr
        assert f"took over the lock of run of {locked['user']}" in taken.stdout + taken.stderr
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGKILL)


def test_a_stale_writer_whose_lease_was_taken_over_cannot_overwrite(
    tmp_path: Path,
) -> None:
    """A holder frozen past its lease (SIGSTOP: a laptop closed mid-run) wakes after
    another machine took the lock over and wrote: its next save fails, and the state in
    S3 stays the other machine's."""
    with World.up(tmp_path / "world", acm_delay=600, alb_delay=0.3) as world:
        world.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )
        laptop, ci = machine(tmp_path, "laptop"), machine(tmp_path, "ci")
        config = str(world.config)
        env = {**world.env, "ORCHESTRATOR_S3_LEASE": "3"}
        # It waits for ACM (600 s) once it has written the certificates' records.
        frozen = start("--config", config, "--state", STATE, "run", cwd=laptop, env=env)
        try:
            wait_for(lambda: waiting_for_acm(world, ci), what="the run to wait for ACM")
            frozen.send_signal(signal.SIGSTOP)
            wait_for(
                lambda: (lock_holder(world) or {}).get("expires", 0) < time.time(),
                timeout=30,
                what="the frozen holder's lease to run out",
            )
            took = world.cli("--config", config, "--state", STATE, "rollback", "--to",
                             "certificates", "--yes", cwd=ci, env=env)  # fmt: skip
            assert took.returncode == ExitCode.OK, took.stdout + took.stderr
            after = world.client("s3").get_object(Bucket=BUCKET, Key=KEY)["ETag"]

            frozen.send_signal(signal.SIGCONT)
            out, err = frozen.communicate(timeout=120)
            assert frozen.returncode == ExitCode.USAGE, out + err
            assert "lock was lost" in err or "changed by another command" in err
            assert world.client("s3").get_object(Bucket=BUCKET, Key=KEY)["ETag"] == after
        finally:
            if frozen.poll() is None:
                frozen.send_signal(signal.SIGCONT)
                frozen.send_signal(signal.SIGKILL)
