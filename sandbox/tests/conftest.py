"""Fixtures of the sandbox world's own tests (the suite's settings are the checkout's root
conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import World, fresh_world
from sandbox_support import moto_env as moto_env  # a fixture: the environment for moto


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh sandbox world with short ACM and ALB delays."""
    yield from fresh_world(World, tmp_path)
