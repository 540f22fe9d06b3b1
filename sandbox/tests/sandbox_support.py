"""What the sandbox world's own tests share: a world started in a directory and seen through
its public APIs, waiting on a condition, and the kubectl marker. The product's tests build on
it (tests/harness.py): they depend on the world, never the reverse.

A world starts through `python -m orchestrator sandbox up`, the way users and the product's
tests start it (the sandbox's command line is the orchestrator's `sandbox` command): that
is the one thing of the product these tests need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

import boto3
import pytest
from botocore.config import Config

from orchestrator_sandbox import options, setupscript, world
from orchestrator_sandbox.setupscript import SetupScriptDeployment

REGION = "us-west-2"

# kubectl is part of what the tests prove works; CI installs it (.ci/run), so there a missing
# kubectl fails the tests instead of skipping them.
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and os.environ.get("CI") != "true",
    reason="kubectl is not installed",
)


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 60,
    every: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `condition` every `every` seconds until it is truthy; fail the test at the
    deadline. An API with a request rate (Route 53's five a second) is polled slower."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# The tests read the world as any other tool in the account would: within Route 53's
# 5 requests a second (which the world plays), slowing down when throttled (botocore's
# adaptive mode) and retrying long enough that a burst of reads between two commands
# never fails a test.
HARNESS_CONFIG = Config(
    user_agent_extra="test-harness", retries={"mode": "adaptive", "max_attempts": 20}
)


class World:
    """A running sandbox world in `directory`. The product's tests see it the same way, with
    more on top (tests/harness.py)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        exports, unsets = world.read_env(directory)
        env = {k: v for k, v in os.environ.items() if k not in unsets}
        env.update(exports)
        self.env = env
        self.info = json.loads((directory / "world.json").read_text())
        self._clients: dict[tuple[str, str], Any] = {}

    @classmethod
    def up(
        cls,
        directory: Path,
        acm_delay: float = 1.0,
        alb_delay: float = 1.0,
        second_team: bool = False,
        leftovers: bool = False,
        adopted_controller: str | None = None,
        setup_script: bool = False,
        **settings: float,
    ) -> Self:
        """Start a world with short delays; `settings`: other options.SETTINGS by name.

        Tokens live 380 s, so the official client refreshes them 20 s after each, as it does
        an EKS token 9 minutes in: long runs exercise that."""
        values = {
            "acm_delay": acm_delay,
            "alb_delay": alb_delay,
            "dns_delay": 0.3,
            "target_delay": 0.5,
            "drain_delay": 0.5,
            "crd_delay": 0.3,
            "token_ttl": 380.0,
            **settings,
        }
        arguments = options.as_arguments(
            values,
            second_team,
            leftovers=leftovers,
            adopted_controller=adopted_controller,
            setup_script=setup_script,
        )
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "sandbox", "up", "--dir", str(directory)]
            + arguments,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return cls(directory)

    def down(self) -> None:
        world.down(self.directory)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for the world, made once (making one loads the service's model)."""
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service,
                region_name=region,
                endpoint_url=self.info["endpoints"]["aws"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=HARNESS_CONFIG,
            )
        return self._clients[key]

    @property
    def root_zone_id(self) -> str:
        return self.info["seeded"]["root_zone_id"]

    @property
    def setup_script(self) -> SetupScriptDeployment:
        """What the old setup script made in a world started with `setup_script=True`."""
        return setupscript.read(self.info)


W = TypeVar("W", bound=World)


def fresh_world(kind: type[W], tmp_path: Path) -> Iterator[W]:
    """The `world` fixture's body, for this suite's World and the product's: a fresh world
    with short ACM and ALB delays, stopped after the test."""
    with kind.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3) as w:
        yield w


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


def binding_crd() -> dict[str, Any]:
    """The TargetGroupBinding CRD the controller's manifests ship (its gist): a controller
    installed by hand (helm, kubectl) comes with it."""
    version = {
        "name": "v1beta1",
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    names = {"kind": "TargetGroupBinding", "plural": "targetgroupbindings"}
    spec = {"group": "elbv2.k8s.aws", "scope": "Namespaced", "names": names, "versions": [version]}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "targetgroupbindings.elbv2.k8s.aws"},
        "spec": spec,
    }
