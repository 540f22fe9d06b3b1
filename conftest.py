"""The whole suite's settings, for every test directory of the checkout (the product's tests/,
the sandbox's and the emulator's tests): how many workers, `--complete`, and the order.

Test modules import nothing from a conftest.py: each test directory may have one, all are
named `conftest`, and only the last one loaded answers to that name; what tests share by
import lives in a support module (harness.py, sandbox_support.py, emulator_support.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

# The product's tests stand on the world's: harness.py builds on sandbox_support.py, and a
# few product tests reuse a world test's set-up. Pytest puts a test directory on sys.path
# only when it collects it, so `pytest tests/test_x.py` alone would not find them. The
# reverse never holds: the world's tests import nothing of tests/ (test_sandbox_stands_alone).
sys.path.insert(0, str(Path(__file__).parent / "sandbox" / "tests"))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: three workers per CPU. Most tests wait on a sandbox world (a process of
    its own, playing AWS's latencies), so two per CPU left the CPUs idle; but each world
    also ticks while it waits (about 8% of a CPU each), and with three per CPU the CPUs
    are already busy: more workers would only add idle worlds."""
    return 3 * (os.cpu_count() or 1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--complete",
        action="store_true",
        help="also run the tests marked `complete` (the full crash sweep, packaging): CI",
    )


# The longest tests first, so that running side by side (pytest-xdist) they do not start
# last and leave one worker running alone at the end.
SLOW_FIRST = (
    "test_crash_sweep.py",
    "test_packaging.py",
    "test_not_ours.py",
    "test_e2e_nonroot.py",
    "test_e2e_full.py",
    "test_aws_faults.py",
    "test_e2e_ownership.py",
    "test_concurrency.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--complete"):
        skipped = [item for item in items if item.get_closest_marker("complete")]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [item for item in items if not item.get_closest_marker("complete")]

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)
    items[:] = spread(items, lambda item: item.path.name == SLOW_FIRST[0])


def spread(items: list[pytest.Item], slowest: Any) -> list[pytest.Item]:
    """The slowest tests one in every two places at the head: each worker starts with two
    tests (pytest-xdist), so each gets at most one of them and they run side by side."""
    heavy = [item for item in items if slowest(item)]
    rest = [item for item in items if not slowest(item)]
    head = [pair for item, other in zip(heavy, rest, strict=False) for pair in (item, other)]
    return head + heavy[len(rest) :] + rest[len(heavy) :]
