"""Route 53's request limit and its alias targets, as the product meets them.

End to end: the whole job and its rollback against a world that plays Route 53's five
requests a second per account, with not one of the orchestrator's requests throttled.
In process: the pacing of Route 53 requests and of the waits on its changes, and
dns_record waiting for an alias target Route 53 does not know yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ORCHESTRATOR_AGENT, World, left_behind
from moto import mock_aws
from phasekit import Kit, eks_network, phase_kit
from test_phase_route53 import HOST, SUB, new_zone, rrsets

from orchestrator import aws, waiting
from orchestrator.aws import Aws, AwsError
from orchestrator.errors import StillWaiting
from orchestrator.pacing import Pace
from orchestrator.states.dns_record import DnsRecordPhase
from orchestrator_sandbox import events
from orchestrator_sandbox.route53 import make_route53_strict


def throttled(world: World) -> list[dict[str, object]]:
    """The orchestrator's requests the world refused for Route 53's rate limit."""
    return [
        e
        for e in events.read(world.directory)
        if e["kind"] == "route53.throttled" and ORCHESTRATOR_AGENT in str(e.get("agent"))
    ]


def test_a_full_run_and_rollback_stay_under_route53s_rate_limit(tmp_path: Path) -> None:
    """Pages of one make every list as many requests as it has items: the most a run asks
    of Route 53. The run, a no-change run and the rollback end 0 at once (no resume), and
    nothing is left."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, page_size=1) as world:
        assert world.info["settings"]["route53_rate"] == 5  # AWS's limit, the default
        config = str(world.config)
        done = world.cli("--config", config, "run", cwd=workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        before = len(world.calls())
        again = world.cli("--config", config, "run", cwd=workdir)
        assert again.returncode == 0, again.stdout + again.stderr
        # A run that changes nothing reads Route 53 once per check (the root zone, our
        # zone and its tags, the delegation, validation and alias records): at 4 in any
        # second, each read past the fourth waits a second for the first one's to pass.
        asked = [c["action"] for c in world.calls()[before:] if c["service"] == "route53"]
        assert len(asked) <= 6, asked
        gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert left_behind(world, workdir / "state.json") == []
        assert throttled(world) == []


class FakeClock:
    """Monotonic seconds for the waits, and the wall clock Route 53 judges a load balancer's
    age by: a pause moves both, ahead of the real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.ahead = 0.0  # of time.time()
        self.epoch: float | None = None  # the wall time at now 0, once a test fixes it
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        """Epoch seconds: fixed to the fake clock once `epoch` is set (a busy machine's real
        seconds then cannot age what the test ages by its pauses alone)."""
        return time.time() + self.ahead if self.epoch is None else self.epoch + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.ahead += seconds


# ---- pacing, in process ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def own_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file where Route 53's pace keeps its last second, the test's own: moto's endpoint
    is AWS's, which other tests, and this user's own commands, also pace against."""
    tail = tmp_path / "route53.pace"
    monkeypatch.setattr(aws, "tail_file", lambda service, endpoint: tail)
    return tail


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[Path]:
    """The world's event log, in `tmp_path`."""
    events.record_to(tmp_path / events.NAME)
    yield tmp_path
    events.record_to(None)


def test_route53_calls_keep_under_the_accounts_limit_from_the_first(
    moto_env: str, monkeypatch: pytest.MonkeyPatch, logged: Path
) -> None:
    """Two threads with clients of their own (phases verify side by side) share one pace,
    below Route 53's 5 requests a second: not one request is throttled."""
    monkeypatch.delenv("ORCHESTRATOR_ROUTE53_RATE", raising=False)
    make_route53_strict(rate=5)
    try:
        with mock_aws():
            clients = [Aws("us-west-2").route53 for _ in range(2)]
            threads = [
                threading.Thread(target=lambda c=c: [c.list_hosted_zones() for _ in range(5)])
                for c in clients
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            took = time.monotonic() - started
    finally:
        make_route53_strict()
    assert [e for e in events.read(logged) if e["kind"] == "route53.throttled"] == []
    assert took < 8, "paced at 4 in any second, 10 requests take about 2 s"


def test_no_second_sees_more_than_4_of_our_route53_requests_as_route53_counts_them(
    moto_env: str, monkeypatch: pytest.MonkeyPatch, logged: Path
) -> None:
    """The promise is 4 in any second, as Route 53 counts them (on arrival), so that every
    second leaves the account's other tools one request at least: with Route 53 playing a
    limit of 4, three threads asking at once have not one request throttled."""
    monkeypatch.delenv("ORCHESTRATOR_ROUTE53_RATE", raising=False)
    monkeypatch.setattr(aws, "_SHARED_PACES", {})
    make_route53_strict(rate=4)
    try:
        with mock_aws():
            clients = [Aws("us-west-2").route53 for _ in range(3)]
            threads = [
                threading.Thread(target=lambda c=c: [c.list_hosted_zones() for _ in range(4)])
                for c in clients
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        make_route53_strict()
    assert [e for e in events.read(logged) if e["kind"] == "route53.throttled"] == []


def pace_on(clock: FakeClock, tail: Path | None = None, wall: float = 0.0) -> Pace:
    """Route 53's pace at the default 2 a second, on a fake clock (and wall clock)."""
    return Pace(
        2.0, burst=8, per_second=4, clock=clock, sleep=clock.sleep, tail=tail, wall=lambda: wall
    )


def paced(requests: int, gap: float = 0.01) -> list[float]:
    """When each of `requests` Route 53 requests is sent, each answered `gap` seconds after
    it was sent, and the next asked for then."""
    clock = FakeClock()
    pace = pace_on(clock)
    sent = []
    for _ in range(requests):
        ticket = pace.take()
        sent.append(clock.now)
        clock.now += gap
        pace.answered(ticket)
    return sent


def test_a_commands_first_route53_requests_wait_for_nothing() -> None:
    """The pace starts full: a no-change run's side-by-side verifies, or a run's first
    phases, do not wait for tokens no one has spent (the first request of a process used
    to wait half a second, and each next one another half)."""
    assert paced(4, gap=0.0) == [0.0] * 4


def test_no_second_sees_more_than_4_route53_requests_and_they_average_2() -> None:
    sent = paced(200)
    # Any one second, as the world counts it (the requests of the second up to each one).
    assert max(sum(1 for s in sent if t - 1.0 < s <= t) for t in sent) == 4
    # Any longer span: the burst of 8, then 2 a second.
    for first, start in enumerate(sent):
        for last in range(first, len(sent)):
            assert last - first + 1 <= 8 + 2.0 * (sent[last] - start) + 1e-9
    assert (len(sent) - 8) / sent[-1] <= 2.0


def test_a_route53_request_counts_until_its_answer_comes() -> None:
    """Route 53 may receive a request any time before it answers (a busy machine, a slow
    network): one unanswered still counts, and one answered late counts from its answer."""
    clock = FakeClock()
    pace = pace_on(clock)
    tickets = [pace.take() for _ in range(4)]
    clock.now = 3.0
    pace.answered(tickets[0])
    pace.take()
    assert clock.now == pytest.approx(4.0 + Pace.MARGIN)


def test_a_quiet_while_refills_the_route53_burst() -> None:
    """After a wait of its own (a teardown, an ACM validation), a command's next requests
    go at 4 a second again."""
    clock = FakeClock()
    pace = pace_on(clock)
    for _ in range(20):
        pace.answered(pace.take())
    clock.now += 10.0
    clock.sleeps.clear()
    for _ in range(4):
        pace.answered(pace.take())
    assert clock.sleeps == []


def test_a_command_counts_the_last_second_of_the_command_before(own_tail: Path) -> None:
    """Commands run back to back (a no-change run, then a rollback) share Route 53's second:
    the second command waits for the first one's last four answers to age out."""
    first = FakeClock()
    before = pace_on(first, own_tail, wall=1000.0)
    for _ in range(4):
        before.answered(before.take())
    clock = FakeClock()
    after = pace_on(clock, own_tail, wall=1000.75)
    after.answered(after.take())
    assert clock.sleeps == [pytest.approx(0.25 + Pace.MARGIN)]
    # Answers more than a second old leave the next command's first second whole.
    clock = FakeClock()
    later = pace_on(clock, own_tail, wall=1002.0)
    for _ in range(4):
        later.answered(later.take())
    assert clock.sleeps == []


@pytest.mark.parametrize("kept", ["not JSON", '{"a": 1}', '["x", null]', ""])
def test_a_garbled_route53_tail_leaves_the_pace_whole(own_tail: Path, kept: str) -> None:
    own_tail.write_text(kept)
    clock = FakeClock()
    pace = pace_on(clock, own_tail, wall=1000.0)
    for _ in range(4):
        pace.answered(pace.take())
    assert clock.sleeps == []


def test_route53_clients_share_one_pace_of_4_a_second(
    moto_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Route 53 client of the process, at the default rate, takes its turns from one
    pace: four requests go at once, the fifth waits for the first answer's second to pass."""
    monkeypatch.delenv("ORCHESTRATOR_ROUTE53_RATE", raising=False)
    monkeypatch.setattr(aws, "_SHARED_PACES", {})
    with mock_aws():
        clients = [Aws("us-west-2").route53 for _ in range(2)]
        (shared,) = aws._SHARED_PACES.values()
        clock = FakeClock()  # stands still but for the pace's own waits
        monkeypatch.setattr(shared, "_clock", clock)
        monkeypatch.setattr(shared, "_sleep", clock.sleep)
        monkeypatch.setattr(shared, "_at", clock.now)
        for client in clients * 3:
            client.list_hosted_zones()
    assert clock.sleeps == [pytest.approx(1.0 + Pace.MARGIN)]


def test_waits_on_route53_poll_a_second_apart_at_first() -> None:
    clock = FakeClock()
    answers = iter([None, None, "INSYNC"])
    policy = waiting.WaitPolicy()
    first = waiting.ROUTE53_FIRST_INTERVAL
    found = waiting.wait_until(
        lambda: next(answers), what="x", policy=policy, first=first, clock=clock, sleep=clock.sleep
    )
    assert found == "INSYNC" and clock.sleeps == [1.0, 1.0]
    # then 5% of the time waited, as any wait
    assert waiting.pause_after(100.0, cap=15.0, first=first) == 5.0


# ---- an alias target Route 53 does not know yet ----------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The phases' waits on a fake clock, whose pauses also age the world's load balancers;
    Route 53 knows a load balancer 5 s after its creation, and changes are INSYNC in 2 s."""
    fake = FakeClock()
    real = waiting.wait_until

    def wait_until(probe: Any, **kwargs: Any) -> Any:
        return real(probe, **kwargs, clock=fake, sleep=fake.sleep)

    monkeypatch.setattr("orchestrator.phase.wait_until", wait_until)
    make_route53_strict(dns_delay=2.0, clock=fake, alias_delay=5.0, wall=fake.wall)
    yield fake
    make_route53_strict()


def alb_kit(kit: Kit, zone_id: str | None = None) -> str:
    """A new load balancer in moto as load_balancer found it; the zone for the record."""
    network = eks_network(kit.client("ec2"))
    balancer = kit.client("elbv2").create_load_balancer(
        Name="k8s-istiosys-istioing", Subnets=list(network.public.values())
    )["LoadBalancers"][0]
    zone = new_zone(kit, SUB, "sub", kit.owner.tags)
    kit.done("hosted_zone", zone_id=zone, name_servers=["ns-1.awsdns-01.org"])
    kit.done(
        "load_balancer",
        hostname=balancer["DNSName"],
        canonical_hosted_zone_id=zone_id or balancer["CanonicalHostedZoneId"],
    )
    return zone


def test_dns_record_waits_until_route53_knows_the_alb(tmp_path: Path, clock: FakeClock) -> None:
    with phase_kit(tmp_path, no_wait=False) as kit:
        zone = alb_kit(kit)
        (balancer,) = kit.client("elbv2").describe_load_balancers()["LoadBalancers"]
        clock.epoch = balancer["CreatedTime"].timestamp()  # the load balancer is 0 s old
        DnsRecordPhase().enter(kit.ctx("dns_record"))
        assert (HOST, "A") in rrsets(kit, zone)
    # Refused at 0 s, asked again a second apart until Route 53 knew it 5 s in; then the
    # change, polled a second apart too, INSYNC 2 s later.
    assert clock.sleeps == [1.0] * 5 + [1.0] * 2


def test_dns_record_stops_waiting_for_an_unknown_alias_target_at_the_deadline(
    tmp_path: Path, clock: FakeClock
) -> None:
    with phase_kit(tmp_path, no_wait=True) as kit:
        zone = alb_kit(kit)
        with pytest.raises(StillWaiting) as stopped:
            DnsRecordPhase().enter(kit.ctx("dns_record"))
        assert (HOST, "A") not in rrsets(kit, zone)
    assert stopped.value.waiting_for.startswith("Route 53 to know the ALB k8s-istiosys-istioing")


def test_dns_record_fails_at_once_on_any_other_invalid_change_batch(
    tmp_path: Path, clock: FakeClock
) -> None:
    with phase_kit(tmp_path, no_wait=False) as kit:
        alb_kit(kit, zone_id="Z0WRONGZONE")
        clock.ahead += 60  # Route 53 knows the load balancer, but not in that zone
        with pytest.raises(AwsError) as refused:
            DnsRecordPhase().enter(kit.ctx("dns_record"))
    assert refused.value.code == "InvalidChangeBatch"
    assert "does not lie within the target zone" in refused.value.message
    assert clock.sleeps == []
