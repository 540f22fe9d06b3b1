"""The operator's view through the real CLI against a sandbox world: the command a hint
prints runs as printed, with the user's flags; status's exit code follows the deployment;
run ends with the URL, which `outputs url` prints too; rollback shows what it deletes and
deletes nothing unasked; --json writes JSON lines; a terminal gets a live display."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from harness import SUBDOMAIN, World

from orchestrator.errors import ExitCode

HINT = re.compile(r"`(orchestrator [^`]+)`")


def as_printed(text: str) -> list[str]:
    """The last command `text` tells the user to run, as argv: `orchestrator` is this
    Python's `-m orchestrator` (the console script may not be on PATH in a test)."""
    commands = HINT.findall(text)
    assert commands, f"no command to run in: {text}"
    words = shlex.split(commands[-1])
    assert words[0] == "orchestrator"
    return [sys.executable, "-m", "orchestrator", *words[1:]]


@pytest.mark.complete
def test_the_hint_after_a_stopped_wait_runs_as_printed(world: World, workdir: Path) -> None:
    sandbox = ("--sandbox", "--sandbox-dir", str(world.directory))
    first = world.cli("run", *sandbox, "--state", "s.json", "--no-wait", cwd=workdir)
    assert first.returncode == ExitCode.WAITING, first.stdout + first.stderr
    argv = as_printed(first.stderr)
    assert argv[3] == "resume"
    assert "--state" in argv and "--sandbox" in argv and str(world.directory) in argv
    status = world.cli("status", "--state", "s.json", cwd=workdir)
    assert status.returncode == ExitCode.WAITING, status.stdout
    # status was given --state only; its hint carries what the state was made with too.
    resume = f"`orchestrator resume --state s.json --sandbox --sandbox-dir {world.directory}`"
    assert resume in status.stdout.splitlines()[-1], status.stdout

    # Followed as printed, again and again, the hints finish the job.
    for _ in range(60):
        done = subprocess.run(
            argv, cwd=workdir, env=world.env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode in (ExitCode.OK, ExitCode.WAITING), done.stdout + done.stderr
        if done.returncode == ExitCode.OK:
            break
        argv = as_printed(done.stderr)
    assert done.returncode == ExitCode.OK, "the hints never finished the job"
    url = f"https://kubeflow.{SUBDOMAIN}/"
    assert done.stdout.splitlines()[-1].endswith(f" Kubeflow is at {url}")
    shown = world.cli("outputs", "url", "--state", "s.json", cwd=workdir)
    assert shown.returncode == 0 and shown.stdout == f"{url}\n"
    assert world.cli("status", "--state", "s.json", cwd=workdir).returncode == ExitCode.OK


@pytest.mark.complete
def test_rollback_without_a_terminal_or_yes_deletes_nothing(world: World, workdir: Path) -> None:
    config = str(world.config)
    assert (
        world.cli("--config", config, "run", "--until", "subnet_tags", cwd=workdir).returncode == 0
    )
    state = (workdir / "state.json").read_bytes()
    writes, kube_writes = len(world.writes()), len(world.kube_writes())

    refused = world.cli("--config", config, "rollback", "--all", cwd=workdir)
    assert refused.returncode == ExitCode.USAGE, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "nothing was deleted" in line
    assert f"`orchestrator rollback --all --yes --config {config}`" in line
    # The list it would have asked about names each resource, newest phase first.
    assert f"delete route53:hosted-zone {world.zones()[0]['Id'].split('/')[-1]}" in refused.stdout
    assert f"delete route53 record {SUBDOMAIN} NS" in refused.stdout
    # (subnet_tags has nothing to delete: the controller finds the public subnets untagged)
    assert "iam:role" in refused.stdout
    assert refused.stdout.index("iam:role") < refused.stdout.index("hosted_zone")
    assert (workdir / "state.json").read_bytes() == state
    assert len(world.writes()) == writes and len(world.kube_writes()) == kube_writes

    # On a terminal it asks; anything but "yes" deletes nothing either.
    no = on_a_terminal(world, workdir, ["--config", config, "rollback", "--all"], answer="no\n")
    assert no.returncode == ExitCode.USAGE and "cancelled" in no.output
    assert "Delete these?" in no.output
    assert len(world.writes()) == writes and (workdir / "state.json").read_bytes() == state

    yes = on_a_terminal(world, workdir, ["--config", config, "rollback", "--all"], answer="yes\n")
    assert yes.returncode == ExitCode.OK, yes.output
    assert re.search(r"deleted route53:hosted-zone \w+", yes.output)
    assert world.zones() == []


@pytest.mark.complete
def test_json_lines_from_run_and_rollback_each_parse(world: World, workdir: Path) -> None:
    config = str(world.config)
    # (The controller's rollout is a wait the run sees, whatever the world's speed.)
    run = world.cli("--config", config, "run", "--until", "controller", "--json", cwd=workdir)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e["event"] for e in events][0] == "start"
    assert {"phase_started", "phase_done", "waiting"} <= {e["event"] for e in events}
    assert events[-1]["event"] == "result" and events[-1]["exit_code"] == 0
    assert all(e["time"].endswith("Z") for e in events)

    again = world.cli("--config", config, "resume", "--json", "--until", "controller", cwd=workdir)
    verified = [json.loads(line) for line in again.stdout.splitlines()]
    assert {e["phase"] for e in verified if e["event"] == "phase_verified"} >= {"hosted_zone"}

    refused = world.cli("--config", config, "rollback", "--all", "--json", cwd=workdir)
    assert refused.returncode == ExitCode.USAGE
    (last,) = [json.loads(line) for line in refused.stdout.splitlines()]
    assert last["event"] == "result" and last["exit_code"] == ExitCode.USAGE

    back = world.cli("--config", config, "rollback", "--all", "--yes", "--json", cwd=workdir)
    assert back.returncode == 0, back.stderr
    lines = [json.loads(line) for line in back.stdout.splitlines()]
    (preview,) = [e for e in lines if e["event"] == "preview"]
    assert {"phase": "hosted_zone", "action": "delete"}.items() <= preview["steps"][-2].items()
    deleted = [e["message"] for e in lines if e["event"] == "info" and "deleted" in e["message"]]
    assert any(m.startswith("deleted acm:certificate arn:") for m in deleted)
    assert lines[-1] == {**lines[-1], "event": "result", "exit_code": 0}


