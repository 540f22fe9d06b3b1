"""Polling intervals and deadlines, on a fake clock (no real sleeping)."""

from __future__ import annotations

import pytest

from orchestrator.errors import StillWaiting
from orchestrator.waiting import WaitPolicy, pause_after, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pauses_start_short_grow_with_the_wait_and_are_capped() -> None:
    waited = [0.0, 1.0, 10.0, 60.0, 180.0, 3600.0]
    values = [pause_after(w, cap=15.0) for w in waited]
    assert values[0] == values[1] == 0.25
    assert values == sorted(values)
    # Never more than 5% of the wait so far after what it waits for (past the first pauses).
    assert all(v <= max(0.25, 0.05 * w) for v, w in zip(values, waited, strict=True))
    assert values[-1] == 15.0


def test_a_long_wait_polls_a_few_hundred_times_an_hour_not_thousands() -> None:
    clock = Clock()
    with pytest.raises(StillWaiting):
        wait_until(
            lambda: None, what="x", policy=WaitPolicy(), limit=3600, clock=clock, sleep=clock.sleep
        )
    assert 200 < len(clock.sleeps) < 400


def test_the_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_POLL_MAX_INTERVAL", "3")
    assert pause_after(3600.0) == 3.0


def test_wait_returns_the_first_answer() -> None:
    clock = Clock()
    answers = iter([None, None, "ready"])
    assert (
        wait_until(
            lambda: next(answers), what="x", policy=WaitPolicy(), clock=clock, sleep=clock.sleep
        )
        == "ready"
    )
    assert clock.sleeps == [0.25, 0.25]


def test_no_wait_checks_once() -> None:
    clock = Clock()
    calls = []
    with pytest.raises(StillWaiting) as stop:
        wait_until(
            lambda: calls.append(1),
            what="the moon",
            policy=WaitPolicy(no_wait=True),
            clock=clock,
            sleep=clock.sleep,
        )
    assert calls == [1] and clock.sleeps == []
    assert stop.value.waiting_for == "the moon"


def test_the_deadline_and_the_limit_stop_the_wait() -> None:
    clock = Clock()
    with pytest.raises(StillWaiting):
        wait_until(
            lambda: None, what="x", policy=WaitPolicy(deadline=10.0), clock=clock, sleep=clock.sleep
        )
    assert clock.now == pytest.approx(10.0)
    clock = Clock()
    with pytest.raises(StillWaiting):
        wait_until(
            lambda: None, what="x", policy=WaitPolicy(), limit=30, clock=clock, sleep=clock.sleep
        )
    assert clock.now == pytest.approx(30.0)
