"""Real submission clients log in over STARTTLS: swaks (Debian ``swaks``) with
``--auth PLAIN``, ``LOGIN`` and ``CRAM-MD5``, and msmtp (Debian ``msmtp``).

The service is the seeds' submission entry: ``-o smtpd_tls_security_level=encrypt
-o smtpd_sasl_auth_enable=yes -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.smtpd.server_harness import SmtpdServer
from tests.smtpd.test_auth import PASSWORD, USER, service

REMOTE = "friend@remote.example"


@pytest.fixture
def submission(tmp_path: Path) -> Iterator[SmtpdServer]:
    srv = service(tmp_path, {"auth_mechanisms": "plain login cram-md5",
                             "smtpd_sasl_authenticated_header": "yes"})
    yield srv
    srv.stop()


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("swaks")
    require(path is not None, "swaks is not installed (Debian package swaks)")
    assert path is not None
    return subprocess.run([path, "--server", "127.0.0.1", "--port", str(port), "--ehlo", "laptop.example",
                           "--from", USER, "--to", REMOTE, "--timeout", "15", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_submits_with_auth_over_starttls(submission: SmtpdServer, mechanism: str) -> None:
    done = swaks(submission.port, "--tls", "--auth", mechanism, "--auth-user", USER, "--auth-password", PASSWORD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<~  250-AUTH PLAIN LOGIN CRAM-MD5" in done.stdout
    assert "<~  235 2.7.0 Authentication successful" in done.stdout
    (qid,) = submission.queued()
    assert "\t(Authenticated sender: alice@example.test)\n" in submission.content(qid).decode()
    submission.wait_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\], sasl_method={mechanism}, "
                        r"sasl_username=alice@example\.test$")


def test_swaks_without_tls_is_told_to_starttls(submission: SmtpdServer) -> None:
    done = swaks(submission.port, "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD)
    assert done.returncode != 0
    assert "530 5.7.0 Must issue a STARTTLS command first" in done.stdout
    assert submission.queued() == []


def test_swaks_wrong_password(submission: SmtpdServer) -> None:
    done = swaks(submission.port, "--tls", "--auth", "LOGIN", "--auth-user", USER, "--auth-password", "nope")
    assert done.returncode != 0
    assert "<~* 535 5.7.8 Error: authentication failed: authentication failure" in done.stdout
    assert submission.queued() == []


@pytest.mark.parametrize("method", ["plain", "login", "on"])
def test_msmtp_submits_with_auth(submission: SmtpdServer, tmp_path: Path, method: str) -> None:
    path = shutil.which("msmtp")
    require(path is not None, "msmtp is not installed (Debian package msmtp)")
    assert path is not None
    conf = tmp_path / f"msmtprc-{method}"
    conf.write_text(f"account default\nhost 127.0.0.1\nport {submission.port}\ndomain laptop.example\n"
                    "tls on\ntls_starttls on\ntls_certcheck off\n"
                    f"auth {method}\nuser {USER}\npassword {PASSWORD}\nfrom {USER}\n")
    os.chmod(conf, 0o600)
    message = f"From: {USER}\nTo: {REMOTE}\nSubject: msmtp\n\nhello from msmtp\n"
    done = subprocess.run([path, "-C", str(conf), REMOTE], input=message, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    (qid,) = submission.queued()
    content = submission.content(qid).decode()
    assert "hello from msmtp" in content and " with ESMTPSA id " in content
    submission.wait_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\], sasl_method=(PLAIN|LOGIN), "
                        r"sasl_username=alice@example\.test$")
