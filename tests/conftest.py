from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import World

# kubectl is part of what the tests prove works; CI installs it (.ci/run), so there a missing
# kubectl fails the tests instead of skipping them.
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and os.environ.get("CI") != "true",
    reason="kubectl is not installed",
)


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Every AWS or Kubernetes request is refused and recorded (in process); a kubeconfig
    and credentials exist, so that only the input under test can be wrong."""
    made: list[str] = []

    def refuse(name: str) -> Any:
        def request(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            raise AssertionError(f"a {name} request was made")

        return request

    monkeypatch.setattr("botocore.endpoint.Endpoint.make_request", refuse("AWS"))
    monkeypatch.setattr("kubernetes.client.rest.RESTClientObject.request", refuse("Kubernetes"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "eks", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "eks", "user": {"token": "t"}}],
                "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
                "current-context": "eks",
            }
        )
    )
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "ORCHESTRATOR_FAILPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    yield made


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


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


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
