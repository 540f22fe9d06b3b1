"""End to end: a controller someone else installed with Helm, of a release older than our
Ingress needs (`sandbox up --adopted-controller v2.4.0`), stops `plan` and `run` at preflight
naming both releases and how to upgrade it, before any write to AWS or Kubernetes."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import World, kube_client, kube_get

from orchestrator.errors import ExitCode

CONTROLLER = ("aws-load-balancer-controller", "kube-system")
OLD = "v2.4.0"


@pytest.mark.complete
def test_an_adopted_controller_too_old_stops_plan_and_run_with_no_write(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "world", adopted_controller=OLD) as world:
        config = str(world.config)
        for command in ("plan", "run"):
            done = world.cli("--config", config, command, cwd=workdir)
            said = done.stdout + done.stderr
            assert done.returncode == ExitCode.PHASE_FAILED, said
            assert f"runs {OLD}" in said and "needs v2.13.0 or later" in said, said
        assert "--version 1.13.0" in said, said  # run says how to upgrade it
        assert world.writes() == [] and world.kube_writes() == []
        deployment = kube_get(kube_client(world), "apps/v1", "Deployment", *CONTROLLER) or {}
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == OLD