class Terminal:
    def __init__(self, returncode: int, output: str) -> None:
        self.returncode, self.output = returncode, output


def on_a_terminal(
    world: World,
    workdir: Path,
    args: list[str],
    answer: str = "",
    env: dict[str, str] | None = None,
) -> Terminal:
    """Run the CLI with a pseudo-terminal as its stdin, stdout and stderr, answering any
    question with `answer`."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=workdir,
        env={**world.env, "COLUMNS": "160", **(env or {})},
        close_fds=True,
    )
    os.close(follower)
    if answer:
        os.write(leader, answer.encode())
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return Terminal(process.wait(timeout=180), b"".join(chunks).decode(errors="replace"))


@pytest.mark.complete
def test_a_terminal_gets_live_progress_without_colour_under_no_color(
    world: World, workdir: Path
) -> None:
    args = ["--config", str(world.config), "run", "--until", "certificates_issued"]
    shown = on_a_terminal(world, workdir, args, env={"NO_COLOR": "1"})
    assert shown.returncode == 0, shown.output
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.output)  # without the terminal's codes
    for phase in ("preflight", "hosted_zone", "certificates_issued"):
        assert re.search(rf"✓ {phase} \(\d", text), text
    assert re.search(r"done in \d", text)
    # The live line says what it waits for (the controller's CRDs and rollout, ACM).
    assert re.search(r"waiting for (the controller's Custom|Deployment kube-system|ACM)", text)
    assert re.search(r"\(total \d", text)
    # Styles (bold, dim) stay; colours go.
    assert not re.search(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7])(?:;[0-9;]*)?m", shown.output)


@pytest.mark.complete
def test_plain_lines_carry_a_timestamp_without_a_terminal(world: World, workdir: Path) -> None:
    done = world.cli("--config", str(world.config), "run", "--until", "hosted_zone", cwd=workdir)
    lines = done.stdout.splitlines()
    assert lines and all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines


@pytest.mark.complete
def test_plan_names_what_run_would_make_and_writes_nothing(world: World, workdir: Path) -> None:
    config = str(world.config)
    # Drift checks in CI: exit 2 while run has anything to do, 0 once it has done it.
    planned = world.cli("--config", config, "plan", "--detailed-exitcode", cwd=workdir)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert world.writes() == [] and len(world.kube_writes()) == 0
    assert not (workdir / "state.json").exists()
    text = planned.stdout
    for named in (
        f"create public hosted zone {SUBDOMAIN}",
        f"create record {SUBDOMAIN} NS",
        f"create ACM certificate for *.{SUBDOMAIN}",
        "create IAM policy alb-controller-",
        "create IAM role alb-controller-",
        "the subnets the controller finds by their route tables: subnet-",  # no tag needed
        "create Deployment kube-system/aws-load-balancer-controller",
        "create Ingress istio-system/istio-ingress",
        f"create record kubeflow.{SUBDOMAIN} A alias",
    ):
        assert named in text, named
    assert text.splitlines()[-1].endswith("Nothing was changed.")

    assert (
        world.cli(
            "--config", config, "run", "--until", "certificates_issued", cwd=workdir
        ).returncode
        == 0
    )
    until = ("--until", "certificates_issued", "--detailed-exitcode")
    unchanged = world.cli("--config", config, "plan", *until, cwd=workdir)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    state = (workdir / "state.json").read_bytes()
    writes = len(world.writes())
    role = json.loads(state)["phases"][4]["outputs"]["role_name"]
    policy = json.loads(state)["phases"][4]["outputs"]["policy_arn"]
    # Drift, by hand (not counted: the world's log counts the orchestrator's calls).
    world.client("iam").detach_role_policy(RoleName=role, PolicyArn=policy)

    again = world.cli("--config", config, "plan", "--json", "--detailed-exitcode", cwd=workdir)
    assert again.returncode == 2, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    plans = {e["phase"]: e for e in events if e["event"] == "plan"}
    assert plans["hosted_zone"]["status"] == "done" and plans["hosted_zone"]["changes"] == []
    assert plans["controller_iam"]["status"] == "drifted"
    assert "is no longer attached" in plans["controller_iam"]["problem"]
    assert {"action": "create", "what": f"attachment of {role} to {role}", "why": ""} in plans[
        "controller_iam"
    ]["changes"]
    assert plans["ingress"]["status"] == "to_do"
    *_, summary, result = events
    assert summary["event"] == "summary" and summary["drifted"] == ["controller_iam"]
    assert summary["changes"] and summary["create"] >= 2 and summary["exit_code"] == 2
    assert result["event"] == "result" and result["exit_code"] == 2
    assert len(world.writes()) == writes and (workdir / "state.json").read_bytes() == state


@pytest.mark.complete
def test_verbose_and_log_file_record_each_call(world: World, workdir: Path) -> None:
    args = ("--config", str(world.config), "run", "--until", "hosted_zone", "-v")
    done = world.cli(*args, "--log-file", "calls.log", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert re.search(r"call aws route53 CreateHostedZone \d+\.\d{3}s ok", done.stderr)
    assert re.search(r"call kubernetes get Service istio-ingressgateway \d+\.\d{3}s", done.stderr)
    logged = (workdir / "calls.log").read_text()
    assert re.search(r"orchestrator\.calls aws sts GetCallerIdentity \d+\.\d{3}s ok", logged)
    assert "aws route53 CreateHostedZone" in logged
