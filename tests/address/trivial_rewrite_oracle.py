"""The real Postfix trivial-rewrite(8) as an oracle for rewrite and resolve.

Postfix's daemons accept ``-S`` ("stand-alone": the client is connected to
standard input/output). trivial-rewrite then serves exactly one request on
its standard input and exits, so each query here is one short-lived process
talking Postfix's null-terminated attribute protocol over a socketpair:

* ``request=rewrite rule=local|remote address=A`` -> ``flags``, ``address``;
* ``request=resolve|verify sender=S address=A`` -> ``flags`` (status),
  ``transport``, ``nexthop``, ``recipient``, ``flags`` (the RESOLVE_* bits).

The instance reads its own ``main.cf`` (``MAIL_CONFIG``) with its queue and
data directories under a temporary directory; nothing else is started and
nothing outlives a query (each process is waited for). Queries run in a
small thread pool so a corpus of a few hundred addresses takes seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mailhorn.address.quote import quote_local, unquote_local

TRIVIAL_REWRITE = "/usr/lib/postfix/sbin/trivial-rewrite"


def available() -> bool:
    """Whether the real trivial-rewrite can be run here."""
    return os.path.exists(TRIVIAL_REWRITE) and os.geteuid() == 0


@dataclass(frozen=True)
class OracleResolution:
    """trivial-rewrite's answer to one resolve request."""

    flags: int
    transport: str
    nexthop: str
    recipient: str


class TrivialRewriteOracle:
    """One private configuration directory for the real trivial-rewrite."""

    def __init__(self, root: Path, main_cf: str) -> None:
        self.root = root
        self.etc = root / "etc"
        self.spool = root / "spool"
        self.data = root / "data"
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.spool}\n"
            f"data_directory = {self.data}\n"
            "mail_owner = postfix\n"
            f"{main_cf}"
        )
        (self.etc / "master.cf").write_text("")

    def _query(self, attrs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        ours, theirs = socket.socketpair()
        env = {"MAIL_CONFIG": str(self.etc), "PATH": "/usr/bin:/bin", "TZ": "UTC"}
        with ours:
            try:
                proc = subprocess.Popen(
                    [TRIVIAL_REWRITE, "-S"], stdin=theirs.fileno(), stdout=theirs.fileno(),
                    stderr=subprocess.DEVNULL, env=env, cwd=str(self.spool),
                )
            finally:
                theirs.close()
            request = b"".join(f"{k}\0{v}\0".encode("utf-8", "surrogateescape") for k, v in attrs) + b"\0"
            ours.sendall(request)
            ours.settimeout(30)
            chunks: list[bytes] = []
            while True:
                chunk = ours.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            proc.wait(timeout=30)
        raw = b"".join(chunks)
        if not raw.endswith(b"\0\0") and raw != b"\0":
            raise RuntimeError(f"trivial-rewrite gave no answer (exit {proc.returncode}): {raw!r}")
        fields = raw[:-2].split(b"\0") if raw != b"\0" else []
        return [
            (fields[i].decode("utf-8", "surrogateescape"), fields[i + 1].decode("utf-8", "surrogateescape"))
            for i in range(0, len(fields) - 1, 2)
        ]

    def resolve(self, address: str, sender: str = "", *, verify: bool = False) -> OracleResolution:
        """Resolve ``address`` as qmgr (or, with ``verify``, the verify service) asks."""
        reply = self._query([("request", "verify" if verify else "resolve"), ("sender", sender), ("address", address)])
        values = dict(reply[1:])
        return OracleResolution(int(reply[-1][1]), values["transport"], values["nexthop"], values["recipient"])

    def rewrite(self, rule: str, address: str) -> str:
        """Rewrite an internal-form ``address`` in the ``local`` or ``remote``
        context; the request carries the external form, as Postfix's
        rewrite_clnt_internal sends it, and the answer is unquoted again."""
        external = quote_local(address) if address else address
        reply = dict(self._query([("request", "rewrite"), ("rule", rule), ("address", external)]))
        return unquote_local(reply["address"])

    def resolve_many(self, queries: Sequence[tuple[str, str]], *, verify: bool = False) -> list[OracleResolution]:
        """Resolve (address, sender) pairs in parallel, answers in order."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda q: self.resolve(q[0], q[1], verify=verify), queries))

    def rewrite_many(self, queries: Sequence[tuple[str, str]]) -> list[str]:
        """Rewrite (rule, address) pairs in parallel, answers in order."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda q: self.rewrite(q[0], q[1]), queries))
