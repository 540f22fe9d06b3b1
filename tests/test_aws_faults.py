"""AWS faults over real HTTP (a fault-injecting proxy in front of the sandbox): transient
ones are retried with backoff and change nothing; throttling, even of most calls, is waited
out and the client paces itself; permanent ones fail the right phase at once, with the AWS
code, the message and what to do, and resume finishes afterwards. The retry loop's bounds
are also checked on their own, against a stand-in botocore client."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from faultproxy import THROTTLING_CODES, Fault, FaultProxy, RateLimit
from harness import World, left_behind, read_state
from test_e2e_certificates import assert_deployed

from orchestrator.aws import Aws, AwsClient, AwsError, backoff_cap
from orchestrator.errors import ExitCode
from orchestrator_sandbox import events


@contextmanager
def proxy_in_front(world: World) -> Iterator[FaultProxy]:
    """A fault proxy between the CLI and the world's AWS. The sandbox answers in
    milliseconds, so backoffs are short and a throttled client paces itself down to 10
    requests a second, not 0.5: at the defaults a run with throttling takes minutes."""
    proxy = FaultProxy(world.info["endpoints"]["aws"]).start()
    world.env = dict(
        world.env,
        AWS_ENDPOINT_URL=proxy.url,
        ORCHESTRATOR_AWS_RETRY_BASE="0.02",
        ORCHESTRATOR_AWS_MIN_RATE="10",
    )
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxied(world: World) -> Iterator[tuple[World, FaultProxy]]:
    with proxy_in_front(world) as proxy:
        yield world, proxy


@pytest.mark.complete
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


@pytest.mark.complete
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


@pytest.mark.complete
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
    assert "grant it, then run `orchestrator resume --config " in failed.stderr
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
        lambda s, a: a == "DescribeAvailabilityZones",
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
@pytest.mark.complete
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


# ---- throttling: patience with Route 53 and the rest --------------------------------------------


@pytest.mark.complete
def test_sixty_percent_throttling_ends_0_at_under_3x_the_calls(
    proxied: tuple[World, FaultProxy], tmp_path: Path
) -> None:
    """Amplification is what AWS sees of the job throttled over what it sees of the same job
    on a calm day: requests of a throttled run and rollback ÷ those of an unthrottled run and
    rollback (in a world of its own), both counted at a proxy. A client that retries each call
    until it gets through makes 1 / (1 - 0.6) = 2.5 requests per call on average whatever its
    backoff; more than that is waste: retries after success, retry layers stacked, work redone
    because a phase failed or a wait started over."""
    world, proxy = proxied
    calm_world = World.up(tmp_path / "calm", acm_delay=0.3, alb_delay=0.3)
    with calm_world, proxy_in_front(calm_world) as counter:
        run_and_roll_back(calm_world, tmp_path / "calm-work")
        calm = len(counter.requests)

    # The proxy draws from random.Random(7), so what it throttles is the same on every run.
    proxy.faults = [Fault("throttle", probability=0.6)]
    run_and_roll_back(world, tmp_path / "throttled-work")
    throttled = len(proxy.requests)

    amplification = throttled / calm
    print(f"\nrequests: {throttled} ({proxy.injected()} throttled), calm: {calm}")
    print(f"amplification: {amplification:.2f}")
    assert proxy.injected() / throttled > 0.55, "most requests were throttled"
    assert amplification < 3


def run_and_roll_back(world: World, workdir: Path) -> None:
    workdir.mkdir()
    config = str(world.config)
    done = world.cli("--config", config, "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_deployed(world)
    undone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert left_behind(world, workdir / "state.json") == []


@pytest.mark.complete
def test_a_throttled_client_paces_itself_instead_of_hammering(
    proxied: tuple[World, FaultProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Route 53 allows 5 requests a second per account; a client that only backs off per call
    sends each next call at full speed and meets the limit again, about 3 requests per call
    here. One that paces itself after throttling (botocore's adaptive rate limiter) sends
    close to 1."""
    world, proxy = proxied
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORCHESTRATOR_AWS_MIN_RATE", "1")  # the floor must be under the limit
    monkeypatch.setenv("ORCHESTRATOR_ROUTE53_RATE", "0")  # no pacing before the first throttle
    proxy.faults = [
        Fault("throttle", match=lambda s, a: s == "route53", limit=RateLimit(5, burst=5))
    ]
    route53 = Aws("us-west-2").route53
    calls = 40
    for _ in range(calls):
        route53.list_hosted_zones()
    # The proxy's limit, or the world's own (Route 53's, played by the sandbox too)
    throttled = [e for e in events.read(world.directory) if e["kind"] == "route53.throttled"]
    assert proxy.injected() + len(throttled) > 0, "the client met the rate limit"
    assert len(proxy.requests) / calls < 1.6


