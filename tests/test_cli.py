"""The operator's commands, in process: --version, --help, status (its summary and exit
codes), outputs, graph, and hints that carry the user's flags."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_report import LIVE_BEGINS, Terminal

from orchestrator import cli, report
from orchestrator.cli import reading, working
from orchestrator.errors import ExitCode, StateWriteFailed
from orchestrator.hints import Flags
from orchestrator.machine import MOVES
from orchestrator.report import Reporter
from orchestrator.states import phase_names
from orchestrator.store import DeploymentState, PhaseStatus, Resource, StateStore, new_state

PHASES = phase_names()
NAME_SERVERS = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.net"]
CONFIG = {
    "cluster": {"name": "kube-eks-cluster", "region": "us-west-2"},
    "route53": {
        "rootDomain": {"name": "example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"},
        "subDomain": {"name": "platform.example.com", "subjectAlternativeNames": []},
    },
    "kubeflow": {"alb": {"scheme": "internet-facing"}},
}
# What the phases record, as far as `outputs` reads it.
OUTPUTS: dict[str, dict[str, Any]] = {
    "preflight": {"account": "123456789012", "vpc_id": "vpc-1"},
    "hosted_zone": {"zone_id": "Z0SUB", "name_servers": NAME_SERVERS},
    "certificates": {
        "certificates": [{"arn": "arn:aws:acm:us-west-2:1:certificate/a", "domain": "*.p"}],
        "certificate_arn": "arn:aws:acm:us-west-2:1:certificate/a",
    },
    "load_balancer": {"hostname": "k8s-istio-1.us-west-2.elb.amazonaws.com"},
    "dns_record": {"name": "kubeflow.platform.example.com"},
    "endpoint": {"url": "https://kubeflow.platform.example.com/", "http_status": 200},
}


def deployment(tmp_path: Path, statuses: dict[str, str], done_up_to: str | None = None) -> Path:
    """A state file: every phase up to `done_up_to` done (with outputs), then `statuses`."""
    state = new_state("platform-example-com-0123", {}, PHASES)
    last = PHASES.index(done_up_to) if done_up_to else -1
    for record in state.phases[: last + 1]:
        record.status = PhaseStatus.DONE
        record.outputs = dict(OUTPUTS.get(record.name, {}))
    for name, status in statuses.items():
        record = state.phase(name)
        record.status = PhaseStatus(status)
        record.waiting_for = "the moon" if status in ("waiting", "needs_action") else None
        record.error = "it broke (next: fix it)" if status == "failed" else None
    path = tmp_path / "state.json"
    StateStore(path).save(state)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- --version and --help ---------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"orchestrator {version('kubeflow-alb-orchestrator')}\n"


def test_help_lists_the_phases_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    listed = [line.split(". ", 1)[1] for line in out.splitlines() if ". " in line[:6]]
    assert listed == PHASES
    assert "example:" in out


@pytest.mark.parametrize(
    "command",
    ["run", "resume", "rollback", "plan", "import", "status", "outputs", "graph", "completion"],
)
def test_each_command_has_a_description_and_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: orchestrator {command}")
    assert not description.startswith(("options:", "positional")), "a description"
    example = out.split("example:\n")[1]
    assert f"orchestrator {command}" in example or "orchestrator --config" in example


# ---- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "done_up_to", "code", "summary"),
    [
        ({}, "endpoint", 0, "12 of 12 phases done: Kubeflow is at https://kubeflow.platform"),
        ({}, None, 0, "nothing has run yet"),
        ({p: "rolled_back" for p in PHASES}, None, 0, "12 rolled back"),
        ({}, "hosted_zone", 0, "2 of 12 phases done; next: delegation"),
        ({"certificates_issued": "waiting"}, "controller", 3, "certificates_issued waiting for"),
        ({"delegation": "needs_action"}, "hosted_zone", 3, "delegation needs action: the moon"),
        ({"ingress": "in_progress"}, "certificates_issued", 3, "ingress in progress"),
        ({"ingress": "failed"}, "certificates_issued", 1, "ingress failed: it broke"),
    ],
)
def test_status_ends_with_a_summary_and_its_exit_code_says_where_things_are(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    statuses: dict[str, str],
    done_up_to: str | None,
    code: int,
    summary: str,
) -> None:
    path = str(deployment(tmp_path, statuses, done_up_to))
    shown, out, _ = run(capsys, "status", "--state", path)
    assert shown == code
    assert summary in out.splitlines()[-1]
    as_json, out, _ = run(capsys, "status", "--state", path, "--json")
    assert as_json == code
    assert summary in json.loads(out)["summary"]


def test_status_of_an_interrupted_rollback_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = deployment(tmp_path, {}, "endpoint")
    store = StateStore(path)
    state = store.load(PHASES)
    state.rollback_to = "*"
    store.save(state)
    code, out, _ = run(capsys, "status", "--state", str(path))
    assert code == ExitCode.WAITING
    assert "a rollback was interrupted" in out.splitlines()[-1]


def test_status_shows_list_outputs_one_item_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = deployment(tmp_path, {"delegation": "needs_action"}, "hosted_zone")
    _, out, _ = run(capsys, "status", "--state", str(path))
    lines = [line.strip() for line in out.splitlines()]
    start = lines.index("name_servers:")
    assert lines[start + 1 : start + 3] == [f"- {ns}" for ns in NAME_SERVERS]


def test_status_without_a_state_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status", "--state", str(tmp_path / "none.json"))
    assert code == ExitCode.USAGE and "nothing has run yet" in err


# ---- outputs ----------------------------------------------------------------------------------


def test_outputs_prints_a_table_of_what_done_phases_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(deployment(tmp_path, {}, "endpoint"))
    code, out, _ = run(capsys, "outputs", "--state", path)
    assert code == 0
    assert "url" in out and "https://kubeflow.platform.example.com/" in out
    assert "k8s-istio-1.us-west-2.elb.amazonaws.com" in out
    assert "arn:aws:acm:us-west-2:1:certificate/a" in out
    assert "\nname_servers:\n  ns-1.awsdns-01.org\n  ns-2.awsdns-02.net\n" in out


def test_outputs_name_prints_just_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(deployment(tmp_path, {}, "endpoint"))
    assert run(capsys, "outputs", "url", "--state", path)[1] == (
        "https://kubeflow.platform.example.com/\n"
    )
    assert run(capsys, "outputs", "name_servers", "--state", path)[1].splitlines() == NAME_SERVERS
    code, out, _ = run(capsys, "outputs", "name_servers", "--json", "--state", path)
    assert code == 0 and json.loads(out) == NAME_SERVERS


def test_outputs_json_is_one_object_with_every_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(deployment(tmp_path, {}, "hosted_zone"))
    code, out, _ = run(capsys, "outputs", "--json", "--state", path)
    found = json.loads(out)
    assert code == 0
    assert found["zone_id"] == "Z0SUB" and found["name_servers"] == NAME_SERVERS
    assert found["url"] is None, "not known before dns_record is done"


def test_outputs_refuses_an_unknown_name_and_waits_for_an_unknown_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(deployment(tmp_path, {}, "hosted_zone"))
    code, _, err = run(capsys, "outputs", "nope", "--state", path)
    assert code == ExitCode.USAGE
    assert "no output named 'nope'" in err and "url, alb_dns_name" in err
    code, out, err = run(capsys, "outputs", "alb_dns_name", "--state", path)
    assert code == ExitCode.WAITING and out == ""
    assert "phase load_balancer is pending" in err


# ---- graph ------------------------------------------------------------------------------------


def test_graph_draws_the_declared_lifecycle_and_marks_the_current_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(deployment(tmp_path, {"certificates_issued": "waiting"}, "controller"))
    code, out, _ = run(capsys, "graph", "--state", path)
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    for trigger, sources, dest in MOVES:
        for source in sources:
            assert f"{source.value} --> {dest.value}: {trigger}" in lines
    assert "class waiting here" in lines
    assert "note right of waiting: certificates_issued is here" in lines
    listed = [line for line in lines if line.startswith("%%") and ". " in line]
    assert [line.split(". ")[1].split()[0] for line in listed] == PHASES
    (marked,) = [line for line in listed if line.startswith("%% >")]
    assert "certificates_issued" in marked and marked.endswith("waiting")


def test_graph_without_a_state_file_marks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "graph", "--state", str(tmp_path / "none.json"))
    assert code == 0 and "note right" not in out and "%% >" not in out


def test_status_outputs_and_graph_import_neither_boto3_nor_kubernetes(tmp_path: Path) -> None:
    path = str(deployment(tmp_path, {}, "endpoint"))
    probe = (
        "import sys; from orchestrator import cli\n"
        "for argv in (['status'], ['outputs'], ['graph']):\n"
        f"    cli.main([*argv, '--state', {path!r}])\n"
        "heavy = {'boto3', 'botocore', 'kubernetes'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


# ---- hints with the user's flags --------------------------------------------------------------


def test_hints_get_the_flags_their_command_takes() -> None:
    flags = Flags(config="my config.yaml", state="s.json", sandbox=True, sandbox_dir="w")
    assert flags.rewrite("run `orchestrator resume --confirm delegation` now") == (
        "run `orchestrator resume --confirm delegation --config 'my config.yaml' "
        "--state s.json --sandbox --sandbox-dir w` now"
    )
    assert flags.rewrite("`orchestrator status`") == "`orchestrator status --state s.json`"
    assert flags.rewrite("`orchestrator sandbox up`") == "`orchestrator sandbox up`"
    assert flags.rewrite("`orchestrator:added-tags:x`") == "`orchestrator:added-tags:x`"
    assert flags.rewrite("`orchestrator run --state other.json`") == (
        "`orchestrator run --state other.json --config 'my config.yaml' --sandbox --sandbox-dir w`"
    ), "a flag the hint names is not repeated"
    assert Flags().rewrite("`orchestrator resume`") == "`orchestrator resume`"


@pytest.fixture
def refused(requests: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every AWS or Kubernetes request is refused and recorded (conftest.py), here."""
    monkeypatch.chdir(tmp_path)
    return requests


