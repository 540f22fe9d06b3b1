"""Fixtures of the sandbox world's own tests (the suite's settings are the checkout's root
conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import World


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment for boto3 against moto in this process: fake credentials, its
    region (returned), and no endpoint or profile of the machine's own."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return "us-east-1"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh sandbox world with short ACM and ALB delays."""
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3) as w:
        yield w