class StandIn:
    """A botocore client's stand-in whose get_caller_identity gives `answers` in turn: an
    exception to raise or a result to return."""

    def __init__(self, answers: list[Any]) -> None:
        self.meta = SimpleNamespace(
            method_to_api_mapping={"get_caller_identity": "GetCallerIdentity"}
        )
        self.answers = answers
        self.calls = 0

    def get_caller_identity(self) -> Any:
        answer = self.answers[self.calls]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def aws_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "Rate exceeded"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetCallerIdentity")


# How services say "slow down": EC2 with a 503, some with a bare 429.
THROTTLED = [
    aws_error("Throttling", 400),
    aws_error("PriorRequestNotComplete", 400),
    aws_error("RequestLimitExceeded", 503),
    aws_error("ThrottlingException", 429),
    aws_error("429", 429),
]
SERVER_TROUBLE = [
    aws_error("InternalFailure", 500),
    aws_error("503", 503),
    EndpointConnectionError(endpoint_url="https://sts.amazonaws.com"),
]


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """No pauses between attempts, 3 attempts for server errors; the list `sts` reports
    retries to."""
    monkeypatch.setenv("ORCHESTRATOR_AWS_RETRY_BASE", "0")
    monkeypatch.setenv("ORCHESTRATOR_AWS_MAX_ATTEMPTS", "3")
    return []


def sts(stand_in: StandIn, reported: list[int]) -> AwsClient:
    return AwsClient(stand_in, "sts", lambda error, attempt: reported.append(attempt))


def test_throttling_is_retried_for_its_time_not_a_count(reported: list[int]) -> None:
    stand_in = StandIn(THROTTLED * 6 + [{"Account": "123456789012"}])
    assert sts(stand_in, reported).get_caller_identity() == {"Account": "123456789012"}
    assert stand_in.calls == 31
    assert reported == list(range(1, 31)), "each retry is reported"


def test_throttling_gives_up_when_its_time_budget_is_spent(
    reported: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_AWS_THROTTLE_BUDGET", "0")
    stand_in = StandIn(THROTTLED)
    with pytest.raises(AwsError) as failed:
        sts(stand_in, reported).get_caller_identity()
    assert stand_in.calls == 1
    assert failed.value.code == "Throttling"
    assert "resume" in failed.value.hint and "ORCHESTRATOR_AWS_THROTTLE_BUDGET" in failed.value.hint


@pytest.mark.parametrize("error", SERVER_TROUBLE, ids=["500", "503", "dropped"])
def test_server_errors_and_dropped_connections_get_a_few_attempts(
    reported: list[int], error: Exception
) -> None:
    stand_in = StandIn([error] * 10)
    with pytest.raises(AwsError):
        sts(stand_in, reported).get_caller_identity()
    assert stand_in.calls == 3
    assert reported == [1, 2]


def test_throttling_does_not_use_up_the_attempts_for_server_errors(reported: list[int]) -> None:
    answers = [*THROTTLED, SERVER_TROUBLE[0], *THROTTLED, SERVER_TROUBLE[2], *THROTTLED, "done"]
    stand_in = StandIn(answers)
    assert sts(stand_in, reported).get_caller_identity() == "done"
    assert stand_in.calls == len(answers)


def test_a_permanent_error_is_not_retried(reported: list[int]) -> None:
    stand_in = StandIn([aws_error("AccessDenied", 403), "never"])
    with pytest.raises(AwsError):
        sts(stand_in, reported).get_caller_identity()
    assert stand_in.calls == 1 and reported == []


def test_route53_backs_off_longer_than_the_regional_services() -> None:
    # Route 53: 5 requests a second per account, PriorRequestNotComplete for up to a minute.
    assert backoff_cap("route53", 0.5) == 32
    assert backoff_cap("ec2", 0.5) == backoff_cap("acm", 0.5) == 16