def test_the_hint_after_a_failure_carries_config_and_state(
    refused: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my config.yaml").write_text(yaml.safe_dump(CONFIG))
    argv = ["--config", "my config.yaml", "run", "--state", "s.json"]
    code, _, err = run(capsys, *argv)
    assert code == ExitCode.PHASE_FAILED and refused, err
    assert "phase preflight failed" in err
    (hint,) = [line for line in err.splitlines() if line.startswith("next:")]
    assert "`orchestrator resume --config 'my config.yaml' --state s.json`" in hint
    # status is given --state only: the state file says which config made it.
    code, out, _ = run(capsys, "status", "--state", "s.json")
    assert code == ExitCode.PHASE_FAILED
    assert "`orchestrator resume --config 'my config.yaml' --state s.json`" in out
    code, out, _ = run(capsys, "status", "--json", "--state", "s.json")
    summary = json.loads(out)["summary"]
    assert "`orchestrator resume --config 'my config.yaml' --state s.json`" in summary


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (KeyboardInterrupt(), "run `orchestrator resume --config c.yaml --state s.json --sandbox"),
        (StateWriteFailed("s.json", "disk full"), "`orchestrator resume --config c.yaml"),
    ],
)
def test_the_messages_of_main_carry_the_flags(
    failure: BaseException,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def stop(args: Any) -> int:
        raise failure

    monkeypatch.setattr(working, "_forward", stop)
    code, _, err = run(capsys, "--config", "c.yaml", "--state", "s.json", "run", "--sandbox")
    assert code in (ExitCode.INTERRUPTED, ExitCode.PHASE_FAILED)
    assert said in err


def test_a_read_only_command_interrupted_does_not_say_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def stop(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(reading, "_status", stop)
    code, _, err = run(capsys, "status")
    assert code == ExitCode.INTERRUPTED and "resume" not in err


def test_run_ends_with_the_url_once_every_phase_is_done(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state: DeploymentState = new_state("d", {}, PHASES)
    for record in state.phases:
        record.status = PhaseStatus.DONE
        record.outputs = dict(OUTPUTS.get(record.name, {}))
        record.resources = [Resource("thing", record.name, created=True)]

    class Engine:
        def __init__(self) -> None:
            self.state = state
            self.report = Reporter()

    assert working._outcome(Engine(), lambda: None, None) == ExitCode.OK  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "done",
        "Kubeflow is at https://kubeflow.platform.example.com/",
    ]


def complete(script: str, line: str) -> list[str]:
    """What bash offers for `line` (its last word), with the completion script loaded."""
    words = line.split(" ")
    program = (
        f"source /dev/stdin <<'SCRIPT'\n{script}\nSCRIPT\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
        'COMP_POINT=${#COMP_LINE}; _shtab_orchestrator; echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_flags_and_phase_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert complete(script, "orchestrator ro") == ["rollback"]
    assert complete(script, "orchestrator rollback --to cert") == [
        "certificates",
        "certificates_issued",
    ]
    assert "--yes" in complete(script, "orchestrator rollback --")


@pytest.mark.parametrize("shell", ["zsh", "tcsh"])
def test_other_shells_get_a_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", shell]) == 0
    assert "orchestrator" in capsys.readouterr().out


def test_the_configs_state_block_says_where_status_reads_and_the_flag_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    deployment(shared, {}, done_up_to="hosted_zone")
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({**CONFIG, "state": {"url": str(shared / "state.json")}})
    )
    code, out, _ = run(capsys, "status")
    assert code == ExitCode.OK and f"state: {shared / 'state.json'}" in out
    code, _, err = run(capsys, "--state", "elsewhere.json", "status")
    assert code == ExitCode.USAGE and "no state file at elsewhere.json" in err


# ---- the reporter, chosen once ------------------------------------------------------------------


def test_rollback_on_a_terminal_asks_before_its_live_display_begins(
    refused: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reporter is chosen once, as the command starts: live, on a terminal; the live
    display begins with the first phase rolled back, after the question is answered."""
    from orchestrator.config import load_config

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    config = load_config(tmp_path / "config.yaml")
    state = new_state(config.deployment_id, config.settings(), PHASES)
    state.phase("hosted_zone").status = PhaseStatus.FAILED  # with a zone made (no outputs)
    state.phase("hosted_zone").resources = [Resource("route53:hosted-zone", "Z0SUB", True)]
    path = tmp_path / "state.json"
    StateStore(path).save(state)
    chosen: list[Reporter] = []
    choose_once = report.choose

    def choose(**how: Any) -> Reporter:
        chosen.append(choose_once(**how))
        return chosen[-1]

    terminal = Terminal()
    asked: list[str] = []

    def answer(question: str) -> str:
        assert isinstance(chosen[0], report.LiveReporter)  # chosen before the question...
        assert LIVE_BEGINS not in terminal.getvalue()  # ...and not drawing over it
        asked.append(question)
        return "yes"

    monkeypatch.setattr(report, "choose", choose)
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr("builtins.input", answer)
    code = cli.main(["rollback", "--all", "--state", str(path)])
    assert code == ExitCode.PHASE_FAILED and refused  # the world refuses every call here
    assert asked and len(chosen) == 1
    shown = terminal.getvalue()
    assert "delete route53:hosted-zone Z0SUB" in shown.split(LIVE_BEGINS)[0]
    assert LIVE_BEGINS in shown  # the rollback of hosted_zone began
