"""``mailhorn quickstart`` into temporary directories, with the directory in SQLite, MariaDB and PostgreSQL.

Each instance is started with its ports moved to free ones (``known_tcp_ports``,
as an administrator would), accepts mail for the new user on port 25's
service, lets the user log in on submission with the printed password, and
refuses unknown users; the printed DKIM record is the generated key.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import load
from mailhorn.master import control
from mailhorn.setup import dkim
from tests.conftest import require
from tests.helpers.ports import reserve_port
from tests.master.util import gone, wait_for

SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                          env=env)


class QuickInstance:
    """A quickstart run under a fresh world-traversable directory (the services may run as mail_owner)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mailhorn-quickstart-"))
        os.chmod(self.base, 0o755)
        self.etc = self.base / "etc"
        self.ports: dict[str, int] = {}

    def quickstart(self, address: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_module("mailhorn.cli.quickstart", address, "--dir", str(self.etc), "--queue-directory",
                          str(self.base / "queue"), "--mailbox-base", str(self.base / "vmail"), *args)

    def start(self) -> None:
        self.ports = {name: reserve_port() for name in SERVICES}
        known = ", ".join(f"{name}={port}" for name, port in self.ports.items())
        done = run_module("mailhorn", "postconf", "-c", str(self.etc), "-e", f"known_tcp_ports = {known}",
                          "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4", "smtpd_peername_lookup = no",
                          "master_drain_time = 2s")
        assert done.returncode == 0, done.stderr
        started = run_module("mailhorn.cli.control", "-c", str(self.etc), "start")
        assert started.returncode == 0, started.stderr

    def master_pid(self) -> int | None:
        return control.running_pid(load(str(self.etc)))

    def stop(self) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        done = run_module("mailhorn.cli.control", "-c", str(self.etc), "stop")
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: gone(pid), 30)

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def quick() -> Iterator[QuickInstance]:
    instance = QuickInstance()
    try:
        yield instance
    finally:
        instance.remove()


