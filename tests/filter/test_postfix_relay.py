"""200 messages relayed to a real Postfix next hop, with PIPELINING and connection reuse.

The next hop is a throwaway Postfix 3.7 instance (:class:`PostfixOracle`:
smtpd and cleanup only, so every message it accepts stays in its
``incoming`` queue and its cleanup logs ``ID: message-id=<...>``).
Between mailhorn and Postfix sits :class:`PipelineWitness`, a loopback TCP
relay that counts connections and proves pipelining without looking at
timing: once a client sends ``MAIL FROM`` it holds the server's replies back
until the client's ``RCPT TO`` arrives, so a client that waits for the
``MAIL FROM`` reply (no pipelining) is only released by the witness's
timeout and is counted as not pipelining.

Each of the 200 messages must be queued by Postfix exactly once, every
``MAIL FROM`` must have been pipelined, and there must be far fewer
connections than messages (sessions reused).
"""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cleanup.postfix_oracle import PostfixOracle, available
from tests.conftest import require
from tests.filter.conftest import MakeMailhorn
from tests.helpers.ports import listening_socket, reserve_port
from tests.master.util import wait_for

MESSAGES = 200
#: How long the witness holds server replies waiting for a pipelined RCPT TO.
HOLD_LIMIT = 20.0


class PipelineWitness:
    """A TCP relay 127.0.0.1:port -> target that counts connections and pipelined MAIL FROMs."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = listening_socket(backlog=64)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.connections = 0
        self.mail_commands = 0
        self.pipelined = 0
        self.closing = False
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections += 1
                self.sockets += [client, server]
            release = threading.Event()
            release.set()
            self._spawn(self._client_to_server, client, server, release)
            self._spawn(self._server_to_client, server, client, release)

    def _client_to_server(self, client: socket.socket, server: socket.socket, release: threading.Event) -> None:
        pending = b""
        in_data = False
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                _shut(server)
                return
            pending += data
            *lines, pending = pending.split(b"\r\n")
            for line in lines:
                upper = line.upper()
                if in_data:
                    in_data = line != b"."
                elif upper.startswith(b"MAIL FROM:"):
                    with self.lock:
                        self.mail_commands += 1
                    release.clear()
                elif upper.startswith(b"RCPT TO:") and not release.is_set():
                    with self.lock:
                        self.pipelined += 1
                    release.set()
                elif upper == b"DATA":
                    in_data = True
            try:
                server.sendall(data)
            except OSError:
                return

    def _server_to_client(self, server: socket.socket, client: socket.socket, release: threading.Event) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if not data:
                _shut(client)
                return
            # A reply to MAIL FROM waits for the client's RCPT TO (or the time limit).
            release.wait(HOLD_LIMIT)
            release.set()
            try:
                client.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                _shut(sock)
                sock.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture
def postfix() -> Iterator[PostfixOracle]:
    require(available(), "a private Postfix 3.7 instance needs root and /usr/sbin/postfix")
    # Postfix's daemons run as the postfix user: pytest's private 0700 tree is out of their reach.
    root = Path(tempfile.mkdtemp(prefix="mailhorn-relay-postfix-"))
    oracle = PostfixOracle(root, myhostname="nexthop.example.org")
    try:
        oracle.start()
        yield oracle
    finally:
        oracle.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_two_hundred_messages_reach_postfix_exactly_once_pipelined_over_reused_connections(
        make_mailhorn: MakeMailhorn, postfix: PostfixOracle) -> None:
    witness = PipelineWitness(postfix.port)
    try:
        port = reserve_port()
        mh = make_mailhorn(
            "myhostname = mx.relay.test\nmydomain = relay.test\nmydestination =\nmynetworks = 127.0.0.0/8\n"
            f"relayhost = [127.0.0.1]:{witness.port}\n"
            "smtp_destination_concurrency_limit = 5\n",
            f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "qmgr unix n - n 300 1 qmgr\n"
            "smtp unix - - n - - smtp\n"
            "relay unix - - n - - smtp\n"
            "error unix - - n - - error\n"
            "retry unix - - n - - error\n")
        mh.start(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("client.relay.test")
            for n in range(MESSAGES):
                client.sendmail(f"sender{n}@relay.test", [f"rcpt{n}@far.example"],
                                f"From: sender{n}@relay.test\r\nTo: rcpt{n}@far.example\r\n"
                                f"Subject: relay {n}\r\nMessage-ID: <relay-{n}@relay.test>\r\n\r\n"
                                f"message number {n}\r\n")
        sent = re.compile(r"mailhorn/smtp\[\d+\]: \w+: to=<rcpt\d+@far\.example>, "
                          rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{witness.port}, .* status=sent \(250 ")
        assert wait_for(lambda: len(mh.log_lines(sent.pattern)) >= MESSAGES, 120), mh.log()[-3000:]
        mh.wait_queue_empty()

        # Postfix queued each message exactly once.
        ids = re.findall(r"cleanup\[\d+\]: \w+: message-id=<relay-(\d+)@relay\.test>", postfix.log())
        assert sorted(int(i) for i in ids) == list(range(MESSAGES))
        assert wait_for(lambda: len(postfix.incoming()) == MESSAGES, 30)
        assert len(mh.log_lines(sent.pattern)) == MESSAGES
        assert not mh.log_lines(r"status=(deferred|bounced)")

        # Every transaction was pipelined; sessions were reused.
        assert witness.mail_commands == MESSAGES
        assert witness.pipelined == MESSAGES
        assert 1 <= witness.connections <= MESSAGES // 4, witness.connections
    finally:
        witness.close()
