"""The pieces of the setup package: sd_notify, DKIM records, certificates, ports, templates."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from mailhorn.cli import demo
from mailhorn.config.load import load
from mailhorn.directory.url import DatabaseURL
from mailhorn.setup import dkim, dnsrecords, sdnotify, systemd, templates, tls
from tests.conftest import run_postfix


def test_sdnotify_sends_ready_to_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.ready(4242)
        assert server.recv(4096) == b"READY=1\nMAINPID=4242"
        assert sdnotify.reloading()
        assert server.recv(4096) == b"RELOADING=1"
        assert sdnotify.stopping()
        assert server.recv(4096) == b"STOPPING=1"


def test_sdnotify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"mailhorn-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.status("running\nfine")
        assert server.recv(4096) == b"STATUS=running fine"


def test_sdnotify_without_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not sdnotify.ready()


def test_dkim_record_is_the_key_openssl_derives(tmp_path: Path) -> None:
    key = tmp_path / "example.com.default.key"
    public = dkim.generate_key(str(key))
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    lines = dkim.record_lines("example.com", public)
    assert lines[0].startswith("default._domainkey.example.com. IN TXT")
    for line in lines:
        for chunk in line.split('"')[1::2]:
            assert len(chunk) <= dkim.MAX_STRING
    assert dkim.parse_record("\n".join(lines)) == public
    assert dkim.txt_value(public).startswith("v=DKIM1; k=rsa; p=MIIB")
    oracle = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                            capture_output=True, check=True)
    assert oracle.stdout == public


def test_dkim_parse_rejects_other_records() -> None:
    with pytest.raises(ValueError):
        dkim.parse_record('"v=spf1 mx -all"')
    with pytest.raises(ValueError):
        dkim.parse_record('"v=DKIM1; k=rsa; p="')


def test_dns_records_of_rfc_6186_and_friends() -> None:
    public = b"\x30\x00"
    text = "\n".join(dnsrecords.records("example.com", "mail.example.com", public))
    assert "example.com. IN MX 10 mail.example.com." in text
    assert 'example.com. IN TXT "v=spf1 mx -all"' in text
    assert '_dmarc.example.com. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"' in text
    for label, port in (("_submission._tcp", 587), ("_imap._tcp", 143), ("_imaps._tcp", 993),
                        ("_pop3._tcp", 110), ("_pop3s._tcp", 995), ("_submissions._tcp", 465)):
        assert f"{label}.example.com. IN SRV 0 1 {port} mail.example.com." in text


def test_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    tls.make_self_signed("mail.example.com", cert, key, extra_names=("localhost",))
    tls.check_pair(cert, key)
    assert tls.certificate_names(cert) == ["mail.example.com", "localhost"]
    assert os.stat(key).st_mode & 0o777 == 0o600
    other_cert, other_key = str(tmp_path / "c2.pem"), str(tmp_path / "k2.pem")
    tls.make_self_signed("other.example", other_cert, other_key)
    with pytest.raises(tls.TlsSetupError):
        tls.check_pair(cert, other_key)
    with pytest.raises(tls.TlsSetupError, match="no such file"):
        tls.check_pair(str(tmp_path / "missing.pem"), key)


def test_demo_ports_replace_busy_ones() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        ports = demo.choose_ports({demo.PORTS_ENV: f"smtp={taken},imap=0"})
    assert ports["smtp"] != taken
    assert ports["imap"] != 0
    assert len(set(ports.values())) == 4
    with pytest.raises(demo.DemoError):
        demo.choose_ports({demo.PORTS_ENV: "ftp=21"})


def test_demo_reachability(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    os.chmod(closed, 0o700)
    os.chmod(tmp_path, 0o755)
    stranger = 65534
    assert demo.can_reach(str(inner), os.geteuid(), os.getegid())
    if os.geteuid() == 0 or os.stat(closed).st_uid != stranger:
        assert not demo.can_reach(str(inner), stranger, stranger)


def test_systemd_unit() -> None:
    text = systemd.unit_text(["/opt/mailhorn/bin/mailhorn"], "/etc/mailhorn")
    assert "Type=notify\n" in text
    assert "ExecStart=/opt/mailhorn/bin/mailhorn -c /etc/mailhorn start-fg\n" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in text
    assert "WantedBy=multi-user.target" in text


@pytest.mark.parametrize("engine", ["sqlite", "mysql", "pgsql"])
def test_templates_read_back_as_configuration(tmp_path: Path, engine: str) -> None:
    if engine == "sqlite":
        url = DatabaseURL("sqlite", path=str(tmp_path / "d.sqlite"))
    else:
        url = DatabaseURL(engine, database="vmail", host="127.0.0.1", port=3307 if engine == "mysql" else 5432,
                          user="mail_admin", password="P4r0la")
    layout = templates.Layout(
        config_dir=str(tmp_path), queue_directory=str(tmp_path / "q"), mailbox_base=str(tmp_path / "m"),
        hostname="mail.example.com", domain="example.com", cert_file="/c.pem", key_file="/k.pem",
        database=url, uid=5000, gid=5000)
    (tmp_path / "main.cf").write_text(templates.main_cf(layout, "test"))
    (tmp_path / "master.cf").write_text(templates.master_cf(layout, "test"))
    files = templates.map_files(url)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    config = load(str(tmp_path))
    assert config.get("virtual_mailbox_domains") == f"{engine}:{tmp_path}/{engine}-virtual_domains.cf"
    assert config.get("virtual_uid_maps") == "static:5000"
    if engine == "mysql":
        text = files["mysql-virtual_mailboxes.cf"]
        assert "hosts = 127.0.0.1:3307\n" in text
        assert ("query = SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') "
                "FROM users WHERE email='%s'\n") in text
    if engine == "pgsql":
        assert "hosts = inet:127.0.0.1:5432\n" in files["pgsql-virtual_domains.cf"]
    # The real Postfix reads the same master.cf.
    done = run_postfix("postconf", "-c", str(tmp_path), "-M")
    assert done.returncode == 0, done.stderr
    services = {tuple(line.split()[:2]) for line in done.stdout.splitlines()}
    for name in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps"):
        assert (name, "inet") in services
