"""smtpd's limits over real sockets, each with the reply Postfix 3.7 gives.

The replies were taken from the real Postfix smtpd fed the same input.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.smtpd.server_harness import HOST, SmtpdServer


def start(tmp_path: Path, **settings: str) -> SmtpdServer:
    return SmtpdServer(tmp_path, settings)


def begin(server: SmtpdServer, source: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    c = server.client(source)
    assert c.reply()[0].startswith("220 ")
    c.cmd("EHLO client.example")
    return c


def test_overlong_command_is_cut_at_line_length_limit(tmp_path: Path) -> None:
    srv = start(tmp_path)
    try:
        c = begin(srv)
        assert c.cmd("NOOP " + "x" * 2044) == ["250 2.0.0 Ok"]  # 2049 octets
        assert c.cmd("MAIL FROM:<" + "b" * 2100 + "@x>") == ["501 5.1.7 Bad sender address syntax"]
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    finally:
        srv.stop()


def test_megabyte_without_newline(tmp_path: Path) -> None:
    srv = start(tmp_path)
    try:
        c = begin(srv)
        c.send(b"a" * (1 << 20) + b"\r\nNOOP\r\n")
        assert c.reply() == ["500 5.5.2 Error: command not recognized"]
        assert c.reply() == ["250 2.0.0 Ok"]
    finally:
        srv.stop()


def test_size_parameter_over_the_limit(tmp_path: Path) -> None:
    srv = start(tmp_path, message_size_limit="1000")
    try:
        c = begin(srv)
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=1001") == ["552 5.3.4 Message size exceeds fixed limit"]
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=1000") == ["250 2.1.0 Ok"]
    finally:
        srv.stop()


def test_data_over_the_limit_keeps_the_session(tmp_path: Path) -> None:
    srv = start(tmp_path, message_size_limit="1000")
    try:
        c = begin(srv)
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        c.send(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100 + b".\r\n")
        assert c.reply() == ["552 5.3.4 Error: message file too big"]
        assert srv.queued() == []
        assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        assert c.cmd("small\r\n.")[0].startswith("250 2.0.0 Ok: queued as ")
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nBDAT 2000 LAST\r\n")
        c.send(b"y" * 2000)
        assert [c.reply(), c.reply(), c.reply()] == [
            ["250 2.1.0 Ok"], ["250 2.1.5 Ok"], ["552 5.3.4 Chunk exceeds message size limit"]]
        assert c.cmd("RSET") == ["250 2.0.0 Ok"]
        assert len(srv.queued()) == 1
    finally:
        srv.stop()


def test_recipient_limit(tmp_path: Path) -> None:
    srv = start(tmp_path)
    try:
        c = begin(srv)
        c.cmd("MAIL FROM:<a@example.org>")
        c.send("".join(f"RCPT TO:<r{i}@example.test>\r\n" for i in range(1001)))
        replies = [c.reply()[0] for _ in range(1001)]
        assert replies[:1000] == ["250 2.1.5 Ok"] * 1000
        assert replies[1000] == "452 4.5.3 Error: too many recipients"
        c.cmd("DATA")
        qid = c.cmd("x\r\n.")[0].rsplit(" ", 1)[1]
        assert len(srv.read(qid).recipients) == 1000
    finally:
        srv.stop()


def test_hard_error_limit(tmp_path: Path) -> None:
    srv = start(tmp_path)
    try:
        c = begin(srv)
        c.send("BOGUS\r\n" * 21)
        replies = [c.reply()[0] for _ in range(21)]
        assert replies[:20] == ["500 5.5.2 Error: command not recognized"] * 20
        assert replies[20] == f"421 4.7.0 {HOST} Error: too many errors"
        assert c.closed()
        srv.wait_log(r"^too many errors after UNKNOWN from unknown\[127\.0\.0\.1\]$")
    finally:
        srv.stop()


def test_junk_command_limit(tmp_path: Path) -> None:
    srv = start(tmp_path, smtpd_junk_command_limit="5")
    try:
        c = begin(srv)
        c.send("NOOP\r\n" * 30)
        replies = [c.reply()[0] for _ in range(26)]
        assert replies[:25] == ["250 2.0.0 Ok"] * 25
        assert replies[25] == f"421 4.7.0 {HOST} Error: too many errors"
    finally:
        srv.stop()


def test_error_sleep_after_soft_limit(tmp_path: Path) -> None:
    """Beyond smtpd_soft_error_limit every reply waits smtpd_error_sleep_time."""
    srv = start(tmp_path, smtpd_soft_error_limit="2", smtpd_error_sleep_time="1s")
    try:
        c = begin(srv)
        c.cmd("BOGUS")
        c.cmd("BOGUS")
        t0 = time.monotonic()
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
        assert time.monotonic() - t0 >= 0.9
    finally:
        srv.stop()


def test_slowloris_is_cut_off_at_smtpd_timeout(tmp_path: Path) -> None:
    srv = start(tmp_path, smtpd_timeout="2s")
    try:
        c = begin(srv)
        sent = 0
        got = b""
        c.sock.settimeout(0.5)
        while sent < 60:
            try:
                c.sock.sendall(b"N" if sent == 0 else b"x")
            except OSError:
                break
            sent += 1
            try:
                data = c.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            got += data
            if not data or b"\r\n" in got:
                break
        assert got.startswith(f"421 4.4.2 {HOST} Error: timeout exceeded\r\n".encode())
        assert sent < 60
        srv.wait_log(r"^timeout after EHLO from unknown\[127\.0\.0\.1\]$")
    finally:
        srv.stop()


def test_connection_count_limit(tmp_path: Path) -> None:
    srv = start(tmp_path, smtpd_client_connection_count_limit="2")
    try:
        first = begin(srv, "127.0.0.2")
        second = begin(srv, "127.0.0.2")
        third = srv.client("127.0.0.2")
        assert third.reply() == [f"421 4.7.0 {HOST} Error: too many connections from 127.0.0.2"]
        assert third.closed()
        other = srv.client("127.0.0.3")
        assert other.reply()[0].startswith("220 ")
        srv.wait_log(r"^warning: Connection concurrency limit exceeded: 3 from unknown\[127\.0\.0\.2\]"
                     r" for service smtp$")
        first.cmd("QUIT")
        second.cmd("QUIT")
    finally:
        srv.stop()


def test_connection_rate_limit_and_exceptions(tmp_path: Path) -> None:
    srv = start(tmp_path, smtpd_client_connection_rate_limit="2",
                smtpd_client_event_limit_exceptions="127.0.0.4")
    try:
        for _ in range(2):
            c = begin(srv, "127.0.0.2")
            c.cmd("QUIT")
        c = srv.client("127.0.0.2")
        assert c.reply() == [f"421 4.7.0 {HOST} Error: too many connections from 127.0.0.2"]
        for _ in range(3):
            c = srv.client("127.0.0.4")
            assert c.reply()[0].startswith("220 ")
    finally:
        srv.stop()


def test_message_and_recipient_rate_limits(tmp_path: Path) -> None:
    srv = start(tmp_path, smtpd_client_message_rate_limit="1", smtpd_client_recipient_rate_limit="2")
    try:
        c = begin(srv, "127.0.0.2")
        assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
        assert c.cmd("RCPT TO:<b@example.test>") == ["250 2.1.5 Ok"]
        assert c.cmd("RCPT TO:<c@example.test>") == ["250 2.1.5 Ok"]
        assert c.cmd("RCPT TO:<d@example.test>") == ["450 4.7.1 Error: too many recipients from 127.0.0.2"]
        c.cmd("RSET")
        assert c.cmd("MAIL FROM:<a@example.org>") == ["450 4.7.1 Error: too much mail from 127.0.0.2"]
    finally:
        srv.stop()


def test_queue_minfree(tmp_path: Path) -> None:
    srv = start(tmp_path, queue_minfree=str(1 << 62))
    try:
        c = begin(srv)
        assert c.cmd("MAIL FROM:<a@example.org>") == ["452 4.3.1 Insufficient system storage"]
        srv.wait_log(r"^NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 452 4\.3\.1 Insufficient system"
                     r" storage; from=<a@example\.org> proto=ESMTP helo=<client\.example>$")
    finally:
        srv.stop()


SERVER_SCRIPT = textwrap.dedent("""
    import asyncio, socket, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from tests.smtpd.server_harness import SmtpdServer
    srv = SmtpdServer(Path(sys.argv[1]), {"message_size_limit": "0"})
    print(srv.port, flush=True)
    sys.stdin.readline()
    srv.stop()
