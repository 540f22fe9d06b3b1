"""controller, in process: what an earlier install of the load balancer controller left in
kube-system (the sandbox's `--leftovers` seed, kubeseed.seed_leftovers) is repaired or
refused, never used as it is; plan says what run does with it.

A ServiceAccount naming another role that nothing runs as is taken over (annotated with
the controller role, labelled ours); one a controller not ours runs as is refused. The
webhook Secret and webhook configurations left behind are replaced together, so the
certificate the controller serves is always signed by the CA the webhooks trust.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import World, kube_client, kube_get, read_state
from phasekit import ACCOUNT, Kit, phase_kit
from test_phase_controller import CONTROLLER, controller_kit, foreign_controller, install, labels

from orchestrator import pki
from orchestrator.builders.webhook_tls import serving_problem, webhook_certificates
from orchestrator.errors import PhaseError
from orchestrator.ownership import DEPLOYMENT_LABEL
from orchestrator.planning import CREATE, UPDATE, USE
from orchestrator.states.controller import ControllerPhase
from orchestrator_sandbox.kubeseed import old_webhook_certificates, seed_leftovers

OLD_ROLE = f"arn:aws:iam::{ACCOUNT}:role/AmazonEKSLoadBalancerControllerRole"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/alb-controller-x"
SECRET = ("aws-load-balancer-tls", "kube-system")
WEBHOOKS = (
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
)
WEBHOOK_CONFIG = "aws-load-balancer-webhook"


def annotation(obj: dict[str, Any] | None) -> str | None:
    return (
        ((obj or {}).get("metadata") or {}).get("annotations", {}).get("eks.amazonaws.com/role-arn")
    )


def secret_pems(kit: Kit) -> dict[str, str]:
    secret = kit.store.get("v1", "Secret", *SECRET)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def trust_problems(kit: Kit) -> list[str]:
    """Each webhook whose caBundle does not trust the certificate in the Secret, and why."""
    served = secret_pems(kit)["tls.crt"]
    problems = []
    for api_version, kind in WEBHOOKS:
        for webhook in kit.store.get(api_version, kind, WEBHOOK_CONFIG)["webhooks"]:
            ca = base64.b64decode(webhook["clientConfig"]["caBundle"]).decode()
            problem = serving_problem(ca, served)
            if problem:
                problems.append(f"{webhook['name']}: {problem}")
    return problems


def runs_as_account(name: str) -> dict[str, Any]:
    """A controller not ours, under another Deployment name, running as the ServiceAccount."""
    deployment = foreign_controller("kube-eks-cluster")
    deployment["metadata"]["name"] = name
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = CONTROLLER[0]
    return deployment


@contextlib.contextmanager
def leftovers_kit(tmp_path: Path) -> Iterator[Kit]:
    """The controller phase's kit, with what an earlier install left in kube-system."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit, ROLE)
        seed_leftovers(kit.store, OLD_ROLE)
        yield kit


def shown(rid: str) -> str:
    *_, kind, namespace, name = rid.split("/")
    return f"{kind} {'/'.join(filter(None, (namespace, name)))}"


# ---- the ServiceAccount ----------------------------------------------------------------------


def test_a_leftover_service_account_naming_another_role_is_taken_over_and_said(
    tmp_path: Path,
) -> None:
    with leftovers_kit(tmp_path) as kit:
        ctx = install(kit)
        account = kit.store.get("v1", "ServiceAccount", *CONTROLLER)
        assert annotation(account) == ROLE
        assert labels(account).get(DEPLOYMENT_LABEL) == kit.owner.deployment
        said = kit.said()
        assert "took over ServiceAccount kube-system/aws-load-balancer-controller" in said
        assert OLD_ROLE in said and "nothing runs as it" in said
        assert ControllerPhase().verify(ctx) is None, "verify no longer fails on every run"
        rid = "v1/ServiceAccount/kube-system/aws-load-balancer-controller"
        assert [r.created for r in ctx.record.resources if r.id == rid] == [True]
        ControllerPhase().rollback(ctx)
        assert kit.store.get("v1", "ServiceAccount", *CONTROLLER) is None


