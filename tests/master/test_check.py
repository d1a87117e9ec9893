"""``mailhorn check`` finds each planted mistake, and says nothing about a sound setup."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailhorn.master.check import run_check
from tests.conftest import run_mailhorn

ROOT = Path(__file__).resolve().parents[2]


def check(etc: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run([sys.executable, "-m", "mailhorn.cli.control", "-c", str(etc), "check"],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=60)


def setup(tmp_path: Path, main_cf: str = "", master_cf: str = "") -> Path:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n" + main_cf)
    (etc / "master.cf").write_text(master_cf or "smtp inet n - n - - smtpd\npickup unix n - y 60 1 pickup\n")
    return etc


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_sound_configuration(tmp_path: Path) -> None:
    etc = setup(tmp_path)
    cert, key = make_cert(etc, "good")
    (etc / "virtual").write_text("a@example.com b@example.com\n")
    assert run_mailhorn("postmap", "-c", str(etc), f"hash:{etc}/virtual").returncode == 0
    (etc / "main.cf").write_text((etc / "main.cf").read_text() + (
        f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
        f"virtual_alias_maps = hash:{etc}/virtual\n"))
    result = check(etc)
    assert (result.returncode, result.stderr) == (0, "")


def test_broken_main_cf(tmp_path: Path) -> None:
    etc = setup(tmp_path, "smtpd_banner = ${mail_name\n")
    result = check(etc)
    assert result.returncode == 1
    assert lines(result)[0].startswith(f"mailhorn/postfix-script: fatal: {etc}/main.cf, line 2")


def test_unknown_master_cf_command(tmp_path: Path) -> None:
    etc = setup(tmp_path, master_cf="smtp inet n - n - - smtpd\nfoo unix - - n - - frobnicate\n")
    result = check(etc)
    assert (result.returncode, lines(result)) == (1, [
        f'mailhorn/postfix-script: warning: {etc}/master.cf: line 2: unknown command "frobnicate" '
        "for service foo/unix; skipped"])


def test_unknown_port_name(tmp_path: Path) -> None:
    etc = setup(tmp_path, master_cf="nosuchport inet n - n - - smtpd\n")
    result = check(etc)
    assert result.returncode == 1
    assert lines(result) == [f"mailhorn/postfix-script: warning: {etc}/master.cf: line 1: "
                             "service nosuchport/inet: unknown service: nosuchport/tcp"]


def test_world_writable_queue(tmp_path: Path) -> None:
    etc = setup(tmp_path)
    queue = tmp_path / "queue"
    queue.mkdir()
    os.chmod(queue, 0o777)
    result = check(etc)
    assert result.returncode == 1
    assert f"mailhorn/postfix-script: fatal: {queue}: queue directory is world-writable" in lines(result)


def test_missing_tables(tmp_path: Path) -> None:
    etc = setup(tmp_path, "")
    (etc / "virtual").write_text("a@example.com b@example.com\n")
    (etc / "main.cf").write_text((etc / "main.cf").read_text() + (
        f"virtual_alias_maps = hash:{etc}/virtual\n"
        f"header_checks = regexp:{etc}/header_checks\n"
        f"smtpd_client_restrictions = check_client_access cidr:{etc}/clients, permit\n"))
    result = check(etc)
    assert result.returncode == 1
    assert lines(result) == [
        f"mailhorn/postfix-script: warning: virtual_alias_maps: hash:{etc}/virtual: "
        f"open database {etc}/virtual.sqlite: No such file or directory",
        f"mailhorn/postfix-script: warning: header_checks: regexp:{etc}/header_checks: "
        f"open {etc}/header_checks: No such file or directory",
        f"mailhorn/postfix-script: warning: smtpd_client_restrictions: cidr:{etc}/clients: "
        f"open {etc}/clients: No such file or directory",
    ]


def test_stale_index(tmp_path: Path) -> None:
    etc = setup(tmp_path, "")
    (etc / "virtual").write_text("a@example.com b@example.com\n")
    assert run_mailhorn("postmap", "-c", str(etc), f"hash:{etc}/virtual").returncode == 0
    later = os.stat(etc / "virtual.sqlite").st_mtime + 10
    os.utime(etc / "virtual", (later, later))
    (etc / "main.cf").write_text((etc / "main.cf").read_text() + f"virtual_alias_maps = hash:{etc}/virtual\n")
    result = check(etc)
    assert (result.returncode, lines(result)) == (1, [
        f"mailhorn/postfix-script: warning: virtual_alias_maps: database {etc}/virtual.sqlite "
        f"is older than source file {etc}/virtual"])


def test_certificate_problems(tmp_path: Path) -> None:
    etc = setup(tmp_path)
    cert, _key = make_cert(etc, "one")
    _other_cert, other_key = make_cert(etc, "two")
    (etc / "main.cf").write_text((etc / "main.cf").read_text() + (
        f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {other_key}\n"))
    (etc / "master.cf").write_text(
        "smtp inet n - n - - smtpd\n"
        "submission inet n - n - - smtpd\n"
        f"  -o smtpd_tls_cert_file={etc}/missing.crt\n  -o smtpd_tls_key_file={etc}/missing.key\n")
    result = check(etc)
    assert result.returncode == 1
    assert lines(result) == [
        f"mailhorn/postfix-script: warning: private key in {other_key} does not match the certificate in {cert}",
        f"mailhorn/postfix-script: warning: submission/inet: cannot open file {etc}/missing.crt: "
        "No such file or directory",
    ]


def test_unknown_table_type_is_fatal_with_file_and_line(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "master.cf").write_text("")
    (etc / "main.cf").write_text(
        f"queue_directory = {tmp_path}/queue\n"
        "virtual_alias_maps = foo:/etc/x\n"
        "smtpd_recipient_restrictions = permit_mynetworks,\n"
        "  check_policy_service inet:127.0.0.1:1, check_recipient_access bdb:/etc/y, reject\n")
    findings = run_check(str(etc))
    assert ("fatal", f"{etc}/main.cf, line 2: parameter virtual_alias_maps: unsupported dictionary type: foo") \
        in findings
    assert ("fatal", f"{etc}/main.cf, line 3: parameter smtpd_recipient_restrictions: "
                     "unsupported dictionary type: bdb") in findings
    assert not any("inet" in text for _, text in findings)
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    started = subprocess.run([sys.executable, "-m", "mailhorn", "-c", str(etc), "start"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert started.returncode == 1
    assert "unsupported dictionary type: foo" in started.stderr
    assert "starting the mail system" not in started.stderr


def test_proxy_permission_lists_are_not_opened(tmp_path: Path) -> None:
    """proxy_read_maps only lists what proxymap may open (seed 003 sets it); Postfix opens none of it."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "master.cf").write_text("")
    (etc / "main.cf").write_text(
        f"queue_directory = {tmp_path}/queue\n"
        "proxy_read_maps = $local_recipient_maps $mydestination $virtual_alias_maps\n")
    findings = run_check(str(etc))
    assert not any("proxy_read_maps" in text for _, text in findings), findings
