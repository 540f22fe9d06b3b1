"""Short-lived bearer tokens bound to one cluster, like EKS's, and the exec plugin that makes them.

An EKS token is `k8s-aws-v1.` and a base64url presigned STS URL naming the cluster; it is
good for 15 minutes, and `aws eks get-token` tells the client it expires after 14. The
world's tokens have that shape and those rules without pretending to be STS: the payload
names the cluster and the expiry and carries an HMAC of both under the world's secret.

The world keeps the secret and the TTL it chose in `<dir>/kube-tokens.json` (mode 0600;
`ClusterTokens.in_directory`), and its kubeconfig runs the plugin as `aws eks get-token`
would be run:

    python -m orchestrator_sandbox.kubetoken --dir DIR --cluster NAME

which prints an ExecCredential. The official Python client runs the plugin again once the
reported expiry is within 5 minutes (kubectl: once it has passed), so with a TTL of T
seconds the Python client refreshes its token T - 60 - 300 seconds after getting it.

Deliberately light: only the standard library, so that the plugin starts fast.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

PREFIX = "k8s-aws-v1."
DEFAULT_TTL = 900.0  # EKS tokens are good for 15 minutes
REPORTED_EARLY = 60.0  # ... and `aws eks get-token` reports an expiry one minute sooner
KEY_FILE = "kube-tokens.json"
# One JSON line per token the plugin printed (time, cluster, expiry): the world's record of
# how often clients came back for a fresh token.
ISSUED_LOG = "kube-tokens-issued.jsonl"
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
# Looks like the presigned GetCallerIdentity URL inside an EKS token; the host says whose it is.
ISSUER = "https://sts.sandbox.invalid/?"


class ClusterTokens:
    """Issues and checks the bearer tokens of every cluster of one world."""

    def __init__(
        self, secret: bytes, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        """`ttl`: seconds a token is accepted for; `clock`: the time now, in Unix seconds."""
        if ttl <= REPORTED_EARLY:
            raise ValueError(f"a token TTL must be over {REPORTED_EARLY:g} seconds")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock

    @classmethod
    def in_directory(cls, directory: Path, ttl: float | None = None) -> ClusterTokens:
        """The world's tokens: the secret in `directory`, made on first use and kept (so
        clients keep working across restarts); `ttl`, if given, replaces the stored TTL."""
        try:
            stored = read_key_file(directory)
        except (OSError, ValueError):
            stored = None
        secret = stored[0] if stored else secrets.token_bytes(32)
        chosen = ttl if ttl is not None else (stored[1] if stored else DEFAULT_TTL)
        tokens = cls(secret, chosen)
        if stored != (secret, chosen):
            _write_private(
                directory / KEY_FILE, json.dumps({"secret": secret.hex(), "ttl": chosen})
            )
        return tokens

    @classmethod
    def read(cls, directory: Path) -> ClusterTokens:
        """The tokens a world wrote to `directory`; OSError or ValueError if there are none."""
        secret, ttl = read_key_file(directory)
        return cls(secret, ttl)

    def issue(self, cluster: str) -> tuple[str, float]:
        """A token for `cluster` and when it stops being accepted (Unix seconds)."""
        expires = int(self._clock() + self.ttl)
        payload = urlencode(
            {
                "Action": "GetCallerIdentity",
                "X-K8s-Aws-Id": cluster,
                "X-Sandbox-Expires": str(expires),
                "X-Sandbox-Signature": self._sign(cluster, expires),
            }
        )
        encoded = base64.urlsafe_b64encode((ISSUER + payload).encode()).rstrip(b"=")
        return PREFIX + encoded.decode(), float(expires)

    def verify(self, token: str, cluster: str) -> bool:
        """Whether `token` was issued for `cluster` by this world and has not expired."""
        fields = _fields(token)
        if fields is None or fields.get("X-K8s-Aws-Id") != cluster:
            return False
        try:
            expires = int(fields.get("X-Sandbox-Expires", ""))
        except ValueError:
            return False
        signature = fields.get("X-Sandbox-Signature", "")
        if not hmac.compare_digest(signature, self._sign(cluster, expires)):
            return False
        return self._clock() < expires

    def authenticator(
        self, cluster: str, user: str = "kubernetes-admin"
    ) -> Callable[[str], str | None]:
        """What KubeApiServer(authenticator=...) needs: `user` for a good token, else None."""

        def authenticate(token: str) -> str | None:
            return user if self.verify(token, cluster) else None

        return authenticate

    def exec_credential(self, cluster: str) -> dict[str, Any]:
        """What the exec plugin prints: a token and its expiry as `aws eks get-token` states it."""
        token, expires = self.issue(cluster)
        reported = datetime.fromtimestamp(expires - REPORTED_EARLY, UTC)
        return {
            "kind": "ExecCredential",
            "apiVersion": EXEC_API_VERSION,
            "spec": {},
            "status": {
                "expirationTimestamp": reported.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "token": token,
            },
        }

    def _sign(self, cluster: str, expires: int) -> str:
        message = f"{cluster}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def exec_args(directory: Path, cluster: str) -> tuple[str, ...]:
    """Arguments for the Python interpreter that run the plugin for `cluster`."""
    return ("-m", "orchestrator_sandbox.kubetoken", "--dir", str(directory), "--cluster", cluster)


def read_key_file(directory: Path) -> tuple[bytes, float]:
    """(secret, ttl) from `directory`'s key file; OSError or ValueError if unusable."""
    data = json.loads((directory / KEY_FILE).read_text())
    try:
        return bytes.fromhex(data["secret"]), float(data["ttl"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {KEY_FILE}: {exc!r}") from exc


def _fields(token: str) -> dict[str, str] | None:
    if not token.startswith(PREFIX):
        return None
    encoded = token[len(PREFIX) :]
    try:
        url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not url.startswith(ISSUER):
        return None
    return {k: v[-1] for k, v in parse_qs(url[len(ISSUER) :]).items()}


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only from the start, replacing it at once."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator_sandbox.kubetoken",
        description="Print an ExecCredential for a sandbox cluster, as `aws eks get-token` does.",
    )
    parser.add_argument("--dir", required=True, type=Path, help="the sandbox world directory")
    parser.add_argument("--cluster", required=True, help="the EKS cluster name")
    args = parser.parse_args(argv)
    try:
        tokens = ClusterTokens.read(args.dir)
    except (OSError, ValueError) as exc:
        print(f"no sandbox token key in {args.dir}: {exc}", file=sys.stderr)
        return 1
    credential = tokens.exec_credential(args.cluster)
    json.dump(credential, sys.stdout)
    sys.stdout.write("\n")
    issued = {
        "time": time.time(),
        "cluster": args.cluster,
        "expires": credential["status"]["expirationTimestamp"],
    }
    with open(args.dir / ISSUED_LOG, "a") as log:
        log.write(json.dumps(issued) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
