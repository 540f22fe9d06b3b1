"""endpoint: https://kubeflow.<subdomain>/ resolves, its certificate is valid for that
name (a full TLS handshake with the system's trust store), and HTTP answers."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from orchestrator import resolver
from orchestrator.phase import Phase, PhaseContext

TIMEOUT = 10.0
WAIT_LIMIT = 900  # DNS caches and ALB listeners can take minutes


def request_bytes(host: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: orchestrator-endpoint-check\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


def parse_status(line: bytes) -> int | None:
    """The status code of an HTTP status line, or None if it is not one."""
    parts = line.decode("latin-1").split()
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def https_check(host: str, address: str, port: int = 443) -> dict[str, Any]:
    """Connect to `address`, verify the certificate for `host`, and read the status line."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection((address, port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(request_bytes(host))
        line = tls.makefile("rb").readline(1024)
        certificate = tls.getpeercert() or {}
        version = tls.version()
    status = parse_status(line)
    if status is None:
        raise OSError(f"not an HTTP answer: {line[:60]!r}")
    subject = dict(x[0] for x in certificate.get("subject", ()))
    return {
        "http_status": status,
        "tls_version": version,
        "certificate_subject": subject.get("commonName"),
        "certificate_expires": certificate.get("notAfter"),
    }


def probe(host: str) -> tuple[dict[str, Any] | None, str]:
    """(result, "") when the endpoint works, else (None, what is wrong)."""
    addresses = resolver.lookup(host, "A")
    if not addresses:
        return None, f"{host} does not resolve yet"
    try:
        result = https_check(host, addresses[0])
    except ssl.SSLCertVerificationError as exc:
        return None, f"TLS certificate not valid for {host}: {exc.verify_message}"
    except (OSError, ssl.SSLError) as exc:
        return None, f"{addresses[0]}:443: {exc}"
    return {"url": f"https://{host}/", "address": addresses[0], **result}, ""


class EndpointPhase(Phase):
    name = "endpoint"
    title = "check https://kubeflow.<subdomain>/ answers with a valid certificate"
    inputs = ("route53.subDomain.name",)
    outputs = ("url", "http_status")

    def enter(self, ctx: PhaseContext) -> None:
        host = ctx.config.kubeflow_host

        def works() -> dict[str, Any] | None:
            result, problem = probe(host)
            if result is None:
                ctx.note(problem)
            return result

        ctx.outputs.update(ctx.wait_until(f"https://{host}/ to answer", works, limit=WAIT_LIMIT))
        ctx.say(
            f"Kubeflow answers at {ctx.outputs['url']} (HTTP {ctx.outputs['http_status']}, "
            f"{ctx.outputs['tls_version']})"
        )

    def verify(self, ctx: PhaseContext) -> str | None:
        result, problem = probe(ctx.config.kubeflow_host)
        return None if result is not None else problem
