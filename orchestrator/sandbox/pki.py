"""The sandbox's certificate authority: what makes the world's HTTPS verifiable.

Real ALBs present certificates that chain to public roots; the sandbox presents leaves
issued by a CA of its own, made once per world directory (`ca.pem`, with the key beside
it in `ca-key.pem`, mode 0600) so that a client told to trust `ca.pem` keeps trusting
the world across restarts. Leaves are EC P-256, short-lived, issued on demand and cached.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=7)
CLOCK_SKEW = datetime.timedelta(minutes=5)


class SandboxCA:
    """The CA of one world directory; `leaf(names)` gives a PEM file for load_cert_chain."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.pem"
        self.key_path = directory / "ca-key.pem"
        self._leaf_dir = directory / "tls"
        self._lock = threading.Lock()
        self._leaves: dict[tuple[str, ...], Path] = {}
        self._key, self._cert = self._load() or self._create()

    def leaf(self, names: list[str] | tuple[str, ...]) -> Path:
        """A file holding a leaf key and certificate for `names` (DNS SANs), made once."""
        wanted = tuple(dict.fromkeys(n.lower().rstrip(".") for n in names))
        with self._lock:
            path = self._leaves.get(wanted)
            if path is None:
                path = self._issue(wanted)
                self._leaves[wanted] = path
            return path

    # ---- the CA itself ------------------------------------------------------------------------

    def _load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (OSError, ValueError):
            return None
        now = datetime.datetime.now(datetime.UTC)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc < now:
            return None
        return key, cert

    def _create(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        tag = hashlib.sha256(str(self.directory).encode()).hexdigest()[:8]
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "orchestrator sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"orchestrator sandbox CA {tag}"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _key_pem(key))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    # ---- leaves -------------------------------------------------------------------------------

    def _issue(self, names: tuple[str, ...]) -> Path:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(_leaf_subject(names))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
            .sign(self._key, hashes.SHA256())
        )
        self._leaf_dir.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        path = self._leaf_dir / f"leaf-{digest}.pem"
        _write_private(path, _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM))
        return path


def _leaf_subject(names: tuple[str, ...]) -> x509.Name:
    # Clients match names against the SANs; the CN is for people, and may be at most 64.
    if len(names[0]) > 64:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])


def _usage(cert_sign: bool) -> x509.KeyUsage:
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


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a file holding a private key, readable by its owner only from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
