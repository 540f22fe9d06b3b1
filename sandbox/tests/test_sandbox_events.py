"""The world's event log: the critical path through synthetic events, and Route 53's
changes as the world records them (in process, moto and a clock the test moves)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from orchestrator_sandbox import events
from orchestrator_sandbox.route53 import make_route53_strict

DELAY = 40.0


def event(kind: str, subject: str, began: float, ended: float, *after: str) -> dict[str, Any]:
    return {
        "id": f"{kind}:{subject}",
        "kind": kind,
        "subject": subject,
        "began": began,
        "ended": ended,
        "after": list(after),
    }


# ---- the critical path -------------------------------------------------------------------------


def test_a_chain_adds_up_first_to_last() -> None:
    dns = event("route53.change", "C1", 0, 40)
    acm = event("acm.issued", "cert", 45, 135, dns["id"])
    alb = event("alb.active", "lb", 140, 290, acm["id"])
    assert events.critical_path([alb, dns, acm], 0, 300) == (
        40 + 90 + 150,
        [dns["id"], acm["id"], alb["id"]],
    )


def test_a_diamond_takes_its_longer_side() -> None:
    start = event("route53.change", "C1", 0, 10)
    short = event("deployment.available", "kube-system/lbc", 10, 15, start["id"])
    long = event("acm.issued", "cert", 10, 100, start["id"])
    end = event("alb.active", "lb", 100, 250, short["id"], long["id"])
    assert events.critical_path([start, short, long, end], 0, 300) == (
        10 + 90 + 150,
        [start["id"], long["id"], end["id"]],
    )


def test_of_equally_long_causes_the_one_that_ended_last_held_it_up() -> None:
    zone = event("route53.change", "C1", 0, 40)
    record = event("route53.change", "C2", 5, 45)
    acm = event("acm.issued", "cert", 45, 135, zone["id"], record["id"])
    assert events.critical_path([zone, record, acm], 0, 300) == (130, [record["id"], acm["id"]])


def test_events_outside_the_window_are_ignored() -> None:
    before = event("route53.change", "C0", -500, 10)  # began before `since`
    dns = event("route53.change", "C1", 0, 40)
    acm = event("acm.issued", "cert", 45, 135, before["id"], dns["id"])
    after = event("alb.active", "lb", 140, 1000, acm["id"])  # ended after `until`
    assert events.critical_path([before, dns, acm, after], 0, 300) == (
        130,
        [dns["id"], acm["id"]],
    )
    assert events.critical_path([after], 0, 300) == (0.0, [])


def test_a_repeated_id_means_its_latest_event_ended_before() -> None:
    first = event("deployment.available", "kube-system/lbc", 0, 30)
    again = event("deployment.available", "kube-system/lbc", 200, 300)  # a later rollout
    alb = event("alb.active", "lb", 50, 200, first["id"])
    assert events.critical_path([first, alb, again], 0, 400) == (180, [first["id"], alb["id"]])


# ---- the log -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    events.record_to(tmp_path / events.NAME)
    yield tmp_path
    events.record_to(None)


def test_nothing_is_recorded_until_a_path_is_set(tmp_path: Path) -> None:
    events.record("route53.change", "C1", 0, 1)
    assert events.read(tmp_path) == [] and events.recorded("route53.change", "C1") is None


def test_a_route53_change_is_recorded_when_it_is_made(log: Path, moto_env: str) -> None:
    clock = Clock()
    with mock_aws():
        make_route53_strict(dns_delay=DELAY, clock=clock)
        try:
            created = boto3.client("route53").create_hosted_zone(
                Name="events.example.com", CallerReference="events-test"
            )
        finally:
            make_route53_strict()  # moto's timing again for whatever runs next
    change_id = created["ChangeInfo"]["Id"].removeprefix("/change/")
    zone_id = created["HostedZone"]["Id"].split("/")[-1]
    [recorded] = events.read(log)
    assert recorded["id"] == f"route53.change:{change_id}"
    assert (recorded["kind"], recorded["subject"], recorded["zone"]) == (
        "route53.change",
        change_id,
        zone_id,
    )
    assert recorded["ended"] - recorded["began"] == pytest.approx(DELAY)
    assert recorded["after"] == []
    assert events.recorded("route53.change", change_id) == recorded["id"]
