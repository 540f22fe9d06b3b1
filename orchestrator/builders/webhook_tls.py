"""Serving certificates for the AWS Load Balancer Controller's admission webhook.

The API server calls the webhook over HTTPS and trusts it through the caBundle of the
webhook configurations, so the controller needs a certificate for its Service's DNS
names and the API server needs the CA that signed it. A private CA made here avoids a
dependency on cert-manager. Pure: the PEMs are returned, never written anywhere.
"""

from __future__ import annotations

import datetime

from orchestrator import pki

# Tolerates clocks on the nodes and the API server running a little behind ours.
CLOCK_SKEW = datetime.timedelta(hours=1)


def webhook_certificates(
    service: str = "aws-load-balancer-webhook-service",
    namespace: str = "kube-system",
    days: int = 3650,
) -> tuple[str, str, str]:
    """(ca_pem, cert_pem, key_pem): a fresh CA and a serving certificate it signed for
    `<service>.<namespace>.svc` and `<service>.<namespace>.svc.cluster.local`."""
    not_before = datetime.datetime.now(datetime.UTC) - CLOCK_SKEW
    not_after = not_before + CLOCK_SKEW + datetime.timedelta(days=days)
    ca_key = pki.new_key()
    ca = pki.ca_certificate(ca_key, pki.common_name(f"{service}-ca"), not_before, not_after)
    key = pki.new_key()
    names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
    cert = pki.serving_certificate(key, names, ca, ca_key, not_before, not_after)
    return pki.cert_pem(ca), pki.cert_pem(cert), pki.key_pem(key)
