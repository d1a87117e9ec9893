"""virtual(8) delivery as seed 003 sets it up: MariaDB maps, static uid/gid, Maildir paths
from the CONCAT query, VDA quotas in maildirsize read back by Dovecot's doveadm."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.delivery.request import Action, RecipientStatus
from mailhorn.delivery.virtual import make_agent
from mailhorn.queue.store import QueueStore
from tests.conftest import require
from tests.delivery.util import MESSAGE, make_config, make_store, queue_message, request_for

pymysql = pytest.importorskip("pymysql")

VMAIL = 5000
OVER_QUOTA = '"The user you are trying to reach is over quota."'


@pytest.fixture
def seed_db(mysql_server: dict[str, object]) -> Iterator[str]:
    """Seed 003's users table with dexter@d3xt3r01.tk and its 10 MB quota."""
    conn = pymysql.connect(host=str(mysql_server["host"]), port=int(str(mysql_server["port"])),
                           user="root", password="", autocommit=True)
    name = f"mailhorn_virtual_{os.getpid()}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
        cur.execute(f"USE {name}")
        cur.execute("CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL,"
                    " quota INT(10) DEFAULT '10485760', PRIMARY KEY (email))")
        cur.execute("INSERT INTO users (email, password, quota) VALUES"
                    " ('dexter@d3xt3r01.tk', 'x', 10485760), ('small@d3xt3r01.tk', 'x', 0)")
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture
def vmail() -> Iterator[Path]:
    """``/home/vmail`` stand-in: a temp directory owned by the static uid when root."""
    base = Path(tempfile.mkdtemp(prefix="mailhorn-vmail-"))
    os.chmod(base, 0o755)
    root = base / "vmail"
    root.mkdir()
    if os.geteuid() == 0:
        os.chown(root, VMAIL, VMAIL)
    try:
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def seed_config(tmp_path: Path, db: str, vmail: Path, extra: str = "") -> Config:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    login = f"user = root\npassword =\ndbname = {db}\nhosts = 127.0.0.1\n"
    (etc / "mysql-virtual_mailboxes.cf").write_text(
        login + "query = SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/')"
        " FROM users WHERE email='%s'\n")
    (etc / "mysql-virtual_mailbox_limit_maps.cf").write_text(
        login + "query = SELECT quota FROM users WHERE email='%s'\n")
    uid = VMAIL if os.geteuid() == 0 else os.getuid()
    gid = VMAIL if os.geteuid() == 0 else os.getgid()
    return make_config(tmp_path, (
        "mailbox_size_limit = 1048576000\n"
        "virtual_mailbox_limit = 1050576000\n"
        "message_size_limit = 1048576000\n"
        f"virtual_mailbox_maps = proxy:mysql:{etc}/mysql-virtual_mailboxes.cf\n"
        f"virtual_mailbox_base = {vmail}\n"
        f"virtual_uid_maps = static:{uid}\n"
        f"virtual_gid_maps = static:{gid}\n"
        "virtual_minimum_uid = 100\n"
        "virtual_create_maildirsize = yes\n"
        "virtual_mailbox_extended = yes\n"
        f"virtual_mailbox_limit_maps = proxy:mysql:{etc}/mysql-virtual_mailbox_limit_maps.cf\n"
        "virtual_mailbox_limit_override = yes\n"
        f"virtual_maildir_limit_message = {OVER_QUOTA}\n"
        "virtual_overquota_bounce = yes\n"
        "recipient_delimiter = +\n" + extra))


def deliver(config: Config, store: QueueStore, address: str, content: bytes = MESSAGE) -> RecipientStatus:
    qid = queue_message(store, [(address, address)], content=content)
    [status] = asyncio.run(make_agent(config, "virtual").deliver(request_for(store, qid, "virtual")))
    return status


def messages(maildir: Path) -> list[str]:
    return sorted(os.listdir(maildir / "new")) + sorted(os.listdir(maildir / "cur"))