def test_a_service_account_a_controller_not_ours_runs_as_is_refused_before_any_write(
    tmp_path: Path,
) -> None:
    with leftovers_kit(tmp_path) as kit:
        kit.store.create(runs_as_account("alb-ingress"))
        planned = kit.engine.plan_phase("controller")
        with kit.watching() as entering, pytest.raises(PhaseError) as refused:
            ControllerPhase().enter(kit.ctx("controller"))
        message = refused.value.message
        assert "ServiceAccount kube-system/aws-load-balancer-controller" in message
        assert OLD_ROLE in message and "Deployment kube-system/alb-ingress" in message
        assert "remove that controller" in refused.value.hint
        assert entering.kube_writes == []
        assert planned.status == "stop" and planned.problem == message
        assert annotation(kit.store.get("v1", "ServiceAccount", *CONTROLLER)) == OLD_ROLE


# ---- the webhook Secret and configurations -------------------------------------------------------


def test_a_leftover_webhook_secret_and_configuration_are_replaced_to_agree(
    tmp_path: Path,
) -> None:
    with leftovers_kit(tmp_path) as kit:
        old = secret_pems(kit)["tls.crt"]
        ctx = install(kit)
        assert secret_pems(kit)["tls.crt"] != old
        assert trust_problems(kit) == []
        said = kit.said()
        assert "took over Secret kube-system/aws-load-balancer-tls" in said
        assert "took over ValidatingWebhookConfiguration aws-load-balancer-webhook" in said
        assert labels(kit.store.get("v1", "Secret", *SECRET)).get(DEPLOYMENT_LABEL)
        assert ControllerPhase().verify(ctx) is None


def expiring_certificates(days: int) -> tuple[str, str, str]:
    """A CA and serving certificate for the webhook Service that end in `days` days."""
    now = datetime.datetime.now(datetime.UTC)
    end = now + datetime.timedelta(days=days)
    ca_key = pki.new_key()
    ca = pki.ca_certificate(ca_key, pki.common_name("ca"), now, end)
    key = pki.new_key()
    names = ["aws-load-balancer-webhook-service.kube-system.svc"]
    cert = pki.serving_certificate(key, names, ca, ca_key, now, end)
    return pki.cert_pem(ca), pki.cert_pem(cert), pki.key_pem(key)


@pytest.mark.parametrize("drift", ["caBundle of another CA", "certificate expiring"])
def test_webhooks_and_secret_that_disagree_fail_verify_and_enter_renews_both(
    tmp_path: Path, drift: str
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit, ROLE)
        ctx = install(kit)
        if drift == "caBundle of another CA":
            other_ca = webhook_certificates()[0]
            validating = kit.store.get(*WEBHOOKS[1], WEBHOOK_CONFIG)
            for webhook in validating["webhooks"]:
                webhook["clientConfig"]["caBundle"] = base64.b64encode(other_ca.encode()).decode()
            kit.store.apply(validating, "someone-else", force=True)
            reason = "is not signed by the CA the webhooks trust"
        else:
            secret = kit.store.get("v1", "Secret", *SECRET)
            pems = expiring_certificates(days=10)
            secret["data"] = {
                k: base64.b64encode(v.encode()).decode()
                for k, v in zip(("ca.crt", "tls.crt", "tls.key"), pems, strict=True)
            }
            kit.store.apply(secret, "someone-else", force=True)
            reason = "within 30 days"
        problem = ControllerPhase().verify(ctx)
        assert problem is not None and reason in problem
        assert "Secret kube-system/aws-load-balancer-tls" in problem
        ControllerPhase().enter(ctx)
        assert trust_problems(kit) == []
        assert ControllerPhase().verify(ctx) is None
        if drift == "certificate expiring":
            assert "a new webhook certificate" in kit.said()


