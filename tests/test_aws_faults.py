"""AWS faults over real HTTP (a fault-injecting proxy in front of the sandbox): transient
ones are retried with backoff and change nothing; permanent ones fail the right phase at
once, with the AWS code, the message and what to do, and resume finishes afterwards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import THROTTLING_CODES, Fault, FaultProxy
from harness import World, read_state
from test_e2e_certificates import assert_deployed

from orchestrator.errors import ExitCode


@pytest.fixture
def proxied(world: World) -> Iterator[tuple[World, FaultProxy]]:
    proxy = FaultProxy(world.info["endpoints"]["aws"]).start()
    world.env = dict(world.env, AWS_ENDPOINT_URL=proxy.url, ORCHESTRATOR_AWS_RETRY_BASE="0.02")
    try:
        yield world, proxy
    finally:
        proxy.stop()


def test_throttling_5xx_and_dropped_connections_are_survived(
    proxied: tuple[World, FaultProxy], workdir: Path
) -> None:
    world, proxy = proxied
    proxy.faults = [Fault("error", code=code, probability=0.08) for code in THROTTLING_CODES]
    proxy.faults += [
        Fault("http500", probability=0.05),
        Fault("http503", probability=0.05),
        Fault("drop_before", probability=0.05),
    ]
    done = world.cli("--config", str(world.config), "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = Counter(kind if kind != "error" else "throttled" for *_, kind in proxy.log)
    print(f"\ntransient faults injected and survived: {proxy.injected()} {dict(kinds)}")
    assert proxy.injected() >= 10, "the faults must actually have been met"
    assert_deployed(world)
    assert "retrying" in done.stdout


def test_a_lost_answer_to_a_create_does_not_duplicate_it(
    proxied: tuple[World, FaultProxy], workdir: Path
) -> None:
    world, proxy = proxied
    creates = ("POST /2013-04-01/hostedzone", "RequestCertificate")
    proxy.faults = [Fault("drop_after", match=lambda s, a: a in creates, times=2)]
    done = world.cli("--config", str(world.config), "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert proxy.injected("drop_after") == 2
    assert_deployed(world)


def test_access_denied_fails_the_phase_at_once_then_resume_finishes(
    proxied: tuple[World, FaultProxy], workdir: Path
) -> None:
    world, proxy = proxied
    proxy.faults = [
        Fault(
            "error",
            match=lambda s, a: a == "RequestCertificate",
            code="AccessDeniedException",
            status=400,
            message="User: arn:aws:iam::123456789012:user/ci is not authorized "
            "to perform: acm:RequestCertificate",
        )
    ]
    config = str(world.config)
    failed = world.cli("--config", config, "run", cwd=workdir)
    assert failed.returncode == ExitCode.PHASE_FAILED
    assert "phase certificates failed" in failed.stderr
    assert "AccessDeniedException" in failed.stderr
    assert "not authorized to perform: acm:RequestCertificate" in failed.stderr
    assert "grant it, then run `orchestrator resume`" in failed.stderr
    assert Counter(a for _, a, _ in proxy.log)["RequestCertificate"] == 1, "no retries"
    phases = {p["name"]: p for p in read_state(workdir / "state.json")["phases"]}
    assert phases["certificates"]["status"] == "failed"
    assert "AccessDeniedException" in phases["certificates"]["error"]

    proxy.faults = []
    resumed = world.cli("--config", config, "resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert_deployed(world)


PERMANENT = [
    (
        "hosted_zone",
        lambda s, a: a == "POST /2013-04-01/hostedzone",
        "LimitExceeded",
        400,
        "The limit on the number of hosted zones was exceeded",
        "quota",
    ),
    (
        "hosted_zone",
        lambda s, a: a == "POST /2013-04-01/hostedzone",
        "TooManyHostedZones",
        400,
        "This operation can't be completed: you have reached the hosted zone limit",
        "quota",
    ),
    (
        "delegation",
        lambda s, a: a.startswith("POST") and a.endswith("/rrset/"),
        "InvalidInput",
        400,
        "Invalid request: Expected exactly one of [AliasTarget, ResourceRecords]",
        "invalid",
    ),
    (
        "certificates",
        lambda s, a: a == "RequestCertificate",
        "AccessDeniedException",
        400,
        "User is not authorized to perform: acm:RequestCertificate",
        "permission",
    ),
    (
        "controller_iam",
        lambda s, a: a == "CreateRole",
        "LimitExceeded",
        409,
        "Cannot exceed quota for RolesPerAccount: 1000",
        "quota",
    ),
    (
        "controller_iam",
        lambda s, a: a == "CreatePolicy",
        "AccessDenied",
        403,
        "User is not authorized to perform: iam:CreatePolicy",
        "permission",
    ),
    (
        "subnet_tags",
        lambda s, a: a == "CreateTags",
        "UnauthorizedOperation",
        403,
        "You are not authorized to perform this operation.",
        "permission",
    ),
]


@pytest.mark.parametrize(
    "phase, match, code, status, message, hint",
    PERMANENT,
    ids=[f"{p[0]}-{p[2]}" for p in PERMANENT],
)
def test_a_permanent_error_fails_its_phase_at_once(
    proxied: tuple[World, FaultProxy],
    workdir: Path,
    phase: str,
    match: Any,
    code: str,
    status: int,
    message: str,
    hint: str,
) -> None:
    world, proxy = proxied
    proxy.faults = [Fault("error", match=match, code=code, status=status, message=message)]
    config = str(world.config)
    failed = world.cli("--config", config, "run", "--until", phase, cwd=workdir)
    assert failed.returncode == ExitCode.PHASE_FAILED, failed.stdout + failed.stderr
    assert f"phase {phase} failed" in failed.stderr
    assert code in failed.stderr and message in failed.stderr
    assert hint in failed.stderr.split("next:")[1], "the hint says what to do"
    assert proxy.injected() == 1, "a permanent error is not retried"
    phases = {p["name"]: p for p in read_state(workdir / "state.json")["phases"]}
    assert phases[phase]["status"] == "failed" and code in phases[phase]["error"]

    proxy.faults = []
    resumed = world.cli("--config", config, "resume", "--until", phase, cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