def printed_password(output: str) -> str:
    match = re.search(r"^Password: (\S+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def printed_dkim_record(output: str) -> str:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("default._domainkey."))
    record = [lines[start]]
    if lines[start].endswith("("):
        for line in lines[start + 1:]:
            record.append(line)
            if line.rstrip().endswith(")"):
                break
    return "\n".join(record)


def check_instance(quick: QuickInstance, output: str, address: str, domain: str) -> None:
    """DKIM record = key; the instance starts, accepts mail for the user, lets the user log in."""
    key_file = quick.etc / "dkim" / f"{domain}.default.key"
    record = printed_dkim_record(output)
    assert record.startswith(f"default._domainkey.{domain}. IN TXT")
    assert dkim.parse_record(record) == dkim.public_der(key_file.read_bytes())
    oracle = subprocess.run(["openssl", "rsa", "-in", str(key_file), "-pubout", "-outform", "DER"],
                            capture_output=True, check=True)
    assert dkim.parse_record(record) == oracle.stdout

    password = printed_password(output)
    check = run_module("mailhorn.cli.control", "-c", str(quick.etc), "check")
    assert check.returncode == 0, check.stderr
    quick.start()

    with smtplib.SMTP("127.0.0.1", quick.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.has_extn("starttls")
        smtp.mail("someone@example.org")
        code, text = smtp.rcpt(f"nobody-here@{domain}")
        assert code == 550, text
        assert smtp.rcpt(address)[0] == 250
        code, text = smtp.data(f"From: someone@example.org\r\nTo: {address}\r\nSubject: hello\r\n\r\nhi\r\n")
        assert code == 250 and b"queued as" in text, text
        smtp.rset()
        smtp.mail("someone@example.org")
        assert smtp.rcpt(f"postmaster@{domain}")[0] == 250

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", quick.ports["submission"], timeout=30) as sub:
        sub.ehlo("client.example.org")
        assert not sub.has_extn("auth")
        sub.starttls(context=context)
        sub.ehlo("client.example.org")
        code, _ = sub.login(address, password)
        assert code == 235
        sub.sendmail(address, ["someone@elsewhere.example"], f"From: {address}\r\nSubject: out\r\n\r\nbye\r\n")
    cert = ssl.get_server_certificate(("127.0.0.1", quick.ports["submissions"]))
    assert "BEGIN CERTIFICATE" in cert


def test_quickstart_sqlite(quick: QuickInstance) -> None:
    done = quick.quickstart("Alice@Example.COM")
    assert done.returncode == 0, done.stderr
    assert "User:     alice@example.com" in done.stdout
    for name in ("main.cf", "master.cf", "sqlite-virtual_domains.cf", "directory.sqlite", "mailhorn.service",
                 "tls/cert.pem", "tls/key.pem"):
        assert (quick.etc / name).exists(), name
    assert "Type=notify" in (quick.etc / "mailhorn.service").read_text()
    assert "systemctl enable --now mailhorn.service" in done.stdout
    check_instance(quick, done.stdout, "alice@example.com", "example.com")


def test_quickstart_never_overwrites_without_force(quick: QuickInstance) -> None:
    first = quick.quickstart("bob@example.net", "--password", "s3cret-Pass")
    assert first.returncode == 0, first.stderr
    assert printed_password(first.stdout) == "s3cret-Pass"
    main_cf = (quick.etc / "main.cf").read_text()
    key = (quick.etc / "dkim/example.net.default.key").read_bytes()
    (quick.etc / "main.cf").write_text(main_cf + "# edited by hand\n")
    again = quick.quickstart("bob@example.net")
    assert again.returncode == 1
    assert f"{quick.etc}/main.cf exists: not replacing an existing configuration (use --force)" in again.stderr
    assert (quick.etc / "main.cf").read_text().endswith("# edited by hand\n")
    forced = quick.quickstart("bob@example.net", "--force", "--hostname", "mx.example.net")
    assert forced.returncode == 0, forced.stderr
    assert "myhostname = mx.example.net\n" in (quick.etc / "main.cf").read_text()
    # The user keeps its password; the DKIM key (maybe published already) stays.
    assert "Password: unchanged" in forced.stdout
    assert (quick.etc / "dkim/example.net.default.key").read_bytes() == key
    bad = quick.quickstart("not-an-address")
    assert bad.returncode == 1
    assert "mailhorn-quickstart: fatal:" in bad.stderr


def test_quickstart_with_given_certificate(quick: QuickInstance, tmp_path: Path) -> None:
    from mailhorn.setup import tls

    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    other_cert, other_key = str(tmp_path / "c2.pem"), str(tmp_path / "k2.pem")
    tls.make_self_signed("mail.example.org", cert, key)
    tls.make_self_signed("other.example.org", other_cert, other_key)
    bad = quick.quickstart("carol@example.org", "--cert", cert, "--key", other_key)
    assert bad.returncode == 1
    assert "do not load together" in bad.stderr
    done = quick.quickstart("carol@example.org", "--cert", cert, "--key", key)
    assert done.returncode == 0, done.stderr
    text = (quick.etc / "main.cf").read_text()
    assert f"smtpd_tls_cert_file = {cert}\n" in text
    assert not (quick.etc / "tls/cert.pem").exists()


def _mysql_database(server: dict[str, object]) -> Iterator[str]:
    import pymysql

    name = f"mh_qs_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host=str(server["host"]), port=int(str(server["port"])), user=str(server["user"]),
                           password=str(server["password"]), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def _pgsql_database(server: dict[str, object]) -> Iterator[str]:
    import psycopg

    name = f"mh_qs_{uuid.uuid4().hex[:12]}"
    conn = psycopg.connect(host=str(server["host"]), port=int(str(server["port"])), user=str(server["user"]),
                           dbname="postgres", autocommit=True)
    try:
        conn.execute(f"CREATE DATABASE {name}")
        yield name
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.mark.mysql
def test_quickstart_mariadb(quick: QuickInstance, mysql_server: dict[str, object]) -> None:
    for name in _mysql_database(mysql_server):
        url = f"mysql://{mysql_server['user']}@{mysql_server['host']}:{mysql_server['port']}/{name}"
        done = quick.quickstart("dora@example.org", "--db", url)
        assert done.returncode == 0, done.stderr
        cf = (quick.etc / "mysql-virtual_mailboxes.cf").read_text()
        assert f"dbname = {name}\n" in cf
        assert "SUBSTRING_INDEX" in cf
        assert "virtual_mailbox_domains = mysql:" in (quick.etc / "main.cf").read_text()
        check_instance(quick, done.stdout, "dora@example.org", "example.org")
        quick.stop()


@pytest.mark.pgsql
def test_quickstart_postgresql(quick: QuickInstance, pgsql_server: dict[str, object]) -> None:
    for name in _pgsql_database(pgsql_server):
        url = f"postgresql://{pgsql_server['user']}@{pgsql_server['host']}:{pgsql_server['port']}/{name}"
        done = quick.quickstart("erin@example.org", "--db", url)
        assert done.returncode == 0, done.stderr
        cf = (quick.etc / "pgsql-virtual_mailboxes.cf").read_text()
        assert f"dbname = {name}\n" in cf
        assert "split_part" in cf
        check_instance(quick, done.stdout, "erin@example.org", "example.org")
        quick.stop()
