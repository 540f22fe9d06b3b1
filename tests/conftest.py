from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh sandbox world with short ACM and ALB delays."""
    w = World.up(tmp_path / "world", acm_delay=1.0, alb_delay=1.0)
    try:
        yield w
    finally:
        w.down()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d
