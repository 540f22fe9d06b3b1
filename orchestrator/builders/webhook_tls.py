"""Serving certificates for the AWS Load Balancer Controller's admission webhook.

The API server calls the webhook over HTTPS and trusts it through the caBundle of the
webhook configurations, so the controller needs a certificate for its Service's DNS
names and the API server needs the CA that signed it. A private CA made here avoids a
dependency on cert-manager. Pure: the PEMs are returned, never written anywhere.

`serving_problem` judges a certificate as the API server would before calling the
webhook with it: signed by the caBundle's CA, in date, for the Service's DNS name.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from orchestrator import pki

# Tolerates clocks on the nodes and the API server running a little behind ours.
CLOCK_SKEW = datetime.timedelta(hours=1)
# A certificate this close to its end is replaced at the next install rather than kept:
# the controller never renews it, and once it lapses every Ingress create fails.
RENEW_BEFORE = datetime.timedelta(days=30)
SERVICE = "aws-load-balancer-webhook-service"
NAMESPACE = "kube-system"


def webhook_certificates(
    service: str = SERVICE,
    namespace: str = NAMESPACE,
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


def serving_problem(
    ca_pem: str,
    cert_pem: str,
    key_pem: str | None = None,
    *,
    host: str = f"{SERVICE}.{NAMESPACE}.svc",
    now: datetime.datetime | None = None,
) -> str | None:
    """Why the API server, trusting `ca_pem` (a webhook configuration's caBundle), would
    refuse `cert_pem` when it calls `host` (or it would within RENEW_BEFORE), worded to
    follow "the certificate"; None if it would accept it. With `key_pem`, the key the
    controller serves it with must be its own."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return "cannot be read (not a PEM certificate and CA)"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "is not signed by the CA the webhooks trust"
    moment = now or datetime.datetime.now(datetime.UTC)
    for what, checked in (("", cert), (" (its CA)", ca)):
        if checked.not_valid_before_utc > moment + CLOCK_SKEW:
            return f"is not valid before {checked.not_valid_before_utc:%Y-%m-%d}{what}"
        end = checked.not_valid_after_utc
        if end <= moment:
            return f"expired on {end:%Y-%m-%d}{what}"
        if end <= moment + RENEW_BEFORE:
            return f"expires on {end:%Y-%m-%d}{what}, within {RENEW_BEFORE.days} days"
    names = _dns_names(cert)
    if host not in names:
        return f"is for {', '.join(names) or 'no DNS name'}, not {host}"
    if key_pem is not None and not _same_key(cert, key_pem):
        return "does not match the private key stored with it"
    return None


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []  # Go's TLS, the API server's, ignores the common name
    return [str(n) for n in names.get_values_for_type(x509.DNSName)]


def _same_key(cert: x509.Certificate, key_pem: str) -> bool:
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return False
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*der) == cert.public_key().public_bytes(*der))
