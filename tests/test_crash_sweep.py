"""Crash at every mutating call, then resume: never a duplicate, never a leak.

A failpoint (ORCHESTRATOR_FAILPOINT=before:N / after:N) kills the CLI with os._exit
right before or right after its Nth mutating call to AWS or Kubernetes, with no
clean-up and no state save. For every N of a full run, and of a `rollback --all`, both
before and after the call, the sweep crashes there; the resume that follows is crashed
too, at one of its own first calls (a crash while recovering from a crash); then a
last resume finishes, and what exists is compared with what a clean run makes (or, after
the rollback, with nothing).

The sweep runs twice: with the state in a local file, and with the state in S3 (a team's
shared state), where each crash also leaves the command's lock behind, whose lease must
run out before the next command takes it over; there, the lock must be gone and no
local state file made once a command ends well.

A last sweep crashes a controller upgrade (installed at the previous bundled release, then
run with the config asking the newer) before and after each of its writes, and checks the
resumed upgrade ends at the new release with its policy, nothing duplicated.

The CLI runs are forked from a warm interpreter (forkserver.py): each is a process of
its own, but does not pay the second of imports and model parsing a `python -m` start
costs, which made the sweep most of CI's time.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from forkserver import ForkServer
from harness import SUBDOMAIN, World, footprint, kube_client, kube_get, read_state, wait_for

from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    controller_policy,
)
from orchestrator.builders.running_controller import controller_version, parse_version
from orchestrator.failpoints import EXIT_CODE

pytestmark = pytest.mark.complete  # slow: CI runs it (`pytest --complete`)


HOST = f"kubeflow.{SUBDOMAIN}"
CHUNKS = 8  # the points are shared by eight tests, which pytest-xdist runs side by side
# Where the resume after a crash crashes in turn: one of its first mutating calls, which
# is where it re-reads and re-confirms what the crashed command left half done.
SECOND_CRASHES = ("after:1", "before:2", "after:2", "before:1", "after:3")
BUCKET = "team-state"  # the S3 sweep's states, one object per crash point
LEASE = "1"  # seconds: a crashed command's lock is taken over soon after


def inventory(world: World, deployment: str) -> Counter[str]:
    """What exists of the deployment, by kind and stable name (not random ids), counting
    duplicates whether or not they carry our tag."""
    found = Counter(
        entry.split(" arn:")[0].split(" sg-")[0]
        if entry.startswith(("elbv2", "security group"))
        else entry
        for entry in footprint(world, deployment)
    )
    for entry in list(found):
        if entry.startswith("OIDC provider "):  # its ARN names the world's own issuer
            found["OIDC provider"] += found.pop(entry)
        elif entry.startswith("elbv2 "):
            kind = "load balancer" if ":loadbalancer/" in entry else "target group"
            found[kind] += found.pop(entry)
        elif entry.startswith("security group "):
            found["security group"] += found.pop(entry)
    found["zones named the subdomain"] = len(world.zones())
    found["certificates for the subdomain"] = len(world.certificates())
    found["load balancers"] = len(world.client("elbv2").describe_load_balancers()["LoadBalancers"])
    issuer = world.info["seeded"]["oidc_issuer"].removeprefix("https://")
    iam = world.client("iam", "us-east-1")
    found["OIDC providers for the cluster"] = sum(
        p["Arn"].endswith(issuer)
        for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    )
    root = world.records(world.root_zone_id)
    found["NS delegations"] = sum(r["Type"] == "NS" and r["Name"] == SUBDOMAIN + "." for r in root)
    for zone in world.zones():
        for record in world.records(zone["Id"].split("/")[-1]):
            if record["Type"] in ("CNAME", "A"):
                found[f"{record['Type']} records in the zone"] += 1
    return +found


def estate(world: World) -> str:
    """What existed before any deployment, which every rollback must leave as it was."""
    subnets = world.client("ec2").describe_subnets(SubnetIds=world.info["seeded"]["subnet_ids"])[
        "Subnets"
    ]
    return json.dumps(
        {
            "root": world.records(world.root_zone_id),
            "subnets": sorted(
                (s["SubnetId"], sorted(map(str, s.get("Tags", [])))) for s in subnets
            ),
        },
        sort_keys=True,
        default=str,
    )


class Sweeper:
    """One worker: a world, the clean run's inventory to compare against, and where the
    states live (`local` files or `s3` objects)."""

    def __init__(self, directory: Path, store: str) -> None:
        # Route 53 knows each new ALB at once: a refused alias, retried, would be a mutating
        # call more or less by timing, and every crash point must see the same calls.
        self.world = World.up(directory / "world", acm_delay=0.1, alb_delay=0.1, alias_delay=0)
        self.world.env["ORCHESTRATOR_POLL_MAX_INTERVAL"] = "0.2"
        # Without the other team's role, nothing else trusts the OIDC provider a run makes:
        # every rollback deletes it and every run makes it again, so each crash point
        # sees the same calls, creating the provider included.
        iam = self.world.client("iam")
        team = self.world.info["seeded"]["data_team_role_name"]
        for policy in iam.list_role_policies(RoleName=team)["PolicyNames"]:
            iam.delete_role_policy(RoleName=team, PolicyName=policy)
        iam.delete_role(RoleName=team)
        self.store = store
        if store == "s3":
            s3 = self.world.client("s3")
            s3.create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
            )
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            self.world.env["ORCHESTRATOR_S3_LEASE"] = LEASE
        self.forks = ForkServer()
        self.directory = directory
        self.config = str(self.world.config)
        self.estate = estate(self.world)
        self.runs = 0
        self.second_crashes = 0

    def close(self) -> None:
        self.forks.close()
        self.world.down()

    def cli(self, *args: str, failpoint: str | None = None, log: Path | None = None) -> Any:
        env = dict(self.world.env)
        if failpoint:
            env["ORCHESTRATOR_FAILPOINT"] = failpoint
        if log:
            env["ORCHESTRATOR_FAILPOINT_LOG"] = str(log)
        self.runs += 1
        where = ["--state", self.state_url] if self.store == "s3" else []
        done = self.forks.cli("--config", self.config, *where, *args, cwd=self.workdir, env=env)
        if done.returncode == EXIT_CODE and self.store == "s3":
            self.wait_for_the_lease()
        return done

    def fresh_workdir(self, name: str) -> None:
        self.workdir = self.directory / name
        self.workdir.mkdir()
        self.state_key = f"{name}/state.json"
        self.state_url = f"s3://{BUCKET}/{self.state_key}"

    def state(self) -> dict[str, Any]:
        if self.store == "local":
            return read_state(self.workdir / "state.json")
        body = self.world.client("s3").get_object(Bucket=BUCKET, Key=self.state_key)["Body"]
        return json.loads(body.read())

    def lock(self) -> dict[str, Any] | None:
        """The S3 state's lock object, if there is one."""
        s3 = self.world.client("s3")
        key = self.state_key + ".lock"
        if not s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount"):
            return None
        return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def wait_for_the_lease(self) -> None:
        """A crashed command leaves its lock: wait until its lease has run out. The lock is
        read again at each poll: a renewal the command sent just before it died may land
        after the first read, pushing the lease on."""

        def expired() -> bool:
            lock = self.lock()
            return lock is None or float(lock["expires"]) < time.time()

        wait_for(expired, timeout=30, what="the crashed command's lease to run out")

    def leftovers(self, after: str) -> list[str]:
        """What a command that ended well must not leave: in S3, its lock, or a local
        state file."""
        if self.store == "local":
            return []
        problems = []
        lock = self.lock()
        if lock is not None:
            problems.append(f"{after}: the lock is still there: {lock}")
        if (self.workdir / "state.json").exists():
            problems.append(f"{after}: a local state file was made")
        return problems

    def clean(self) -> tuple[int, int, Counter[str]]:
        """A clean run and rollback: how many mutating calls each makes, what a run leaves."""
        self.fresh_workdir("clean")
        forward, backward = self.directory / "forward.log", self.directory / "backward.log"
        assert self.cli("run", log=forward).returncode == 0
        deployment = self.state()["deployment"]
        made = inventory(self.world, deployment)
        assert self.cli("rollback", "--all", "--yes", log=backward).returncode == 0
        assert footprint(self.world, deployment) == []
        assert self.leftovers("clean") == []
        run_calls, rollback_calls = (log.read_text().splitlines() for log in (forward, backward))
        # The state's own writes (S3) are not crash points.
        assert not [call for call in run_calls + rollback_calls if " s3:" in call]
        return len(run_calls), len(rollback_calls), made

    def crash_point(
        self, mode: str, n: int, forward: int, backward: int, expected: Counter[str]
    ) -> list[str]:
        """Crash the run and then the rollback at point n, and each resume after them once
        more; return what went wrong."""
        self.fresh_workdir(f"{mode}-{n}")
        second = SECOND_CRASHES[n % len(SECOND_CRASHES)]
        problems = []
        if n <= forward:
            crashed = self.cli("run", failpoint=f"{mode}:{n}")
            if crashed.returncode != EXIT_CODE:
                return [f"run {mode}:{n} did not crash: {crashed.returncode} {crashed.stderr}"]
            resumed = self.recover(second)
        else:
            resumed = self.cli("run")
        if resumed.returncode != 0:
            return [f"resume after run {mode}:{n}: {resumed.returncode} {resumed.stderr}"]
        problems += self.leftovers(f"run {mode}:{n}")
        state = self.state()
        if {p["status"] for p in state["phases"]} != {"done"}:
            problems.append(f"run {mode}:{n}: not every phase done")
        made = inventory(self.world, state["deployment"])
        if made != expected:
            problems.append(
                f"run {mode}:{n}: {dict(made - expected)} extra, {dict(expected - made)} missing"
            )
        if n <= backward:
            crashed = self.cli("rollback", "--all", "--yes", failpoint=f"{mode}:{n}")
            if crashed.returncode != EXIT_CODE:
                problems.append(f"rollback {mode}:{n} did not crash: {crashed.returncode}")
            finished = self.recover(second)  # resume finishes an interrupted rollback
        else:
            finished = self.cli("rollback", "--all", "--yes")
        if finished.returncode != 0:
            return [*problems, f"rollback {mode}:{n}: {finished.returncode} {finished.stderr}"]
        problems += self.leftovers(f"rollback {mode}:{n}")
        left = footprint(self.world, state["deployment"])
        if left or estate(self.world) != self.estate:
            problems.append(f"rollback {mode}:{n} left {left or 'the estate changed'}")
        return problems

    def recover(self, second_crash: str) -> Any:
        """`resume` crashed at `second_crash` (unless it finishes first), then `resume`."""
        resumed = self.cli("resume", failpoint=second_crash)
        if resumed.returncode == EXIT_CODE:
            self.second_crashes += 1
            resumed = self.cli("resume")
        return resumed


