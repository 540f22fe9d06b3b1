"""How commands talk, in process: the JSON events parse and end with a result, plain lines
carry timestamps, the rollback preview names each resource, plan's read-only guard and
the call log."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest

from orchestrator import calls, preview
from orchestrator.planning import CREATE, USE, Change, PhasePlan, lines, summary
from orchestrator.report import JsonReporter, LiveReporter, Reporter, elapsed
from orchestrator.states import all_phases, phase_names
from orchestrator.store import PhaseStatus, Resource, new_state


def every_event(reporter: Reporter) -> None:
    reporter.header("d", "state.json")
    reporter.started("hosted_zone", "public hosted zone")
    reporter.waiting("hosted_zone", "Route 53", 1.0, None)
    reporter.waiting("hosted_zone", "Route 53", 2.0, None)  # nothing new: no event
    reporter.waiting("hosted_zone", "Route 53", 3.0, "PENDING")
    reporter.info("deleted route53:hosted-zone Z1", "hosted_zone")
    reporter.done("hosted_zone", 1.5)
    reporter.verified("preflight")
    reporter.drifted("delegation", "the NS record changed")
    reporter.rolling_back("ingress")
    reporter.rolled_back("ingress", 2.0)
    reporter.failed("ingress", "it broke", "run `orchestrator resume`")
    reporter.stopped("stopped; run `orchestrator resume`")
    reporter.finished("https://kubeflow.example.com/")
    reporter.result(0, "")


def test_each_json_event_is_one_parseable_line_and_the_last_is_the_result() -> None:
    out = io.StringIO()
    every_event(JsonReporter(out, rewrite=lambda text: text.replace("resume`", "resume --x`")))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == [
        "start",
        "phase_started",
        "waiting",
        "waiting",
        "info",
        "phase_done",
        "phase_verified",
        "phase_drifted",
        "rollback_started",
        "rollback_done",
        "phase_failed",
        "stopped",
        "finished",
        "result",
    ]
    assert events[-1]["exit_code"] == 0 and isinstance(events[-1]["seconds"], float)
    assert events[10]["next"] == "run `orchestrator resume --x`"  # hints carry the flags
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in events)


def test_plain_lines_have_timestamps_when_asked_and_errors_stay_bare() -> None:
    out, err = io.StringIO(), io.StringIO()
    every_event(Reporter(out, err, timestamps=True))
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in out.getvalue().splitlines())
    assert err.getvalue().splitlines()[0] == "error: phase ingress failed: it broke"


def test_the_live_display_prints_each_finished_phase_with_its_time() -> None:
    out = io.StringIO()
    reporter = LiveReporter(out)
    every_event(reporter)
    reporter.close()
    text = out.getvalue()
    assert "✓ hosted_zone (1.5s)" in text and "✓ ingress rolled back (2.0s)" in text
    assert re.search(r"done in \d", text) and "Kubeflow is at https://kubeflow" in text


class Terminal(io.StringIO):
    """What a terminal is to rich: a stream that says it is one."""

    def isatty(self) -> bool:
        return True


LIVE_BEGINS = "\x1b[?25l"  # rich hides the cursor as its live display begins


def test_the_live_display_begins_with_the_first_phase_and_not_again_once_closed() -> None:
    """A command chooses its reporter as it starts: what it says before its first phase
    (a rollback's preview and question, a notice) is said with no live display over it."""
    out = Terminal()
    reporter = LiveReporter(out)
    reporter.notice("rolling back with the settings state.json recorded")
    reporter.info("AWS answered Throttling to route53 ListHostedZones; retrying (attempt 1)")
    assert LIVE_BEGINS not in out.getvalue()
    reporter.started("ingress", "the Ingress")
    assert out.getvalue().count(LIVE_BEGINS) == 1
    reporter.close()
    reporter.rolling_back("ingress")  # said after the end: in lines, the terminal left alone
    assert out.getvalue().count(LIVE_BEGINS) == 1


@pytest.mark.parametrize(
    "seconds, shown", [(0.04, "0.0s"), (9.95, "9.9s"), (42.4, "42s"), (185, "3m05s")]
)
def test_elapsed_is_short(seconds: float, shown: str) -> None:
    assert elapsed(seconds) == shown


def test_the_rollback_preview_names_each_resource_newest_phase_first() -> None:
    phases = all_phases()
    state = new_state("d", {}, phase_names())
    zone = state.phase("hosted_zone")
    zone.status = PhaseStatus.DONE
    zone.resources = [Resource("route53:hosted-zone", "Z1", created=True)]
    delegation = state.phase("delegation")
    delegation.status = PhaseStatus.DONE
    rrset = {"Name": "p.example.com.", "Type": "NS"}
    delegation.resources = [Resource("route53:record", "Z0/p/NS", True, detail={"rrset": rrset})]
    ingress = state.phase("ingress")
    ingress.status = PhaseStatus.FAILED
    ingress.resources = [
        Resource("kubernetes:object", "networking.k8s.io/v1/Ingress/istio-system/i", True)
    ]
    iam = state.phase("controller_iam")
    iam.status = PhaseStatus.DONE
    iam.resources = [Resource("iam:oidc-provider", "arn:oidc", created=False)]

    steps = preview.rollback_steps(state, phases, None)
    assert [step.line().split()[:3] for step in steps] == [
        ["ingress", "delete", "Ingress"],
        ["controller_iam", "leave", "iam:oidc-provider"],
        ["delegation", "delete", "route53"],
        ["hosted_zone", "delete", "route53:hosted-zone"],
        ["(then)", "delete", "whatever"],
    ]
    assert "the ALB" in steps[0].why and "adopted" in steps[1].why
    assert preview.deletes_anything(steps)
    # --to delegation keeps delegation and what comes before it.
    assert [s.phase for s in preview.rollback_steps(state, phases, "delegation")] == [
        "ingress",
        "controller_iam",
    ]
    rendered = preview.render(steps, "d", "--all")
    assert rendered.splitlines()[0] == "rollback --all of deployment d will, newest phase first:"


def test_a_plan_reads_only_a_write_is_refused() -> None:
    with calls.read_only("plan"):
        calls.check("aws route53", "ListHostedZones", mutating=False)
        with pytest.raises(calls.WriteRefused, match="plan makes no change, but aws route53"):
            calls.check("aws route53", "CreateHostedZone", mutating=True)
    calls.check("aws route53", "CreateHostedZone", mutating=True)  # outside: allowed


def test_the_plan_is_shown_a_line_per_phase_and_change_with_a_count() -> None:
    plans = [
        PhasePlan("preflight", "done"),
        PhasePlan("hosted_zone", "to_do", [Change(CREATE, "public hosted zone p.example.com")]),
        PhasePlan("delegation", "drifted", [Change(USE, "record p NS")], "it changed"),
        PhasePlan("certificates", "unknown", problem="AccessDenied"),
    ]
    shown = lines(plans)
    assert shown[0].split() == ["preflight", "done,", "still", "true"]
    assert shown[2].split() == ["create", "public", "hosted", "zone", "p.example.com"]
    assert "done, but it changed: entered again" in shown[3]
    assert "cannot tell: AccessDenied" in shown[-1]
    assert summary(plans).startswith("1 to create, 0 to update, 0 to delete; 1 of 4 phases")
    assert "could not plan certificates" in summary(plans)


def test_calls_are_logged_with_duration_and_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.calls")
    started = calls.check("kubernetes", "get Ingress i", mutating=False)
    calls.done("kubernetes", "get Ingress i", started, 3, "NotFound")
    (record,) = caplog.records
    assert re.fullmatch(
        r"kubernetes get Ingress i \d+\.\d{3}s, 3 attempts failed: NotFound", record.getMessage()
    )


def test_a_quiet_ingress_is_normal_at_first_and_suspicious_later() -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.states.load_balancer import QUIET_LIMIT, quiet_controller

    def ago(seconds: float) -> str:
        return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert quiet_controller(ago(5)) == "the controller has not reported on the Ingress yet"
    late = quiet_controller(ago(QUIET_LIMIT + 30))
    assert "check that it runs" in late and "kubectl -n kube-system" in late


# ---- the live line ---------------------------------------------------------------------------

LONG_DETAIL = (
    "Ingress has hostname k8s-istiosys-istioing-0123456789abcdef.us-west-2.elb.amazonaws.com, "
    "but no such load balancer exists yet"
)


def waiting_on_a_terminal() -> LiveReporter:
    """A live reporter (its display stopped: the test draws the line itself) in a wait."""
    reporter = LiveReporter(io.StringIO())
    reporter.close()
    reporter.started("load_balancer", "the ALB")
    reporter.waiting(
        "load_balancer", "the ALB of Ingress istio-system/istio-ingress", 3, LONG_DETAIL
    )
    return reporter


def drawn(reporter: LiveReporter, width: int, clock: Any = None) -> list[str]:
    """The live line as rich's Live draws it on a terminal `width` columns wide: the lines
    it renders are those it moves the cursor up over at the next refresh."""
    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), get_time=clock)
    rendered = console.render_lines(reporter.line(), console.options)
    return ["".join(segment.text for segment in line) for line in rendered]


