"""Who answers the API server's admission webhook calls in the sandbox: the pods behind
each webhook's Service, as the cluster would route the call.

A webhook's Service must exist, and select the pods of a Deployment that is available
(its ready pods are the Service's endpoints); otherwise the call fails as the API server
reports it: `service "..." not found`, `no endpoints available for service "..."`. The
only program in the sandbox that serves webhooks is the AWS Load Balancer Controller
(the Deployment the simulated one acts for): the pods of anything else refuse the
connection. The controller serves
with the certificate of the Secret its pods mount (`aws-load-balancer-tls`); the API
server verifies it against the webhook's caBundle and the Service's DNS name, as Go's TLS
does, and says `x509: ...` when it fails. The controller then allows the request: this
world plays no rule of its webhooks' own.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kube_api_emulator import ObjectStore, WebhookCallError
from orchestrator_sandbox.albcontroller import CONTROLLER_NAME, CONTROLLER_NAMESPACE
from orchestrator_sandbox.deployments import is_available

Obj = dict[str, Any]
UNKNOWN_AUTHORITY = (
    "tls: failed to verify certificate: x509: certificate signed by unknown authority"
)


class ControllerWebhooks:
    """A `WebhookCaller` for the emulator (see module doc)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __call__(self, webhook: Obj, request: Obj) -> Obj:
        config = webhook.get("clientConfig") or {}
        reference = config.get("service")
        if not reference:
            raise WebhookCallError("connect: connection refused")  # no URL answers here
        name, namespace = reference.get("name", ""), reference.get("namespace", "")
        service = self.store.get("v1", "Service", name, namespace)
        if service is None:
            raise WebhookCallError(f'service "{name}" not found')
        pods = self._serving(service)
        if pods is None:
            raise WebhookCallError(f'no endpoints available for service "{name}"')
        if not _runs_controller(pods):
            raise WebhookCallError("connect: connection refused")
        problem = self._tls_problem(pods, config.get("caBundle") or "", f"{name}.{namespace}.svc")
        if problem:
            raise WebhookCallError(f"tls: failed to verify certificate: x509: {problem}")
        return {"uid": request.get("uid"), "allowed": True}

    def _serving(self, service: Obj) -> Obj | None:
        """The available Deployment whose pods the Service selects, if any."""
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            return None  # a Service without a selector has only the endpoints made by hand
        namespace = service["metadata"].get("namespace")
        for deployment in self.store.list("apps/v1", "Deployment", namespace):
            template = (deployment.get("spec") or {}).get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            if is_available(deployment) and all(labels.get(k) == v for k, v in selector.items()):
                return deployment
        return None

    def _tls_problem(self, deployment: Obj, ca_bundle: str, host: str) -> str | None:
        """Why the API server would refuse the certificate the pods serve, or None."""
        cert = self._serving_certificate(deployment)
        if cert is None:
            return "certificate signed by unknown authority"
        try:
            authorities = x509.load_pem_x509_certificates(base64.b64decode(ca_bundle))
        except (ValueError, binascii.Error):
            authorities = []  # no caBundle: the system's roots, which never signed it
        if not any(_signed_by(cert, ca) for ca in authorities):
            return "certificate signed by unknown authority"
        names = _dns_names(cert)
        if host not in names:
            return f"certificate is valid for {', '.join(names)}, not {host}"
        return None

    def _serving_certificate(self, deployment: Obj) -> x509.Certificate | None:
        """The `tls.crt` of the Secret the pods mount (the controller's --webhook-cert-dir)."""
        namespace = deployment["metadata"].get("namespace")
        spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        for volume in spec.get("volumes") or []:
            secret_name = (volume.get("secret") or {}).get("secretName")
            secret = self.store.get("v1", "Secret", secret_name, namespace) if secret_name else None
            data = (secret or {}).get("data") or {}
            if "tls.crt" in data:
                try:
                    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
                except (ValueError, binascii.Error):
                    return None
        return None


def _runs_controller(deployment: Obj) -> bool:
    """Whether these are the controller's pods (those the simulated controller acts for)."""
    meta = deployment["metadata"]
    return (meta.get("namespace"), meta["name"]) == (CONTROLLER_NAMESPACE, CONTROLLER_NAME)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in names.get_values_for_type(x509.DNSName)]
