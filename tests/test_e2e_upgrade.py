"""End to end: a controller installed at the previous bundled release is upgraded through
plan and run. `plan --detailed-exitcode` names the upgrade and exits 2; `run` upgrades the
controller in place (the Deployment runs the new image, the webhooks answer: the world
calls them only while the controller's pods run and serve the certificate they trust); a
second plan exits 0.

The phases after the controller play no part in it: the run stops there (`--until`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from harness import World, kube_client, kube_get

from orchestrator.builders.controller_manifests import CONTROLLER_NAME, CONTROLLER_NAMESPACE

OLD, NEW = "v3.4.3", "v3.5.0"


def config_at(world: World, directory: Path, version: str) -> str:
    """The world's config, asking for controller `version`."""
    settings = yaml.safe_load(world.config.read_text())
    kubeflow = settings.setdefault("kubeflow", None) or {}
    alb = kubeflow.setdefault("alb", None) or {}
    alb["controller"] = {**(alb.get("controller") or {}), "version": version}
    kubeflow["alb"] = alb
    settings["kubeflow"] = kubeflow
    path = directory / f"config-{version}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def image(world: World) -> str:
    found = kube_get(
        kube_client(world), "apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE
    )
    assert found is not None
    return str(found["spec"]["template"]["spec"]["containers"][0]["image"])


def webhook_answers(world: World) -> None:
    """An Ingress of class alb, created as a dry run: the API server calls the controller's
    validating webhook for it, and refuses it if no pod answers."""
    ingresses = kube_client(world).resources.get(api_version="networking.k8s.io/v1", kind="Ingress")
    probe = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "webhook-probe", "namespace": "default"},
        "spec": {
            "ingressClassName": "alb",
            "defaultBackend": {"service": {"name": "x", "port": {"number": 80}}},
        },
    }
    ingresses.create(body=copy.deepcopy(probe), namespace="default", dry_run="All")


@pytest.mark.complete  # a world and five commands: CI runs it (`pytest --complete`)
def test_plan_names_the_upgrade_run_makes_it_and_plan_is_then_clean(
    world: World, tmp_path: Path
) -> None:
    old, new = config_at(world, tmp_path, OLD), config_at(world, tmp_path, NEW)

    def cli(config: str, *args: str) -> tuple[int, str]:
        done = world.cli("--config", config, *args, "--until", "controller", cwd=tmp_path)
        return done.returncode, done.stdout + done.stderr

    code, said = cli(old, "run")
    assert code == 0, said
    assert image(world).endswith(f":{OLD}")

    code, said = cli(new, "plan", "--detailed-exitcode")
    assert code == 2, said
    assert f"it runs {OLD}, the config asks for {NEW}" in said
    assert f"the AWS Load Balancer Controller {OLD} → {NEW}" in said
    # Upstream's policy is the same for both releases: nothing to change in IAM (a policy
    # that differs is planned as a new default version: test_phase_controller_iam.py).
    assert "IAM policy" not in said

    code, said = cli(new, "run")
    assert code == 0, said
    assert image(world).endswith(f":{NEW}")
    webhook_answers(world)

    code, said = cli(new, "plan", "--detailed-exitcode")
    assert code == 0, said
