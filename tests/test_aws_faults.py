"""AWS faults over real HTTP (a fault-injecting proxy in front of the sandbox): transient
ones are retried with backoff and change nothing; permanent ones fail the right phase at
once, with the AWS code, the message and what to do, and resume finishes afterwards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

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
    assert proxy.injected() >= 5, "the faults must actually have been met"
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
