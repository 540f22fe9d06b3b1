"""Polling intervals and deadlines, on a fake clock (no real sleeping)."""

from __future__ import annotations

import pytest

from orchestrator.errors import StillWaiting
from orchestrator.waiting import WaitPolicy, intervals, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_intervals_start_short_and_are_capped() -> None:
    pause = intervals(first=1.0, cap=15.0)
    values = [pause() for _ in range(20)]
    assert values[0] <= 2.0
    assert values == sorted(values)
    assert max(values) == 15.0


def test_the_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_POLL_MAX_INTERVAL", "3")
    pause = intervals()
    assert max(pause() for _ in range(20)) == 3.0


def test_wait_returns_the_first_answer() -> None:
    clock = Clock()
    answers = iter([None, None, "ready"])
    assert (
        wait_until(
            lambda: next(answers), what="x", policy=WaitPolicy(), clock=clock, sleep=clock.sleep
        )
        == "ready"
    )
    assert len(clock.sleeps) == 2 and clock.sleeps[0] <= 2.0


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