def sweep_points(forward: int, backward: int) -> list[tuple[str, int]]:
    last = max(forward, backward)
    return [(mode, n) for n in range(1, last + 1) for mode in ("before", "after")]


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("store", ["local", "s3"])
def test_crash_at_every_mutating_call_then_resume(tmp_path: Path, store: str, chunk: int) -> None:
    """This chunk's share of the crash points, on a world of its own."""
    sweeper = Sweeper(tmp_path, store)
    try:
        forward, backward, expected = sweeper.clean()
        assert forward >= 20 and backward >= 20, (forward, backward)
        points = sweep_points(forward, backward)[chunk::CHUNKS]
        problems = [
            problem
            for mode, n in points
            for problem in sweeper.crash_point(mode, n, forward, backward, expected)
        ]
        swept = Counter(mode for mode, _ in points)
        print(
            f"\ncrash sweep ({store} state) chunk {chunk}: {forward} mutating calls in a run, "
            f"{backward} in a rollback; swept after {swept['after']}, before "
            f"{swept['before']}; second crashes {sweeper.second_crashes}; CLI runs "
            f"{sweeper.runs}; problems {len(problems)}"
        )
        assert problems == [], "\n".join(problems)
    finally:
        sweeper.close()


# ---- the controller upgraded in place --------------------------------------------------------

