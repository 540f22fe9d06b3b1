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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator import pki

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
        key = pki.new_key()
        tag = hashlib.sha256(str(self.directory).encode()).hexdigest()[:8]
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "orchestrator sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"orchestrator sandbox CA {tag}"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = pki.ca_certificate(key, name, now - CLOCK_SKEW, now + CA_VALIDITY)
        _write_private(self.key_path, pki.key_pem(key).encode())
        self.cert_path.write_text(pki.cert_pem(cert))
        return key, cert

    # ---- leaves -------------------------------------------------------------------------------

    def _issue(self, names: tuple[str, ...]) -> Path:
        key = pki.new_key()
        now = datetime.datetime.now(datetime.UTC)
        cert = pki.serving_certificate(
            key, list(names), self._cert, self._key, now - CLOCK_SKEW, now + LEAF_VALIDITY
        )
        self._leaf_dir.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        path = self._leaf_dir / f"leaf-{digest}.pem"
        _write_private(path, (pki.key_pem(key) + pki.cert_pem(cert)).encode())
        return path


def _write_private(path: Path, data: bytes) -> None:
    """Write a file holding a private key, readable by its owner only from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
