"""The controller's admission webhooks, in process.

The world: the API server emulator calls them on every client's write of an Ingress or
TargetGroupBinding, and the sandbox answers as the cluster would: only while the
controller's pods run behind the webhook Service, with the certificate its Secret holds,
which must chain to the configuration's caBundle. The product: a rollback that removes
the controller's finalizers by hand first makes sure the API server can admit that.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, Kit, phase_kit

from kube_api_emulator import KubeApiServer, ObjectStore
from orchestrator.builders.controller_manifests import controller_manifests
from orchestrator.builders.webhook_tls import webhook_certificates
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.states.controller import ControllerPhase
from orchestrator.states.ingress import IngressPhase
from orchestrator_sandbox.webhookserver import ControllerWebhooks

CONTROLLER = ("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")
INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
BINDING = ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding", "k8s-istio-tgb", "istio-system")
WEBHOOKS = [
    ("admissionregistration.k8s.io/v1", f"{kind}WebhookConfiguration", "aws-load-balancer-webhook")
    for kind in ("Mutating", "Validating")
]
CERT = f"arn:aws:acm:us-west-2:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/alb-controller-x"
UNANSWERED = (
    'failed calling webhook "vingress.elbv2.k8s.aws": failed to call webhook: Post '
    '"https://aws-load-balancer-webhook-service.kube-system.svc:443/validate-networking-v1-'
    'ingress?timeout=10s": '
)


# ---- the world --------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[KubeApiServer]:
    """An API server whose webhooks the sandbox answers, with the controller's manifests
    applied (its Deployment not yet available)."""
    store = ObjectStore(crd_establish_seconds=0, namespace_grace_seconds=0)
    store.webhook_caller = ControllerWebhooks(store)
    ca, cert, key = webhook_certificates()
    manifests = controller_manifests(
        cluster_name="kube-eks-cluster",
        region="us-west-2",
        vpc_id="vpc-1",
        role_arn=ROLE_ARN,
        labels={},
        webhook_ca_pem=ca,
        webhook_cert_pem=cert,
        webhook_key_pem=key,
    )
    for obj in sorted(manifests, key=lambda o: o["kind"] != "CustomResourceDefinition"):
        store.apply(obj, "installer")
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    with KubeApiServer(store=store) as server:
        yield server


def create_ingress(server: KubeApiServer, name: str) -> tuple[int, dict[str, Any]]:
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "istio-system"},
        "spec": {"ingressClassName": "alb"},
    }
    url = f"{server.url}/apis/networking.k8s.io/v1/namespaces/istio-system/ingresses"
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def make_available(store: ObjectStore) -> None:
    store.patch_status(*CONTROLLER[:3], CONTROLLER[3], {"availableReplicas": 1})


def test_the_controllers_webhooks_answer_only_while_its_pods_run(cluster: KubeApiServer) -> None:
    code, status = create_ingress(cluster, "early")
    assert (code, status["reason"]) == (500, "InternalError")
    assert status["message"] == (
        f"Internal error occurred: {UNANSWERED}no endpoints available for service "
        '"aws-load-balancer-webhook-service"'
    )
    make_available(cluster.store)
    assert create_ingress(cluster, "served")[0] == 201

    cluster.store.delete("v1", "Service", "aws-load-balancer-webhook-service", "kube-system")
    code, status = create_ingress(cluster, "no-service")
    assert code == 500
    assert status["message"].endswith(': service "aws-load-balancer-webhook-service" not found')


def test_a_serving_certificate_the_ca_bundle_did_not_sign_fails_every_call(
    cluster: KubeApiServer,
) -> None:
    make_available(cluster.store)
    _, cert, key = webhook_certificates()  # of another CA than the configurations trust
    secret = cluster.store.get("v1", "Secret", "aws-load-balancer-tls", "kube-system")
    assert secret is not None
    secret["data"].update(
        {
            "tls.crt": base64.b64encode(cert.encode()).decode(),
            "tls.key": base64.b64encode(key.encode()).decode(),
        }
    )
    cluster.store.apply(secret, "someone", force=True)
    code, status = create_ingress(cluster, "untrusted")
    assert code == 500
    assert status["message"] == (
        f"Internal error occurred: {UNANSWERED}tls: failed to verify certificate: x509: "
        "certificate signed by unknown authority"
    )


# ---- the product: a rollback's finalizers removed by hand ----------------------------------------


def with_our_controller(kit: Kit) -> Any:
    """The controller installed by this deployment, answering its webhooks; our Ingress,
    which the controller holds with its finalizer, and one of its TargetGroupBindings."""
    network = kit.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    kit.store.webhook_caller = ControllerWebhooks(kit.store)
    kit.done("preflight", vpc_id=network, account=ACCOUNT, partition="aws")
    kit.done("controller_iam", role_arn=ROLE_ARN)
    controller = kit.ctx("controller")
    with pytest.raises(StillWaiting):
        ControllerPhase().enter(controller)
    kit.make_available(*CONTROLLER[2:])
    ControllerPhase().enter(controller)
    kit.namespace("istio-system")
    kit.done("certificates_issued", issued=[CERT], certificate_arn=CERT)
    ctx = kit.ctx("ingress")
    IngressPhase().enter(ctx)  # admitted: the controller answers
    hold(kit)
    return ctx


def hold(kit: Kit) -> None:
    """What the controller does to our Ingress: its finalizer, and a TargetGroupBinding
    (with its own finalizer) for the stack."""
    kit.store.add_finalizer(*INGRESS[:3], INGRESS[3], "ingress.k8s.aws/resources")
    labels = {
        "ingress.k8s.aws/stack-namespace": "istio-system",
        "ingress.k8s.aws/stack-name": "istio-ingress",
    }
    kit.store.create(
        {
            "apiVersion": BINDING[0],
            "kind": BINDING[1],
            "metadata": {
                "name": BINDING[2],
                "namespace": BINDING[3],
                "labels": labels,
                "finalizers": ["elbv2.k8s.aws/resources"],
            },
            "spec": {"targetGroupARN": "arn:aws:elasticloadbalancing:tg", "serviceRef": {}},
        }
    )


def roll_back(ctx: Any) -> int:
    """Rollback passes until it is done (each pass one step of the teardown)."""
    for passes in range(1, 9):
        try:
            IngressPhase().rollback(ctx)
            return passes
        except StillWaiting:
            continue
    raise AssertionError("the teardown does not end")


def test_rollback_deletes_our_webhooks_before_removing_finalizers_for_a_controller_gone(
    tmp_path: Path,
) -> None:
    """A state rebuilt by `import` (the controller's install not yet checked by `run`):
    it cannot be installed again, so its teardown is done by hand; its webhooks, ours,
    with no pod to answer them, would make the API server refuse every finalizer removal."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx = with_our_controller(kit)
        kit.store.delete(*CONTROLLER)
        kit.ctx("controller").outputs.pop("mode")
        roll_back(ctx)
        assert kit.store.get(*INGRESS) is None
        assert kit.store.get(*BINDING) is None
        assert [kit.store.get(*w) for w in WEBHOOKS] == [None, None]
        assert "deleting ValidatingWebhookConfiguration aws-load-balancer-webhook" in kit.said()


def test_rollback_stops_at_webhooks_not_ours_that_no_controller_answers(tmp_path: Path) -> None:
    """Another team's controller (adopted) is gone but its webhooks remain: nothing of
    ours is updated, and the message names the webhook and what to do."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx = with_our_controller(kit)
        for api_version, kind, name in WEBHOOKS:  # theirs: no labels of ours
            live = kit.store.get(api_version, kind, name)
            assert live is not None
            kit.store.delete(api_version, kind, name)
            kit.store.create(live | {"metadata": {"name": name}})
        kit.store.delete(*CONTROLLER)
        kit.ctx("controller").outputs["mode"] = "adopted"
        with pytest.raises(PhaseError) as stopped:
            roll_back(ctx)
        assert 'webhook "vingress.elbv2.k8s.aws" of ValidatingWebhookConfiguration' in str(
            stopped.value
        )
        assert "not this deployment's" in str(stopped.value)
        assert "bring that controller back" in stopped.value.hint
        assert "`orchestrator resume`" in stopped.value.hint
        ingress = kit.store.get(*INGRESS)
        assert ingress is not None and ingress["metadata"]["finalizers"]
        assert all(kit.store.get(*w) is not None for w in WEBHOOKS)


def test_rollback_brings_our_controller_back_to_answer_its_webhooks_for_an_orphan(
    tmp_path: Path,
) -> None:
    """Our Ingress is gone but its TargetGroupBinding, held by the controller's finalizer,
    outlived it, and our controller is gone: it is installed again to answer its webhooks
    (its configurations stay, for the controller phase's own rollback)."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx = with_our_controller(kit)
        kit.store.delete(*CONTROLLER)
        kit.store.delete(*INGRESS)
        kit.store.remove_finalizer(*INGRESS[:3], INGRESS[3], "ingress.k8s.aws/resources")
        with pytest.raises(StillWaiting) as waiting:
            IngressPhase().rollback(ctx)
        assert "aws-load-balancer-controller to be available" in waiting.value.waiting_for
        kit.make_available(*CONTROLLER[2:])
        roll_back(ctx)
        assert kit.store.get(*BINDING) is None
        assert all(kit.store.get(*w) is not None for w in WEBHOOKS)
        assert "installing it again, to answer its admission webhooks" in kit.said()