def doveadm(maildir: Path, *args: str) -> str:
    """Run doveadm on the Maildir with a private configuration (no daemon)."""
    require(shutil.which("doveadm") is not None, "Dovecot's doveadm is not installed (dovecot-core)")
    run = Path(tempfile.mkdtemp(prefix="mailhorn-dovecot-"))
    os.chmod(run, 0o755)
    uid = os.stat(maildir).st_uid
    gid = os.stat(maildir).st_gid
    conf = run / "dovecot.conf"
    conf.write_text(
        f"base_dir = {run}/run\nlog_path = /dev/stderr\nmail_location = maildir:{maildir}\n"
        f"mail_home = {maildir}\nssl = no\nmail_uid = {uid}\nmail_gid = {gid}\n"
        "first_valid_uid = 1\nfirst_valid_gid = 1\nmail_plugins = quota\n"
        "plugin {\n  quota = maildir:User quota\n}\n")
    try:
        proc = subprocess.run(["doveadm", "-c", str(conf), *args], capture_output=True, timeout=60,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": "dexter",
                                   "HOME": str(maildir), "LANG": "C.UTF-8"}, cwd=run)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


@pytest.mark.mysql
def test_seed_003_maildir_path_quota_and_overquota_bounce(tmp_path: Path, seed_db: str, vmail: Path) -> None:
    config = seed_config(tmp_path, seed_db, vmail)
    store = make_store(config)
    status = deliver(config, store, "dexter@d3xt3r01.tk")
    assert (status.action, status.dsn, status.text, status.relay) == (
        Action.DELIVERED, "2.0.0", "delivered to maildir", "virtual")
    maildir = vmail / "d3xt3r01.tk" / "dexter"
    [first] = messages(maildir)
    data = (maildir / "new" / first).read_bytes()
    assert data == (b"Return-Path: <sender@example.org>\nX-Original-To: dexter@d3xt3r01.tk\n"
                    b"Delivered-To: dexter@d3xt3r01.tk\n" + MESSAGE)
    if os.geteuid() == 0:
        assert os.stat(maildir / "new" / first).st_uid == VMAIL
        assert os.stat(maildir).st_gid == VMAIL
    header = (maildir / "maildirsize").read_text().split("\n")[0]
    assert header == "10485760S"

    # A big message that still fits, then one that would pass the 10 MB quota.
    big = MESSAGE + b"x" * 9_999 + b"\n" * 1 + (b"y" * 999 + b"\n") * 10_000
    assert deliver(config, store, "dexter@d3xt3r01.tk", big).action is Action.DELIVERED
    before = {name: (maildir / "new" / name).stat().st_mtime_ns for name in os.listdir(maildir / "new")}
    used = sum(int(line.split()[0]) for line in (maildir / "maildirsize").read_text().split("\n")[1:] if line)
    assert used < 10485760
    too_much = MESSAGE + (b"z" * 999 + b"\n") * 600
    over = deliver(config, store, "dexter@d3xt3r01.tk", too_much)
    assert (over.action, over.dsn, over.text) == (Action.BOUNCED, "5.2.2", OVER_QUOTA)
    assert "The user you are trying to reach is over quota." in over.text
    after = {name: (maildir / "new" / name).stat().st_mtime_ns for name in os.listdir(maildir / "new")}
    assert after == before and os.listdir(maildir / "tmp") == []

    # Dovecot reads the mailbox and the quota as written.
    fetched = doveadm(maildir, "-f", "tab", "fetch", "uid hdr.delivered-to size.physical", "mailbox", "INBOX", "all")
    rows = [line.split("\t") for line in fetched.strip().split("\n")[1:]]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(row[1] == "dexter@d3xt3r01.tk" for row in rows)
    quota = doveadm(maildir, "-f", "tab", "quota", "get")
    storage = [line.split("\t") for line in quota.strip().split("\n") if "STORAGE" in line][0]
    head = quota.strip().split("\n")[0].split("\t")
    values = dict(zip(head, storage))
    assert values["Limit"] == str(10485760 // 1024)
    assert int(values["Value"]) == -(-used // 1024)  # Dovecot shows KiB rounded up


@pytest.mark.mysql
def test_overquota_defers_without_bounce(tmp_path: Path, seed_db: str, vmail: Path) -> None:
    config = seed_config(tmp_path, seed_db, vmail, "virtual_overquota_bounce = no\n"
                         "virtual_mailbox_limit_override = no\nvirtual_mailbox_limit = 1000\n")
    store = make_store(config)
    status = deliver(config, store, "dexter@d3xt3r01.tk", MESSAGE + b"a" * 2000 + b"\n")
    assert (status.action, status.dsn, status.text) == (Action.DEFERRED, "4.2.2", OVER_QUOTA)
    assert messages(vmail / "d3xt3r01.tk" / "dexter") == []


@pytest.mark.mysql
def test_extension_unknown_and_zero_quota(tmp_path: Path, seed_db: str, vmail: Path) -> None:
    config = seed_config(tmp_path, seed_db, vmail)
    store = make_store(config)
    plus = deliver(config, store, "dexter+lists@d3xt3r01.tk")
    assert plus.action is Action.DELIVERED, plus
    data = (vmail / "d3xt3r01.tk" / "dexter" / "new" / messages(vmail / "d3xt3r01.tk" / "dexter")[0]).read_bytes()
    assert b"\nDelivered-To: dexter+lists@d3xt3r01.tk\n" in data
    unknown = deliver(config, store, "nobody@d3xt3r01.tk")
    assert (unknown.action, unknown.dsn, unknown.text) == (
        Action.BOUNCED, "5.1.1", "User unknown in virtual mailbox table")
    zero = deliver(config, store, "small@d3xt3r01.tk", MESSAGE + b"b" * 100_000 + b"\n")
    assert zero.action is Action.DELIVERED, zero


@pytest.mark.mysql
def test_loop_and_bad_uid(tmp_path: Path, seed_db: str, vmail: Path) -> None:
    config = seed_config(tmp_path, seed_db, vmail)
    store = make_store(config)
    looped = deliver(config, store, "dexter@d3xt3r01.tk", b"Delivered-To: dexter@d3xt3r01.tk\n" + MESSAGE)
    assert (looped.action, looped.dsn, looped.text) == (
        Action.BOUNCED, "5.4.6", "mail forwarding loop for dexter@d3xt3r01.tk")
    low = make_config(tmp_path, (tmp_path / "etc" / "main.cf").read_text().split("\n", 3)[3]
                      + "virtual_uid_maps = static:5\n")
    status = deliver(low, store, "dexter@d3xt3r01.tk")
    assert (status.action, status.dsn, status.text) == (Action.DEFERRED, "4.3.5", "mail system configuration error")


def test_mbox_mailbox_without_database(tmp_path: Path, vmail: Path) -> None:
    maps = tmp_path / "vmailbox"
    maps.write_text("ann@example.net example.net/ann\n")
    uid = VMAIL if os.geteuid() == 0 else os.getuid()
    gid = VMAIL if os.geteuid() == 0 else os.getgid()
    config = make_config(tmp_path, (
        f"virtual_mailbox_maps = texthash:{maps}\nvirtual_mailbox_base = {vmail}\n"
        f"virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\n"))
    (vmail / "example.net").mkdir()
    if os.geteuid() == 0:
        os.chown(vmail / "example.net", VMAIL, VMAIL)
    store = make_store(config)
    status = deliver(config, store, "ann@example.net")
    assert (status.action, status.text) == (Action.DELIVERED, "delivered to mailbox"), status
    data = (vmail / "example.net" / "ann").read_bytes()
    assert data.startswith(b"From sender@example.org  ")
    assert data.endswith(b"Delivered-To: ann@example.net\n" + MESSAGE.replace(b"\nFrom the", b"\n>From the") + b"\n")