OLD_CONTROLLER, NEW_CONTROLLER = "v3.4.3", "v3.5.0"


def config_asking(sweeper: Sweeper, version: str) -> str:
    """The world's config, asking for controller `version`."""
    settings = yaml.safe_load(sweeper.world.config.read_text())
    kubeflow = settings.get("kubeflow") or {}
    alb = kubeflow.get("alb") or {}
    alb["controller"] = {**(alb.get("controller") or {}), "version": version}
    settings["kubeflow"] = {**kubeflow, "alb": alb}
    path = sweeper.directory / f"config-{version}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def policy_edited_by_hand(sweeper: Sweeper, deployment: str) -> str:
    """Our controller policy, its default version granting one statement less (edited by
    hand): the upgrade then writes the policy too, before the controller. Its ARN."""
    iam = sweeper.world.client("iam")
    (arn,) = [
        p["Arn"]
        for p in iam.list_policies(Scope="Local")["Policies"]
        if p["PolicyName"] == f"alb-controller-{deployment}"[:64]
    ]
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    if len(versions) >= 5:  # IAM keeps five
        oldest = min(
            (v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"]
        )
        iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
    document = controller_policy(version=NEW_CONTROLLER)
    document["Statement"] = document["Statement"][1:]
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
    return arn


def upgrade_problems(sweeper: Sweeper, where: str, arn: str, expected: Counter[str]) -> list[str]:
    """What is wrong after an upgrade ended: not the new release, not its policy, or
    anything duplicated or missing."""
    problems = []
    deployment = kube_get(
        kube_client(sweeper.world), "apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE
    )
    if controller_version(deployment) != parse_version(NEW_CONTROLLER):
        problems.append(f"{where}: the controller runs {controller_version(deployment)}")
    iam = sweeper.world.client("iam")
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]
    if _document(document["Document"]) != controller_policy(version=NEW_CONTROLLER):
        problems.append(f"{where}: the policy is not the new release's")
    made = inventory(sweeper.world, sweeper.state()["deployment"])
    if made != expected:
        problems.append(f"{where}: {dict(made - expected)} extra, {dict(expected - made)} missing")
    return problems


