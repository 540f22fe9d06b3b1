"""Serving certificates for the AWS Load Balancer Controller's admission webhook.

The API server calls the webhook over HTTPS and trusts it through the caBundle of the
webhook configurations, so the controller needs a certificate for its Service's DNS
names and the API server needs the CA that signed it. A private CA made here avoids a
dependency on cert-manager. Pure: the PEMs are returned, never written anywhere.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    ca_key = _new_key()
    ca = _ca_certificate(ca_key, f"{service}-ca", not_before, not_after)
    key = _new_key()
    names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
    cert = _serving_certificate(key, names, ca, ca_key, not_before, not_after)
    return _pem(ca), _pem(cert), _key_pem(key)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: generated in milliseconds and accepted by the API server's and Go's TLS.
    return ec.generate_private_key(ec.SECP256R1())


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # path_length=0: this CA signs the serving certificate and nothing else.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _serving_certificate(
    key: ec.EllipticCurvePrivateKey,
    dns_names: list[str],
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Go's TLS verifies the host name against the SANs only, never the common name.
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