@pytest.mark.parametrize("width", [80, 120])
def test_the_live_line_stays_one_line_cut_to_the_terminals_width(width: int) -> None:
    (text,) = drawn(waiting_on_a_terminal(), width)
    assert len(text) == width and text.endswith("…"), text
    assert re.search(r"load_balancer \d+\.\ds \(total \d+\.\ds\): waiting for the ALB", text)


def test_the_live_lines_spinner_turns() -> None:
    reporter = waiting_on_a_terminal()
    now = [100.0]
    clock = lambda: now[0]  # noqa: E731
    reporter.console.get_time = clock
    frames = set()
    for _ in range(5):
        frames.add(drawn(reporter, 120, clock)[0][0])
        now[0] += 0.1  # rich's "dots" shows a new frame every 80 ms
    assert len(frames) == 5, frames


# ---- how a stopped wait is told ----------------------------------------------------------------


def test_a_stop_by_max_wait_says_how_long_the_command_ran(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--max-wait counts from the command's start: a wait that began just before the
    deadline is stopped after its first look, yet the command ran the whole time."""
    from orchestrator.cli import working
    from orchestrator.errors import ExitCode, StillWaiting

    class Engine:
        report = Reporter()

    Engine.report.began -= 2.4  # the phases before the wait took 2.4 s

    def wait() -> None:
        raise StillWaiting("ACM to issue the certificate", 0.02)

    assert working._outcome(Engine(), wait, None) == ExitCode.WAITING  # type: ignore[arg-type]
    said = capsys.readouterr().err
    assert said.startswith(
        "stopped after 2.4s while waiting for ACM to issue the certificate "
        "(0.0s of it on this wait); run `orchestrator resume`"
    ), said


# ---- the README names every JSON event -------------------------------------------------------


def test_the_readme_lists_every_json_event_the_code_emits() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    emitted = set()
    for source in (root / "orchestrator").rglob("*.py"):
        emitted |= set(re.findall(r"\bemit\(\s*\"([a-z_]+)\"", source.read_text()))
    assert {"start", "phase_verified", "result"} <= emitted  # the scan finds them
    readme = (root / "README.md").read_text()
    listed = re.search(
        r"`--json` writes one JSON object a line to\s+stdout instead \(([^)]*)\)", readme
    )
    assert listed, "the README's list of JSON events"
    named = set(re.findall(r"`([a-z_]+)`", listed.group(1))) | {"result"}
    assert emitted - named == set(), "events the README does not list"
    assert named - emitted == set(), "events the README lists that nothing emits"
