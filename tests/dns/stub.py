"""A DNS server on 127.0.0.1 for tests: UDP and TCP, zone data from a dict.

``zone`` maps ``(name, type)`` to a list of record texts in zone-file
syntax (``("mx.test", "MX"): ["10 mail.mx.test."]``).  A name that appears
with any type exists (NOERROR with no answer for other types); other names
are NXDOMAIN.  ``servfail`` names answer SERVFAIL, ``drop`` names are never
answered (the client times out).  Use as a context manager; ``server``
is the ``dns_servers`` value that reaches it.
"""

from __future__ import annotations

import threading
from types import TracebackType

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.helpers.ports import bind_tcp_and_udp

Zone = dict[tuple[str, str], list[str]]


class DnsStub:
    def __init__(self, zone: Zone, servfail: set[str] | None = None, drop: set[str] | None = None) -> None:
        self.zone = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in zone.items()}
        self.names = {n for n, _ in self.zone}
        self.servfail = {n.lower().rstrip(".") for n in servfail or set()}
        self.drop = {n.lower().rstrip(".") for n in drop or set()}
        self.queries: list[tuple[str, str]] = []
        # One port for both: a TCP port taken already is tried again, not an error.
        self.tcp, self.udp = bind_tcp_and_udp("127.0.0.1")
        self.port: int = self.tcp.getsockname()[1]
        self.udp.settimeout(0.05)
        self.tcp.settimeout(0.05)
        self._stop = False
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]

    @property
    def server(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.drop:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            records = self.zone.get((name, rdtype), [])
            if records:
                response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", rdtype, records))
        return response.to_wire()

    def _serve_udp(self) -> None:
        while not self._stop:
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(data)
            if reply is not None:
                self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    head = conn.recv(2)
                    size = int.from_bytes(head, "big")
                    data = b""
                    while len(data) < size:
                        chunk = conn.recv(size - len(data))
                        if not chunk:
                            break
                        data += chunk
                    reply = self.answer(data)
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except OSError:
                    pass

    def __enter__(self) -> DnsStub:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop = True
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()
