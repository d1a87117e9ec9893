"""pop3d with real peers: Dovecot on the same Maildir, getmail6 and fetchmail, and a 20 MB message."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.imap import dovecot
from tests.pop3.harness import Pop3Server

MESSAGES = [
    b"From: a@example.test\nSubject: one\n\nline1\n.dot\nend\n",
    b"From: b@example.test\r\nSubject: two\r\n\r\nbody\r\n",
    b"From: c@example.test\nSubject: three\n\n..two dots\n",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Pop3Server]:
    srv = Pop3Server(tmp_path, {"alice": "secret"})
    try:
        yield srv
    finally:
        srv.stop()


def _dovecot_pop3(maildir: Path, script: bytes, base: Path) -> bytes:
    """Dovecot's own pop3 (pre-authenticated, ``doveadm exec pop3``) on ``maildir``."""
    assert dovecot.DOVEADM is not None
    if os.geteuid() == 0:
        user = "nobody"
        entry = pwd.getpwnam(user)
        for dirpath, _dirs, files in os.walk(maildir):
            os.chown(dirpath, entry.pw_uid, entry.pw_gid)
            for name in files:
                os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)
        ids = f"mail_uid = {entry.pw_uid}\nmail_gid = {entry.pw_gid}\n"
    else:
        user = pwd.getpwuid(os.getuid()).pw_name
        ids = ""
    base.mkdir(exist_ok=True)
    os.chmod(base, 0o755)
    config = base / "dovecot.conf"
    config.write_text(f"base_dir = {base}/run\nlog_path = /dev/null\nmail_location = maildir:{maildir}\n"
                      f"mail_home = {base}/home\nssl = no\n{ids}first_valid_uid = 1\nfirst_valid_gid = 1\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": user, "HOME": str(base), "LANG": "C.UTF-8"}
    proc = subprocess.run([dovecot.DOVEADM, "-c", str(config), "exec", "pop3"], input=script,
                          capture_output=True, env=env, cwd=base, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _mailhorn_pop3(port: int, script: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\n" + script)
        out = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out += data
    # Drop the greeting and the two login replies: what follows is the TRANSACTION state.
    return out.split(b"\r\n", 3)[3]


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A mail root Dovecot's mail user (``nobody`` under root) can reach."""
    root = Path(tempfile.mkdtemp(prefix="mailhorn-pop3-dovecot-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_transaction_replies_equal_dovecots(shared_root: Path, tmp_path: Path) -> None:
    require(dovecot.available() and os.path.exists("/usr/lib/dovecot/pop3"),
            "Dovecot's pop3 is not installed (Debian dovecot-pop3d)")
    server = Pop3Server(tmp_path, {"alice": "secret"}, mail_root=shared_root)
    try:
        _compare_with_dovecot(server, shared_root)
    finally:
        server.stop()


def _compare_with_dovecot(server: Pop3Server, shared_root: Path) -> None:
    for message in MESSAGES:
        server.deliver("alice", message)
    script = (b"CAPA\r\nSTAT\r\nLIST\r\nLIST 2\r\nLIST 9\r\nLIST x\r\nLIST 1 2\r\nUIDL\r\nUIDL 3\r\nTOP 1 1\r\n"
              b"TOP 3 0\r\nTOP 1\r\nTOP 1 -1\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\nDELE 1\r\nDELE 1\r\nRETR 1\r\n"
              b"STAT\r\nNOOP\r\nRSET\r\nSTAT\r\nFOO\r\nDELE 0\r\nDELE 2\r\nQUIT\r\n")
    # Dovecot first, without QUIT (no UPDATE): it records the UIDs; both servers then answer alike.
    theirs = _dovecot_pop3(server.maildirs["alice"], script.rsplit(b"QUIT\r\n", 1)[0], shared_root / "dovecot")
    ours = _mailhorn_pop3(server.port, script)
    assert ours == theirs + b"+OK Logging out, messages deleted.\r\n"
    # Dovecot sees the expunge made at our QUIT and keeps the other UIDs.
    after = _dovecot_pop3(server.maildirs["alice"], b"UIDL\r\n", shared_root / "dovecot")
    uidls = [line.split(b" ")[1] for line in theirs.split(b"+OK\r\n", 2)[2].split(b".\r\n")[0].splitlines()]
    assert after == b"+OK\r\n1 " + uidls[0] + b"\r\n2 " + uidls[2] + b"\r\n.\r\n"


def test_dovecot_sees_expunges_and_seen_flags(tmp_path: Path) -> None:
    require(dovecot.available(), "Dovecot's doveadm and imap are not installed (Debian dovecot-imapd)")
    imap = dovecot.DovecotImap()
    server = Pop3Server(tmp_path, {"alice": "secret"}, mail_root=imap.base)
    try:
        # Dovecot's imap reads the very Maildir pop3d serves.
        imap.config.write_text(imap.config.read_text().replace(str(imap.maildir), str(server.maildirs["alice"])))
        for message in MESSAGES:
            server.deliver("alice", message)
        _mailhorn_pop3(server.port, b"RETR 1\r\nDELE 2\r\nQUIT\r\n")
        theirs = imap.session([b"a SELECT INBOX", b"b FETCH 1:* (UID FLAGS)"])
        assert b"* 2 EXISTS" in theirs
        assert b"* 1 FETCH (UID 1 FLAGS (\\Seen))" in theirs
        assert re.search(rb"\* 2 FETCH \(UID 3 FLAGS \((\\Recent)?\)\)", theirs)
    finally:
        server.stop()
        imap.close()


def test_retr_of_a_20mb_message_in_bounded_memory(server: Pop3Server) -> None:
    line = b"x" * 76 + b"\n"
    body = b"From: big@example.test\nSubject: big\n\n" + line * (20 * 1024 * 1024 // len(line))
    server.deliver("alice", body)
    del body
    expected = 37 + (20 * 1024 * 1024 // len(line)) * 78 + 3
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n")
            received = 0
            tail = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(data)
                tail = (tail + data)[-64:]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tail.endswith(b"x\r\n.\r\n+OK Logging out.\r\n")
    assert received > 20 * 1024 * 1024 and received >= expected
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while sending 20 MB"


def test_getmail6_fetches_and_deletes(server: Pop3Server, tmp_path: Path, shared_root: Path) -> None:
    getmail = shutil.which("getmail")
    require(getmail is not None, "getmail6 is not installed (Debian getmail6)")
    assert getmail is not None
    for message in MESSAGES:
        server.deliver("alice", message)
    dest = shared_root / "fetched" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True)
    as_user = ""
    if os.geteuid() == 0:  # getmail refuses to deliver as root: deliver as nobody
        nobody = pwd.getpwnam("nobody")
        for path in (dest.parent, dest, *(dest / sub for sub in ("cur", "new", "tmp"))):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        as_user = "user = nobody\n"
    rc = tmp_path / "getmailrc"
    rc.write_text(f"[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {server.port}\n"
                  "username = alice\npassword = secret\n\n"
                  f"[destination]\ntype = Maildir\npath = {dest}/\n{as_user}\n"
                  "[options]\ndelete = true\nread_all = true\nverbose = 0\n")
    done = subprocess.run([getmail, "--getmaildir", str(tmp_path), "--rcfile", str(rc)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    fetched = sorted((dest / "new").iterdir())
    assert len(fetched) == 3
    bodies = sorted(p.read_bytes() for p in fetched)
    assert any(b"..two dots" in b and b"\n..two dots\n" in b for b in bodies)
    assert server.files("alice") == []
    server.wait_log(r"^pop3\(alice\).*: Disconnected: Logged out top=0/0, retr=3/\d+, del=3/3, size=")


def test_fetchmail_fetches_and_deletes(server: Pop3Server, tmp_path: Path) -> None:
    fetchmail = shutil.which("fetchmail")
    require(fetchmail is not None, "fetchmail is not installed (Debian fetchmail)")
    assert fetchmail is not None
    for message in MESSAGES:
        server.deliver("alice", message)
    mbox = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"poll 127.0.0.1 service {server.port} protocol pop3 auth password\n"
                  f"  user alice password secret is root here\n"
                  f"  sslproto '' no keep fetchall\n"
                  f"  mda \"/bin/sh -c 'cat >> {mbox}'\"\n")
    rc.chmod(0o600)
    env = {**os.environ, "FETCHMAILHOME": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([fetchmail, "-f", str(rc), "--nodetach", "--nosyslog", "-v"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    content = mbox.read_bytes()
    assert content.count(b"Subject: ") == 3 and b"\n.dot\n" in content and b"\n..two dots\n" in content
    assert server.files("alice") == []