# ---- plan says what run does -------------------------------------------------------------------


def test_plan_names_each_leftover_taken_over_as_run_then_does(tmp_path: Path) -> None:
    with leftovers_kit(tmp_path) as kit:
        with kit.watching() as planning:
            planned = kit.engine.plan_phase("controller")
        assert planning.kube_writes == []
        changes = {c.what: c for c in planned.changes}
        for what in (
            "ServiceAccount kube-system/aws-load-balancer-controller",
            "Secret kube-system/aws-load-balancer-tls",
            "ValidatingWebhookConfiguration aws-load-balancer-webhook",
        ):
            assert changes[what].action == UPDATE, what
            assert changes[what].why.startswith("take over: left by an earlier install"), what
        assert OLD_ROLE in changes["ServiceAccount kube-system/aws-load-balancer-controller"].why
        assert changes["MutatingWebhookConfiguration aws-load-balancer-webhook"].action == CREATE

        ctx = install(kit)
        written = {shown(r.id) for r in ctx.record.resources if r.created}
        used = {shown(r.id) for r in ctx.record.resources if not r.created}
        assert written == {w for w, c in changes.items() if c.action in (CREATE, UPDATE)}
        assert used == {w for w, c in changes.items() if c.action == USE}


def test_the_sandbox_leftovers_are_self_consistent_but_of_another_ca() -> None:
    """The seed is what an earlier install really leaves: its own certificate is sound for
    its own CA, and no CA a new install makes trusts it."""
    ca, cert, key = old_webhook_certificates()
    assert serving_problem(ca, cert, key) is None
    assert serving_problem(webhook_certificates()[0], cert) is not None


def test_an_adopted_controller_is_still_adopted_with_leftovers_around(tmp_path: Path) -> None:
    """A controller Deployment not ours is adopted: its ServiceAccount and Secret are its
    own, never taken over."""
    with leftovers_kit(tmp_path) as kit:
        kit.store.create(foreign_controller("kube-eks-cluster"))
        kit.make_available(*CONTROLLER)
        with kit.watching() as entering:
            ControllerPhase().enter(kit.ctx("controller"))
        assert entering.kube_writes == []
        assert annotation(kit.store.get("v1", "ServiceAccount", *CONTROLLER)) == OLD_ROLE


# ---- end to end: `sandbox up --leftovers` ----------------------------------------------


@pytest.mark.complete
def test_a_run_among_the_sandbox_leftovers_takes_them_over_and_ends_0(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, leftovers=True) as world:
        old_role = world.info["seeded"]["leftover_role_arn"]
        config = str(world.config)
        planned = world.cli("--config", config, "plan", cwd=workdir)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert "update ServiceAccount kube-system/aws-load-balancer-controller (take over" in (
            planned.stdout
        )
        done = world.cli("--config", config, "run", "--max-wait", "120", cwd=workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "took over ServiceAccount kube-system/aws-load-balancer-controller" in done.stdout
        assert old_role in done.stdout
        assert "took over Secret kube-system/aws-load-balancer-tls" in done.stdout
        phases = read_state(workdir / "state.json")["phases"]
        role = next(p for p in phases if p["name"] == "controller_iam")["outputs"]["role_arn"]
        client = kube_client(world)
        account = kube_get(client, "v1", "ServiceAccount", *CONTROLLER)
        assert annotation(account) == role
        secret = kube_get(client, "v1", "Secret", *SECRET) or {}
        served = base64.b64decode(secret["data"]["tls.crt"]).decode()
        for api_version, kind in WEBHOOKS:
            configuration = kube_get(client, api_version, kind, WEBHOOK_CONFIG) or {}
            for webhook in configuration["webhooks"]:
                ca = base64.b64decode(webhook["clientConfig"]["caBundle"]).decode()
                assert serving_problem(ca, served) is None, webhook["name"]
