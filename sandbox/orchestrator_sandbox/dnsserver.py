"""A DNS server on a loopback port (UDP and TCP) answering from the world's DNS view.

It plays "the internet's DNS" for the sandbox: a recursive-looking resolver whose
answers follow Route 53 delegation, so the orchestrator's DNS checks (pointed at it by
ORCHESTRATOR_DNS_SERVERS) see what real resolvers would.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from orchestrator_sandbox.dnsview import DnsView

POLL_INTERVAL = 0.05


def answer(view: DnsView, wire: bytes) -> bytes:
    """The response to one query in wire format."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA | dns.flags.RA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    rtype = dns.rdatatype.to_text(question.rdtype)
    try:
        result = view.resolve(question.name.to_text(), rtype)
    except Exception:  # noqa: BLE001 - the AWS side failed: answer like a broken server
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()
    response.set_rcode(dns.rcode.from_text(result.rcode))
    for name, record_type, ttl, value in result.records:
        text = value if record_type not in ("NS", "CNAME", "PTR") else value.rstrip(".") + "."
        response.answer.append(
            dns.rrset.from_text(name + ".", ttl, dns.rdataclass.IN, record_type, text)
        )
    return response.to_wire()


class DnsServer:
    def __init__(self, view: DnsView, host: str = "127.0.0.1", port: int = 0) -> None:
        self.view = view
        self.host = host
        self.port = port
        self._servers: list[socketserver.BaseServer] = []

    def start(self) -> None:
        view = self.view

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(answer(view, data), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                header = self.request.recv(2)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                data = b""
                while len(data) < length:
                    chunk = self.request.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = answer(view, data)
                self.request.sendall(struct.pack("!H", len(reply)) + reply)

        for _ in range(20):  # the TCP port must match the UDP one; retry if it is taken
            udp = _UdpServer((self.host, self.port), Udp)
            port = udp.server_address[1]
            try:
                tcp = _TcpServer((self.host, port), Tcp)
            except OSError:
                udp.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            break
        else:
            raise OSError("no free port for the DNS server")
        for server in self._servers:
            # A short poll interval: stop() waits for it, twice (socketserver's is 0.5 s).
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
            ).start()

    def stop(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()
