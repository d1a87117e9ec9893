"""The LMTP client delivering into a real Dovecot LMTP server (Debian dovecot-lmtpd).

Dovecot runs from a private dovecot.conf in a temporary directory (its own
base_dir, users in a passwd-file, mail owned by ``nobody``) and is stopped
with ``doveadm stop`` when the test ends: no Dovecot stays running.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.delivery.request import Action
from tests.conftest import require
from tests.delivery.smtp_helpers import make_config, make_request, run_agent

MESSAGE = (b"From: a@example.org\nTo: alice@example.test\nSubject: lmtp test\n"
           b"Message-ID: <lmtp-1@example.org>\n\nHello over LMTP.\n.dot line\n")


class Dovecot:
    def __init__(self) -> None:
        require(shutil.which("dovecot") is not None and os.path.exists("/usr/lib/dovecot/lmtp"),
                "Dovecot with LMTP (Debian packages dovecot-core, dovecot-lmtpd)")
        require(os.geteuid() == 0, "Dovecot as a private instance needs root here (mail owned by nobody)")
        self.dir = Path(tempfile.mkdtemp(prefix="mailhorn-dovecot-"))
        os.chmod(self.dir, 0o755)
        nobody = pwd.getpwnam("nobody")
        (self.dir / "run").mkdir()
        self.mail = self.dir / "mail"
        self.mail.mkdir()
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        users = "".join(f"{u}::{nobody.pw_uid}:{nobody.pw_gid}::{self.mail / u}::\n" for u in ("alice", "bob"))
        (self.dir / "users").write_text(users)
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(f"""base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:~/Maildir
auth_username_format = %n
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
""")
        # Output to files: the daemon keeps inherited pipes open, so a pipe would never see EOF.
        with open(self.dir / "start.log", "wb") as out:
            subprocess.run(["dovecot", "-c", str(self.conf)], check=True, stdout=out, stderr=out)
        self.socket = self.dir / "run" / "lmtp"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        with open(self.dir / "stop.log", "wb") as out:
            subprocess.run(["doveadm", "-c", str(self.conf), "stop"], stdout=out, stderr=out)
        pidfile = self.dir / "run" / "master.pid"
        deadline = time.monotonic() + 20
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)

    def maildir_messages(self, user: str) -> list[bytes]:
        new = self.mail / user / "Maildir" / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    d = Dovecot()
    yield d
    d.stop()


def test_lmtp_unix_delivers_and_refuses_per_recipient(tmp_path: Path, dovecot: Dovecot) -> None:
    config = make_config(tmp_path, lmtp_lhlo_name="client.example.test")
    request = make_request(f"unix:{dovecot.socket}", ["alice@example.test", "nosuchuser@example.test",
                                                      "bob@example.test"], MESSAGE, transport="lmtp")
    [statuses] = run_agent(config, [request], service="lmtp", lmtp=True)
    alice, nobody, bob = statuses
    assert alice.action is Action.DELIVERED and bob.action is Action.DELIVERED
    assert alice.dsn == "2.0.0"
    assert alice.text.startswith("250 2.0.0 <alice@example.test> ")
    assert bob.text.startswith("250 2.0.0 <bob@example.test> ")
    assert alice.relay == f"client.example.test[{dovecot.socket}]"
    assert nobody.action is Action.BOUNCED and nobody.dsn == "5.1.1"
    assert nobody.text == (f"host client.example.test[{dovecot.socket}] said: 550 5.1.1 <nosuchuser@example.test> "
                           "User doesn't exist: nosuchuser@example.test (in reply to RCPT TO command)")
    for user in ("alice", "bob"):
        [stored] = dovecot.maildir_messages(user)
        assert stored.endswith(b"\n\nHello over LMTP.\n.dot line\n")
        assert b"Subject: lmtp test\n" in stored
        assert stored.startswith(b"Return-Path: <sender@example.org>\n")


def test_lmtp_service_name_reads_lmtp_parameters(tmp_path: Path, dovecot: Dovecot) -> None:
    from mailhorn.delivery import lmtp

    config = make_config(tmp_path, lmtp_lhlo_name="lhlo.example.test", smtp_helo_name="wrong.example.test")
    agent = lmtp.make_agent(config, "dovecot")
    assert agent.settings.helo_name == "lhlo.example.test" and agent.settings.lmtp
    request = make_request(f"unix:{dovecot.socket}", ["alice@example.test"], MESSAGE, transport="dovecot")
    [statuses] = run_agent(config, [request], service="dovecot", lmtp=True)
    assert statuses[0].action is Action.DELIVERED
    assert len(dovecot.maildir_messages("alice")) == 1


def test_lmtp_socket_missing_defers(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = tmp_path / "no-such-socket"
    [statuses] = run_agent(config, [make_request(f"unix:{path}", ["alice@example.test"])], lmtp=True)
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.4.1"
    assert s.text == f"connect to client.example.test[{path}]: No such file or directory"


def test_lmtp_relative_unix_socket_is_under_queue_directory(tmp_path: Path, dovecot: Dovecot) -> None:
    """``lmtp:unix:private/dovecot-lmtp`` names a socket under queue_directory, as in Postfix:
    here the queue directory is Dovecot's run directory and the next hop ``unix:lmtp``."""
    config = make_config(tmp_path, queue_directory=str(dovecot.socket.parent))
    request = make_request("unix:lmtp", ["alice@example.test"], MESSAGE, transport="lmtp")
    [statuses] = run_agent(config, [request], service="lmtp", lmtp=True)
    assert statuses[0].action is Action.DELIVERED, statuses[0].text
    assert statuses[0].relay == f"client.example.test[{dovecot.socket}]"
    assert len(dovecot.maildir_messages("alice")) == 1
