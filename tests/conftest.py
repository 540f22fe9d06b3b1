from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import World
from sandbox_support import fresh_world
from sandbox_support import moto_env as moto_env  # a fixture: the environment for moto


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
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh sandbox world with short ACM and ALB delays."""
    yield from fresh_world(World, tmp_path)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d
