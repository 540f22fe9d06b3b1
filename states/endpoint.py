"""endpoint: https://kubeflow.<subdomain>/ works, as a user would find it.

The ALB is `active` (`load_balancer` ends when it is made, and it provisions while the
alias record propagates); its target groups have healthy targets (right after provisioning they are
`initial` while health checks start, and the ALB itself answers 503 meanwhile); the name
resolves; the certificate is valid for it (a full TLS handshake with the system's trust
store); and HTTP answers below 500. An internal ALB is reachable only from inside its
VPC, where orchestrator usually does not run: then the name must resolve, the HTTPS
listener must serve our certificate and the targets must be healthy, and the HTTPS
request itself is skipped, and said so.

Behind an egress proxy the standard settings apply: `HTTPS_PROXY` (or `https_proxy`) names
an HTTP proxy that tunnels (CONNECT) to the host's port 443, unless `NO_PROXY` exempts the
host. The name must still resolve through the configured resolvers; the TLS handshake and
its certificate check are end to end, through the tunnel.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator import resolver
from orchestrator.builders.alb import serving_problem
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CHECK, Change

TIMEOUT = 10.0
WAIT_LIMIT = 900  # DNS caches, ALB listeners and target health checks can take minutes
PROBE_SKIPPED = (
    "the HTTPS request was skipped: the ALB is internal, reachable only from inside its VPC; "
    "checked DNS, the HTTPS listener and target health instead"
)


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


def https_proxy(host: str) -> str | None:
    """The proxy the environment names for HTTPS to `host` (HTTPS_PROXY, NO_PROXY), if any."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def shown(proxy: str) -> str:
    """The proxy's URL without its credentials, to print and to keep in the state."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def tunnel(proxy: str, host: str, port: int) -> socket.socket:
    """A connection to host:port through an HTTP proxy's CONNECT tunnel (OSError if the
    proxy refuses). `proxy`: a URL, `http://[user:password@]host[:port]`, or host:port."""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise OSError(f"unsupported proxy {proxy!r}: expected http://host:port")
    headers = {}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    # http.client speaks CONNECT (set_tunnel); the TLS on top is ours, for the host's name.
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT)
    connection.set_tunnel(host, port, headers=headers)
    try:
        connection.connect()
    except BaseException:
        connection.close()
        raise
    assert connection.sock is not None
    return connection.sock


def https_check(host: str, address: str, port: int = 443) -> dict[str, Any]:
    """Connect to `address` (or, if the environment names a proxy for `host`, through it),
    verify the certificate for `host`, and read the status line."""
    proxy = https_proxy(host)
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    raw = (
        tunnel(proxy, host, port)
        if proxy
        else socket.create_connection((address, port), timeout=TIMEOUT)
    )
    with raw, context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(request_bytes(host))
        line = tls.makefile("rb").readline(1024)
        certificate: dict[str, Any] = tls.getpeercert() or {}
        version = tls.version()
    status = parse_status(line)
    if status is None:
        raise OSError(f"not an HTTP answer: {line[:60]!r}")
    subject = dict(x[0] for x in certificate.get("subject", ()))
    result = {
        "http_status": status,
        "tls_version": version,
        "certificate_subject": subject.get("commonName"),
        "certificate_expires": certificate.get("notAfter"),
    }
    return {**result, "proxy": shown(proxy)} if proxy else result


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
        proxy = https_proxy(host)
        where = f"{host}:443 through the proxy {shown(proxy)}" if proxy else f"{addresses[0]}:443"
        return None, f"{where}: {exc}"
    if result["http_status"] >= 500:
        # The ALB answers 502/503/504 itself while no target is healthy or reachable.
        return None, f"https://{host}/ answers HTTP {result['http_status']}"
    return {"url": f"https://{host}/", "address": addresses[0], **result}, ""


def unhealthy(descriptions: list[dict[str, Any]]) -> str | None:
    """Why a target group cannot serve yet (no healthy target), or None if it can."""
    states = [d.get("TargetHealth", {}) for d in descriptions]
    if any(s.get("State") == "healthy" for s in states):
        return None
    if not states:
        return "no targets registered"
    counts: dict[str, int] = {}
    for state in states:
        label = state.get("State", "unknown")
        if state.get("Reason"):
            label += f" ({state['Reason']})"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))


class EndpointPhase(Phase):
    name = "endpoint"
    title = "check that Kubeflow answers over HTTPS with a valid certificate"
    inputs = ("route53.subDomain.name", "kubeflow.alb.scheme")
    outputs = ("url", "http_status")
    reads = ("load_balancer", "certificates_issued")

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return [
            Change(
                CHECK, f"that https://{ctx.config.kubeflow_host}/ answers", "a valid certificate"
            )
        ]

    def enter(self, ctx: PhaseContext) -> None:
        host = ctx.config.kubeflow_host

        warned: set[str] = set()

        def works() -> dict[str, Any] | None:
            result, problem = self._check(ctx, warned)
            if result is None:
                ctx.note(problem)
            return result

        result = ctx.wait_until(f"https://{host}/ to answer", works, limit=WAIT_LIMIT)
        ctx.outputs.update(result)
        if result["http_status"] is None:
            ctx.say(f"{result['url']}: {PROBE_SKIPPED}")
        else:
            ctx.say(
                f"Kubeflow answers at {result['url']} (HTTP {result['http_status']}, "
                f"{result['tls_version']})"
            )

    def verify(self, ctx: PhaseContext) -> str | None:
        result, problem = self._check(ctx, set())
        return None if result is not None else problem

    def _check(self, ctx: PhaseContext, warned: set[str]) -> tuple[dict[str, Any] | None, str]:
        host = ctx.config.kubeflow_host
        balancer = ctx.earlier("load_balancer")["load_balancer_arn"]
        problem = serving_problem(ctx, balancer, warned) or self._targets_problem(ctx)
        if problem:
            return None, problem
        if ctx.config.alb_scheme == "internal":
            return self._internal(ctx, host)
        return probe(host)

    def _targets_problem(self, ctx: PhaseContext) -> str | None:
        """Why the ALB's target groups have no healthy target, or None."""
        elbv2 = ctx.aws.elbv2
        balancer = ctx.earlier("load_balancer")["load_balancer_arn"]
        groups = list(elbv2.pages("describe_target_groups", LoadBalancerArn=balancer))
        if not groups:
            return "the ALB has no target group"
        for group in groups:
            health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
            problem = unhealthy(health["TargetHealthDescriptions"])
            if problem:
                return f"target group {group['TargetGroupName']} has no healthy target: {problem}"
        return None

    def _internal(self, ctx: PhaseContext, host: str) -> tuple[dict[str, Any] | None, str]:
        """What can be checked of an internal ALB from outside its VPC."""
        addresses = resolver.lookup(host, "A")
        if not addresses:
            return None, f"{host} does not resolve yet"
        balancer = ctx.earlier("load_balancer")["load_balancer_arn"]
        certificate = ctx.earlier("certificates_issued")["certificate_arn"]
        listeners = ctx.aws.elbv2.pages("describe_listeners", LoadBalancerArn=balancer)
        https = [
            listener
            for listener in listeners
            if listener.get("Protocol") == "HTTPS" and listener.get("Port") == 443
        ]
        if not https:
            return None, "the ALB has no HTTPS listener on port 443 yet"
        serving = [c["CertificateArn"] for c in https[0].get("Certificates", [])]
        if certificate not in serving:
            return None, f"the HTTPS listener does not serve certificate {certificate}"
        return {
            "url": f"https://{host}/",
            "address": addresses[0],
            "http_status": None,
            "probe": PROBE_SKIPPED,
        }, ""