""")


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(os.environ.get("MAILHORN_SKIP_HEAVY") == "1", reason="MAILHORN_SKIP_HEAVY=1")
def test_one_gigabyte_message_in_bounded_memory(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent.parent
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(tmp_path), str(root)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        f = sock.makefile("rb")

        def reply() -> bytes:
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            return line

        assert reply().startswith(b"220 ")
        sock.sendall(b"EHLO big.example\r\n")
        reply()
        sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        assert [reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        base = _rss_kb(proc.pid)
        peak = base
        line = b"x" * 998 + b"\r\n"
        block = b"Subject: big\r\n\r\n" + line * 1024
        total = 0
        while total < 1 << 30:
            sock.sendall(block)
            total += len(block)
            block = line * 1024
            if total % (64 << 20) < len(block):
                peak = max(peak, _rss_kb(proc.pid))
        sock.sendall(b".\r\n")
        sock.settimeout(600)
        final = reply()
        peak = max(peak, _rss_kb(proc.pid))
        assert final.startswith(b"250 2.0.0 Ok: queued as "), final
        assert (peak - base) < 64 * 1024, f"RSS grew by {(peak - base) // 1024} MB"
        sock.sendall(b"QUIT\r\n")
        reply()
        sock.close()
        f.close()
    finally:
        if proc.stdin is not None:
            proc.stdin.write("\n")
            proc.stdin.close()
        proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
        # Do not leave a gigabyte behind in the kept temporary directories.
        shutil.rmtree(tmp_path / "queue", ignore_errors=True)