def _document(stored: Any) -> Any:
    return stored if isinstance(stored, dict) else json.loads(urllib.parse.unquote(stored))


def test_crash_at_every_write_of_a_controller_upgrade_then_resume(tmp_path: Path) -> None:
    """Installed at the previous release, upgraded with a crash before and after each of
    the upgrade's writes (the policy's new version, the controller's objects), resumed:
    the new release runs with its policy, nothing duplicated. Between points the world is
    put back at the previous release (`--allow-downgrade`) and the policy edited again."""
    sweeper = Sweeper(tmp_path, "local")
    try:
        old, new = (config_asking(sweeper, v) for v in (OLD_CONTROLLER, NEW_CONTROLLER))
        until = ("--until", "controller")
        sweeper.fresh_workdir("upgrade")
        sweeper.config = old
        assert sweeper.cli("run", *until).returncode == 0
        deployment = sweeper.state()["deployment"]
        arn = policy_edited_by_hand(sweeper, deployment)
        sweeper.config, log = new, tmp_path / "upgrade.log"
        assert sweeper.cli("run", *until, log=log).returncode == 0
        writes = len(log.read_text().splitlines())
        assert writes >= 2, writes  # the policy, then the Deployment
        expected = inventory(sweeper.world, deployment)
        assert upgrade_problems(sweeper, "clean", arn, expected) == []
        problems = []
        for n in range(1, writes + 1):
            for mode in ("before", "after"):
                sweeper.config = old
                back = sweeper.cli("run", *until, "--allow-downgrade")
                assert back.returncode == 0, back.stdout + back.stderr
                policy_edited_by_hand(sweeper, deployment)
                sweeper.config = new
                crashed = sweeper.cli("run", *until, failpoint=f"{mode}:{n}")
                if crashed.returncode != EXIT_CODE:
                    problems.append(f"upgrade {mode}:{n} did not crash: {crashed.returncode}")
                resumed = sweeper.cli("resume", *until)
                if resumed.returncode != 0:
                    problems.append(f"resume after upgrade {mode}:{n}: {resumed.stderr}")
                    continue
                problems += upgrade_problems(sweeper, f"upgrade {mode}:{n}", arn, expected)
        print(f"\ncrash sweep of the upgrade: {writes} writes, {2 * writes} points")
        assert problems == [], "\n".join(problems)
    finally:
        sweeper.close()
