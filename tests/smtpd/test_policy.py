"""check_policy_service: the protocol, connection reuse, failures, and the real postgrey."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.smtpd.checks import SmtpdChecks
from mailhorn.smtpd.policy import ServiceOptions
from mailhorn.smtpd.state import SmtpdState, Stage
from tests.conftest import require
from tests.helpers.ports import listening_socket, reserve_port
from tests.helpers.procs import stop_process

ACTIONS = {
    "a1@x.test": "DEFER_IF_PERMIT foo",
    "a2@x.test": "DEFER foo",
    "a3@x.test": "REJECT foo",
    "a4@x.test": "450 foo",
    "a5@x.test": "DEFER_IF_REJECT foo",
    "a6@x.test": "DEFER_IF_PERMIT",
    "a7@x.test": "554 5.7.9 bar",
    "a8@x.test": "WARN hm",
    "a9@x.test": "reject_unauth_destination",
    "b1@x.test": "bogus",
    "b2@x.test": "OK",
    "b3@x.test": "PREPEND X-Policy: seen",
}
EXPECTED = {
    "a1@x.test": "450 4.7.1 <a1@x.test>: Recipient address rejected: foo",
    "a2@x.test": "450 4.7.1 <a2@x.test>: Recipient address rejected: foo",
    "a3@x.test": "554 5.7.1 <a3@x.test>: Recipient address rejected: foo",
    "a4@x.test": "450 4.7.1 <a4@x.test>: Recipient address rejected: foo",
    "a5@x.test": "450 4.7.1 <a5@x.test>: Recipient address rejected: foo",
    "a6@x.test": "450 4.7.1 <a6@x.test>: Recipient address rejected: Service unavailable",
    "a7@x.test": "554 5.7.9 <a7@x.test>: Recipient address rejected: bar",
    "a8@x.test": None,
    "a9@x.test": "554 5.7.1 <a9@x.test>: Relay access denied",
    "b1@x.test": "451 4.3.5 Server configuration error",
    "b2@x.test": None,
    "b3@x.test": None,
}


class PolicyServer:
    """A tiny policy server: answers by recipient, records requests and connections."""

    def __init__(self, delay: float = 0.0, silent: bool = False) -> None:
        self.requests: list[dict[str, str]] = []
        self.connections = 0
        self.delay = delay
        self.silent = silent
        self.sock = listening_socket(backlog=16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn, conn.makefile("rb") as f:
            attrs: dict[str, str] = {}
            while True:
                try:
                    line = f.readline()
                except OSError:
                    return
                if not line:
                    return
                text = line.decode().rstrip("\n")
                if text:
                    name, _, value = text.partition("=")
                    attrs[name] = value
                    continue
                self.requests.append(attrs)
                if self.silent:
                    continue
                time.sleep(self.delay)
                action = ACTIONS.get(attrs.get("recipient", ""), "DUNNO")
                try:
                    conn.sendall(f"action={action}\n\n".encode())
                except OSError:
                    return
                attrs = {}

    def __enter__(self) -> PolicyServer:
        t = threading.Thread(target=self._serve, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self.sock.close()


BASE = {
    "myhostname": "mx.example.test", "mydomain": "example.test", "compatibility_level": "3.6",
    "inet_interfaces": "127.0.0.1", "mynetworks": "127.0.0.0/8", "local_recipient_maps": "", "alias_maps": "",
    "smtpd_relay_restrictions": "", "dns_servers": "[127.0.0.1]:1",
}


def engine(restrictions: str, **params: str) -> SmtpdChecks:
    return SmtpdChecks(Config(overrides={**BASE, "smtpd_recipient_restrictions": restrictions, **params}))


def state(recipient: str, **fields: object) -> SmtpdState:
    values: dict[str, object] = {
        "client_addr": "192.0.2.9", "client_port": "40000", "helo_name": "client.example.com",
        "protocol": "ESMTP", "sender": "s@example.com", "recipient": recipient, "instance": "1a2b.1",
        "recipient_count": 0, "server_addr": "127.0.0.1", "server_port": "25",
    }
    values.update(fields)
    return SmtpdState(**values)  # type: ignore[arg-type]


async def rcpt(eng: SmtpdChecks, recipient: str) -> str | None:
    result = await eng.check(Stage.RCPT, state(recipient))
    return str(result.reply) if result.reply else None


def test_actions_and_attributes() -> None:
    with PolicyServer() as server:
        eng = engine(f"check_policy_service inet:127.0.0.1:{server.port}, "
                     "check_recipient_access inline:{a5@x.test=reject}, permit")

        async def go() -> None:
            for recipient, expected in EXPECTED.items():
                assert await rcpt(eng, recipient) == expected, recipient
            result = await eng.check(Stage.RCPT, state("b3@x.test"))
            assert [(a.kind, a.text) for a in result.actions] == [("PREPEND", "X-Policy: seen")]
            eng.policy.close()

        asyncio.run(go())
        # One connection carried every request.
        assert server.connections == 1
        first = server.requests[0]
        assert list(first) == [
            "request", "protocol_state", "protocol_name", "helo_name", "queue_id", "sender", "recipient",
            "recipient_count", "client_address", "client_name", "reverse_client_name", "instance",
            "sasl_method", "sasl_username", "sasl_sender", "size", "ccert_subject", "ccert_issuer",
            "ccert_fingerprint", "ccert_pubkey_fingerprint", "encryption_protocol", "encryption_cipher",
            "encryption_keysize", "etrn_domain", "stress", "compatibility_level", "mail_version",
            "client_port", "policy_context", "server_address", "server_port"]
        assert first["request"] == "smtpd_access_policy"
        assert first["protocol_state"] == "RCPT"
        assert first["protocol_name"] == "ESMTP"
        assert first["client_address"] == "192.0.2.9"
        assert first["recipient"] == "a1@x.test"
        assert first["instance"] == "1a2b.1"
        assert first["compatibility_level"] == "3.6"


def test_request_limit_and_options() -> None:
    with PolicyServer() as server:
        eng = engine(f"check_policy_service {{ inet:127.0.0.1:{server.port}, request_limit=2, "
                     "policy_context=submission }")

        async def go() -> None:
            for _ in range(4):
                assert await rcpt(eng, "b2@x.test") is None
            eng.policy.close()

        asyncio.run(go())
        assert server.connections == 2
        assert server.requests[0]["policy_context"] == "submission"


def test_timeout_and_unreachable_use_default_action() -> None:
    with PolicyServer(silent=True) as server:
        eng = engine(f"check_policy_service {{ inet:127.0.0.1:{server.port}, timeout=1s, try_limit=1 }}, permit")
        assert asyncio.run(rcpt(eng, "u@x.test")) == \
            "451 4.3.5 <u@x.test>: Recipient address rejected: Server configuration problem"
        dunno = engine(f"check_policy_service {{ inet:127.0.0.1:{server.port}, timeout=1s, try_limit=1, "
                       "default_action=DUNNO }, permit")
        assert asyncio.run(rcpt(dunno, "u@x.test")) is None
    closed = reserve_port()
    eng = engine(f"check_policy_service inet:127.0.0.1:{closed}, permit", smtpd_policy_service_retry_delay="0")
    assert asyncio.run(rcpt(eng, "u@x.test")) == \
        "451 4.3.5 <u@x.test>: Recipient address rejected: Server configuration problem"


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "policy"
    served: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(await reader.readuntil(b"\n\n"))
        writer.write(b"action=REJECT go away\n\n")
        await writer.drain()
        writer.close()

    async def go() -> str | None:
        server = await asyncio.start_unix_server(handle, str(path))
        async with server:
            eng = engine(f"check_policy_service unix:{path}")
            answer = await rcpt(eng, "u@x.test")
            eng.policy.close()
            return answer

    assert asyncio.run(go()) == "554 5.7.1 <u@x.test>: Recipient address rejected: go away"
    assert served[0].startswith(b"request=smtpd_access_policy\n")


def test_bad_options() -> None:
    config = Config(overrides=BASE)
    assert ServiceOptions.parse("{ inet:127.0.0.1:9, timeout=10s, max_idle=2m }", config).max_idle == 120
    from mailhorn.config.errors import ConfigError
    with pytest.raises(ConfigError):
        ServiceOptions.parse("{ inet:127.0.0.1:9, colour=blue }", config)
    assert asyncio.run(rcpt(engine("check_policy_service { inet:127.0.0.1:9, timeout=x }"), "u@x.test")) == \
        "451 4.3.5 Server configuration error"


@pytest.fixture
def postgrey() -> Iterator[int]:
    binary = shutil.which("postgrey") or "/usr/sbin/postgrey"
    require(os.path.exists(binary), "postgrey is not installed (Debian package postgrey)")
    # postgrey drops to its own user: its database directory must be reachable by it.
    top = tempfile.mkdtemp(prefix="mailhorn-postgrey-")
    os.chmod(top, 0o755)
    dbdir = os.path.join(top, "db")
    os.mkdir(dbdir)
    user = "postgrey" if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(dbdir, user)
    port = reserve_port()
    args = [binary, f"--inet=127.0.0.1:{port}", f"--dbdir={dbdir}", "--delay=1", "--max-age=1"]
    if user is None:
        args.append(f"--user={pwd.getpwuid(os.getuid()).pw_name}")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert proc.poll() is None, "postgrey exited"
                assert time.monotonic() < deadline, "postgrey did not start"
                time.sleep(0.05)
        yield port
    finally:
        stop_process(proc)
        shutil.rmtree(top, ignore_errors=True)


def test_postgrey_greylists_then_accepts(postgrey: int) -> None:
    eng = engine(f"check_policy_service inet:127.0.0.1:{postgrey}, permit")

    async def go() -> tuple[str | None, str | None, str | None]:
        first = await rcpt(eng, "u@example.org")
        again = await rcpt(eng, "u@example.org")
        await asyncio.sleep(2.2)
        later = await rcpt(eng, "u@example.org")
        eng.policy.close()
        return first, again, later

    first, again, later = asyncio.run(go())
    greylisted = ("450 4.2.0 <u@example.org>: Recipient address rejected: Greylisted, "
                  "see http://postgrey.schweikert.ch/help/example.org.html")
    assert first == greylisted
    assert again == greylisted
    assert later is None


@pytest.mark.oracle
def test_policy_replies_equal_postfix() -> None:
    """The same policy answers through the real Postfix smtpd give the same replies."""
    from tests.smtpd.test_checks_oracle import LivePostfix, _usable

    reason = _usable()
    require(reason is None, reason or "")
    with PolicyServer() as server:
        live = LivePostfix(
            "smtpd_relay_restrictions = check_client_access static:OK, reject\n"
            f"smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{server.port},\n"
            "    check_recipient_access inline:{a5@x.test=reject}, permit\nlocal_recipient_maps =\n", {})
        try:
            theirs = live.session(["XCLIENT ADDR=192.0.2.9 NAME=[UNAVAILABLE]", "HELO client.example.com",
                                   "MAIL FROM:<s@example.com>", *[f"RCPT TO:<{r}>" for r in EXPECTED]])[3:]
        finally:
            live.close()
    for recipient, their in zip(EXPECTED, theirs):
        expected = EXPECTED[recipient]
        assert (their if their[0] in "45" else None) == expected, recipient
