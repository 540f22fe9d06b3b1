"""TLS for an emulated cluster's API server: a CA of the cluster's own, as each EKS cluster
has, and a serving certificate for the loopback address the emulator listens on.

Clients verify the server as they would verify EKS: the kubeconfig carries the cluster's CA
(`certificate-authority-data`) and the certificate names the address they connect to, as
an IP SAN (Go and Python check IP addresses against those only), besides the names the
API server has inside the cluster (`kubernetes.default.svc`, ...).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# EC P-256 keys: generated in milliseconds, accepted by Go's and Python's TLS.
Key = ec.EllipticCurvePrivateKey

IN_CLUSTER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class ClusterTls:
    """One cluster's CA and its API server's serving certificate and key, as PEM."""

    ca_pem: str
    cert_pem: str
    key_pem: str

    @classmethod
    def issue(
        cls, addresses: Sequence[str] = ("127.0.0.1",), names: Sequence[str] = IN_CLUSTER_NAMES
    ) -> ClusterTls:
        """A new CA (CN `kubernetes`, as EKS names it) and a serving certificate it signs
        for `addresses` (IP SANs) and `names` (DNS SANs)."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = ca_certificate(ca_key, now)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = serving_certificate(key, addresses, names, ca, ca_key, now)
        return cls(_cert_pem(ca), _cert_pem(cert), _key_pem(key))

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the serving certificate (TLS 1.2 or later)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only; the key lives on disk (0600) just for the call.
        with tempfile.TemporaryDirectory(prefix="kubeapi-tls-") as scratch:
            path = Path(scratch) / "serving.pem"
            path.touch(mode=0o600)
            path.write_text(self.key_pem + self.cert_pem)
            context.load_cert_chain(path)
        return context


def ca_certificate(key: Key, now: datetime.datetime) -> x509.Certificate:
    """A self-signed CA named `kubernetes`, as EKS names a cluster's CA, that may sign
    leaves only."""
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name("kubernetes"))
        .issuer_name(_name("kubernetes"))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def serving_certificate(
    key: Key,
    addresses: Sequence[str],
    names: Sequence[str],
    ca: x509.Certificate,
    ca_key: Key,
    now: datetime.datetime,
) -> x509.Certificate:
    """A TLS server certificate for IP `addresses` and DNS `names`, signed by `ca`."""
    public = key.public_key()
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    sans += [x509.DNSName(n) for n in names]
    return (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver"))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + SERVING_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


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


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: Key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
