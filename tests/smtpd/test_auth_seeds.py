"""The seeds' users log in over SMTP AUTH on submission: seed 003's MariaDB row made
with ``ENCRYPT('parolamail')`` and seed 004's system account made with useradd
and chpasswd (``/etc/shadow`` through ``unix:shadow.byname``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.auth.test_passdb_seeds import cf, seed003_db, system_user  # noqa: F401  (fixtures)
from tests.conftest import require
from tests.smtpd.test_auth import ehlo, greeted, plain, service, starttls

__all__ = ["seed003_db", "system_user"]


@pytest.mark.mysql
def test_seed003_encrypt_user_submits(seed003_db: str, tmp_path: Path) -> None:  # noqa: F811
    passwords = cf(tmp_path / "mysql-virtual_passwords.cf", seed003_db,
                   "SELECT password FROM users WHERE email='%s'")
    srv = service(tmp_path, {"passdb_maps": passwords, "broken_sasl_auth_clients": "yes"})
    try:
        c = greeted(srv)
        ehlo(c)
        starttls(c)
        keywords = ehlo(c)
        assert "AUTH PLAIN LOGIN" in keywords and "AUTH=PLAIN LOGIN" in keywords
        assert c.cmd("AUTH PLAIN " + plain("dexter@d3xt3r01.tk", "Parolamail")) == \
            ["535 5.7.8 Error: authentication failed: authentication failure"]
        assert c.cmd("AUTH PLAIN " + plain("dexter@d3xt3r01.tk", "parolamail")) == \
            ["235 2.7.0 Authentication successful"]
        assert c.cmd("MAIL FROM:<dexter@d3xt3r01.tk>") == ["250 2.1.0 Ok"]
        assert c.cmd("RCPT TO:<friend@remote.example>") == ["250 2.1.5 Ok"]
    finally:
        srv.stop()


def test_seed004_system_user_submits_with_swaks(system_user: tuple[str, Path], tmp_path: Path) -> None:  # noqa: F811
    name, _home = system_user
    swaks = shutil.which("swaks")
    require(swaks is not None, "swaks is not installed (Debian package swaks)")
    assert swaks is not None
    srv = service(tmp_path, {"passdb_maps": "unix:shadow.byname", "myorigin": "example.com"})
    try:
        done = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(srv.port), "--tls",
                               "--auth", "LOGIN", "--auth-user", name, "--auth-password", "suporte",
                               "--from", f"{name}@example.com", "--to", "friend@remote.example",
                               "--timeout", "15"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        (qid,) = srv.queued()
        srv.wait_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\], sasl_method=LOGIN, sasl_username={name}$")
    finally:
        srv.stop()
