"""Seed 003 through the running server: virtual domains, forwards, quotas and transports in MariaDB.

The database is seed 003's schema (domains, forwardings, users, transport)
in a database of its own, dropped afterwards; the six
``mysql-virtual_*.cf`` files are those of tests/golden/sql/seed003 with the
login and database name changed for it. The server runs as an ordinary
user, which is also the virtual uid/gid (``static:``) so that it writes the
Maildirs as itself. Mail enters over SMTP; the tests read the Maildirs,
the log, and the reports that come back to the sender (a virtual mailbox
too), and Dovecot's ``doveadm`` reads the mailbox and quota.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, require
from tests.delivery.smtp_helpers import SmtpSink
from tests.e2e.conftest import MakeServer
from tests.e2e.util import Server, dsn_parts, maildir_messages, parse, private_dir, require_smtp_client, wait_messages
from tests.master.util import wait_for

pymysql = pytest.importorskip("pymysql")

pytestmark = pytest.mark.mysql

OVER_QUOTA = "The user you are trying to reach is over quota."
GOLDEN = ROOT / "tests" / "golden" / "sql" / "seed003"
BOUNCES = "bounces@d3xt3r01.tk"


@dataclass
class Seed:
    db: str
    conn: object
    vmail: Path
    user: pwd.struct_passwd

    def sql(self, statement: str, *args: object) -> None:
        with self.conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(statement, args)

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.vmail / domain / local


@pytest.fixture
def seed(mysql_server: dict[str, object], run_user: pwd.struct_passwd) -> Iterator[Seed]:
    conn = pymysql.connect(host=str(mysql_server["host"]), port=int(str(mysql_server["port"])),
                           user="root", password="", autocommit=True)
    name = f"mailhorn_e2e_{os.getpid()}"
    base = private_dir("mailhorn-e2e-vmail-", run_user)
    vmail = base / "vmail"
    vmail.mkdir()
    os.chown(vmail, run_user.pw_uid, run_user.pw_gid)
    seed = Seed(name, conn, vmail, run_user)
    try:
        seed.sql(f"CREATE DATABASE {name}")
        seed.sql(f"USE {name}")
        seed.sql("CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain))")
        seed.sql("CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL,"
                 " PRIMARY KEY (source))")
        seed.sql("CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL,"
                 " quota INT(10) DEFAULT '10485760', PRIMARY KEY (email))")
        seed.sql("CREATE TABLE transport (domain varchar(128) NOT NULL default '',"
                 " transport varchar(128) NOT NULL default '', UNIQUE KEY domain (domain))")
        for domain in ("d3xt3r01.tk", "example.com", "anotherdomain.tld"):
            seed.sql("INSERT INTO domains (domain) VALUES (%s)", domain)
        for email, quota in (("dexter@d3xt3r01.tk", 10485760), (BOUNCES, 104857600),
                             ("thomas@example.com", 10485760), ("sales@example.com", 10485760),
                             ("thomas@anotherdomain.tld", 10485760), ("info@anotherdomain.tld", 10485760)):
            seed.sql("INSERT INTO users (email, password, quota) VALUES (%s, 'x', %s)", email, quota)
        seed.sql("INSERT INTO forwardings (source, destination) VALUES"
                 " ('proba@d3xt3r01.tk', 'dexter@d3xt3r01.tk'), ('@example.com', 'thomas@example.com')")
        yield seed
    finally:
        seed.sql(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
        shutil.rmtree(base, ignore_errors=True)


def seed_server(make_server: MakeServer, seed: Seed, extra: str = "") -> Server:
    """Seed 003's main.cf (less TLS, SASL and the content filter) with this test's database."""
    uid, gid = seed.user.pw_uid, seed.user.pw_gid
    server = make_server(
        "mydestination = $myhostname, localhost\n"
        "mailbox_size_limit = 1048576000\nvirtual_mailbox_limit = 1050576000\n"
        "message_size_limit = 1048576000\nvirtual_alias_domains =\n"
        "virtual_alias_maps = proxy:mysql:$config_directory/mysql-virtual_forwardings.cf,"
        " mysql:$config_directory/mysql-virtual_email2email.cf\n"
        "virtual_mailbox_domains = proxy:mysql:$config_directory/mysql-virtual_domains.cf\n"
        "virtual_mailbox_maps = proxy:mysql:$config_directory/mysql-virtual_mailboxes.cf\n"
        f"virtual_mailbox_base = {seed.vmail}\n"
        f"virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\nvirtual_minimum_uid = 100\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "transport_maps = proxy:mysql:$config_directory/mysql-virtual_transports.cf\n"
        "virtual_create_maildirsize = yes\nvirtual_mailbox_extended = yes\n"
        "virtual_mailbox_limit_maps = proxy:mysql:$config_directory/mysql-virtual_mailbox_limit_maps.cf\n"
        "virtual_mailbox_limit_override = yes\n"
        f'virtual_maildir_limit_message = "{OVER_QUOTA}"\n'
        "virtual_overquota_bounce = yes\n"
        "proxy_read_maps = $local_recipient_maps $mydestination $virtual_alias_maps $virtual_alias_domains"
        " $virtual_mailbox_maps $virtual_mailbox_domains $relay_recipient_maps $relay_domains $canonical_maps"
        " $sender_canonical_maps $recipient_canonical_maps $relocated_maps $transport_maps $mynetworks"
        " $virtual_mailbox_limit_maps\n" + extra)
    for path in sorted(GOLDEN.glob("mysql-virtual_*.cf")):
        text = path.read_text().replace("user = mail_admin", "user = root").replace("password = P4r0la", "password =")
        server.write_file(path.name, text.replace("dbname = vmail", f"dbname = {seed.db}"))
    server.start()
    return server


def send(server: Server, rcpt: str, subject: str, body: str = "hello\n") -> str:
    return server.send(BOUNCES, [rcpt], f"From: {BOUNCES}\nTo: {rcpt}\nSubject: {subject}\n\n{body}")


def subjects(maildir: Path) -> list[str]:
    return [str(parse(p.read_bytes())["Subject"]) for p in maildir_messages(maildir)]


def reports(seed: Seed, count: int) -> list[tuple[object, list[object]]]:
    found = wait_messages(seed.maildir(BOUNCES), count)
    out = []
    for path in found:
        report = parse(path.read_bytes())
        out.append((report, dsn_parts(report)[1]))
    return out  # type: ignore[return-value]


def usage(maildirsize: list[str]) -> tuple[int, int]:
    """Bytes and messages a maildirsize file's lines add up to (the first line is the quota)."""
    rows = [line.split() for line in maildirsize[1:] if line]
    return sum(int(r[0]) for r in rows), sum(int(r[1]) for r in rows)


def doveadm(maildir: Path, owner: pwd.struct_passwd, *args: str) -> str:
    """doveadm on one Maildir with a private configuration (no daemon), as the Maildir's owner."""
    require(shutil.which("doveadm") is not None, "Dovecot's doveadm is not installed (dovecot-core)")
    run = private_dir("mailhorn-e2e-dovecot-", owner)
    conf = run / "dovecot.conf"
    conf.write_text(
        f"base_dir = {run}/run\nlog_path = /dev/stderr\nmail_location = maildir:{maildir}\n"
        f"mail_home = {maildir}\nssl = no\nmail_uid = {owner.pw_uid}\nmail_gid = {owner.pw_gid}\n"
        "first_valid_uid = 1\nfirst_valid_gid = 1\nmail_plugins = quota\n"
        "plugin {\n  quota = maildir:User quota\n}\n")
    try:
        proc = subprocess.run(["doveadm", "-c", str(conf), *args], capture_output=True, timeout=60, cwd=run,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": owner.pw_name,
                                   "HOME": str(maildir), "LANG": "C.UTF-8"})
    finally:
        shutil.rmtree(run, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def test_forward_catch_all_domain_map_and_concat_path(make_server: MakeServer, seed: Seed) -> None:
    server = seed_server(make_server, seed)
    dexter = seed.maildir("dexter@d3xt3r01.tk")
    proba = send(server, "proba@d3xt3r01.tk", "to proba")
    [delivered] = wait_messages(dexter, 1)
    # The CONCAT query's path: virtual_mailbox_base/DOMAIN/USER/ (a Maildir).
    assert delivered.parent == seed.vmail / "d3xt3r01.tk" / "dexter" / "new"
    copy = parse(delivered.read_bytes())
    assert (copy["Subject"], copy["Delivered-To"], copy["X-Original-To"]) == (
        "to proba", "dexter@d3xt3r01.tk", "proba@d3xt3r01.tk")
    server.wait_log(rf"virtual\[\d+\]: {proba}: to=<dexter@d3xt3r01.tk>, orig_to=<proba@d3xt3r01.tk>, "
                    r"relay=virtual, .*status=sent \(delivered to maildir\)")

    # Catch-all: unknown names go to thomas@, existing users keep their mail (email2email).
    send(server, "nobody@example.com", "caught")
    send(server, "sales@example.com", "for sales")
    wait_messages(seed.maildir("thomas@example.com"), 1)
    wait_messages(seed.maildir("sales@example.com"), 1)
    assert subjects(seed.maildir("thomas@example.com")) == ["caught"]
    assert subjects(seed.maildir("sales@example.com")) == ["for sales"]

    # @example.com -> @anotherdomain.tld: the same user at the other domain.
    seed.sql("UPDATE forwardings SET destination = '@anotherdomain.tld' WHERE source = '@example.com'")
    send(server, "info@example.com", "mapped")
    [mapped] = wait_messages(seed.maildir("info@anotherdomain.tld"), 1)
    assert parse(mapped.read_bytes())["Delivered-To"] == "info@anotherdomain.tld"
    server.wait_queue_empty()
    assert subjects(seed.maildir("thomas@example.com")) == ["caught"]


def test_quota_bounce_leaves_the_maildir_untouched_and_doveadm_agrees(make_server: MakeServer, seed: Seed) -> None:
    server = seed_server(make_server, seed)
    dexter = seed.maildir("dexter@d3xt3r01.tk")
    small = send(server, "dexter@d3xt3r01.tk", "small one")
    server.wait_log(rf"{small}: removed")
    wait_messages(dexter, 1)
    assert (dexter / "maildirsize").read_text().split("\n")[0] == "10485760S"
    before = {p.name: p.stat().st_mtime_ns for p in maildir_messages(dexter)}
    size_file = (dexter / "maildirsize").read_bytes()

    big = send(server, "dexter@d3xt3r01.tk", "too big", ("z" * 999 + "\n") * 11_000)
    # main.cf keeps the seed's double quotes as part of the value, as Postfix does.
    server.wait_log(rf"{big}: to=<dexter@d3xt3r01.tk>, relay=virtual, .*dsn=5\.2\.2, status=bounced "
                    rf"\(\"{re.escape(OVER_QUOTA)}\"\)")
    [(report, recipients)] = reports(seed, 1)
    [rcpt] = recipients
    assert rcpt["Final-Recipient"] == "rfc822; dexter@d3xt3r01.tk"  # type: ignore[index]
    assert rcpt["Action"] == "failed"  # type: ignore[index]
    assert rcpt["Status"] == "5.2.2"  # type: ignore[index]
    assert OVER_QUOTA in " ".join(str(rcpt["Diagnostic-Code"]).split())  # type: ignore[index]
    server.wait_queue_empty()
    after = {p.name: p.stat().st_mtime_ns for p in maildir_messages(dexter)}
    assert after == before
    # maildirsize may be recalculated (Maildir++), but the usage it records is unchanged.
    after_size = (dexter / "maildirsize").read_text().split("\n")
    assert after_size[0] == "10485760S"
    assert usage(after_size) == usage(size_file.decode().split("\n"))
    assert list((dexter / "tmp").iterdir()) == []

    fetched = doveadm(dexter, seed.user, "-f", "tab", "fetch", "uid hdr.subject hdr.delivered-to", "mailbox", "INBOX",
                      "all")
    rows = [line.split("\t") for line in fetched.strip().split("\n")[1:]]
    assert rows == [["1", "small one", "dexter@d3xt3r01.tk"]]
    used = usage(after_size)
    quota = doveadm(dexter, seed.user, "-f", "tab", "quota", "get")
    head = quota.strip().split("\n")[0].split("\t")
    storage = dict(zip(head, [line.split("\t") for line in quota.strip().split("\n") if "STORAGE" in line][0]))
    assert storage["Limit"] == str(10485760 // 1024)
    assert int(storage["Value"]) == -(-used[0] // 1024)


def test_transport_table_error_discard_local_and_precedence(make_server: MakeServer, seed: Seed,
                                                            run_user: pwd.struct_passwd) -> None:
    spool = private_dir("mailhorn-e2e-spool-", run_user)
    try:
        for domain, transport in (("err.test", "error:no mail for err.test here"),
                                  ("drop.test", "discard:"),
                                  ("loc.test", "local:"),
                                  (".sub.test", "error:subdomains are closed"),
                                  ("joe@drop2.test", "error:joe has left"),
                                  ("drop2.test", "discard:")):
            seed.sql("INSERT INTO transport (domain, transport) VALUES (%s, %s)", domain, transport)
        server = seed_server(make_server, seed, "relay_domains = err.test drop.test loc.test x.sub.test drop2.test\n"
                             f"mail_spool_directory = {spool}\nhome_mailbox =\nalias_maps =\n")
        for name, value in (("err.test", "error:no mail for err.test here"), ("joe@drop2.test", "error:joe has left"),
                            ("drop.test", "discard:")):
            looked = server.tool("postmap", "-q", name, f"mysql:{server.etc / 'mysql-virtual_transports.cf'}")
            assert (looked.returncode, looked.stdout) == (0, value + "\n"), looked.stderr

        err = send(server, "someone@err.test", "to err")
        sub = send(server, "a@x.sub.test", "to sub")
        joe = send(server, "joe@drop2.test", "to joe")
        dropped = [send(server, "anyone@drop.test", "to drop"), send(server, "ann@drop2.test", "to ann")]
        loc = send(server, f"{run_user.pw_name}@loc.test", "to loc")

        server.wait_log(rf"error\[\d+\]: {err}: to=<someone@err.test>, relay=none, .*dsn=5\.0\.0, "
                        r"status=bounced \(no mail for err.test here\)")
        server.wait_log(rf"{sub}: to=<a@x.sub.test>, .*status=bounced \(subdomains are closed\)")
        server.wait_log(rf"{joe}: to=<joe@drop2.test>, .*status=bounced \(joe has left\)")
        for queue_id in dropped:
            server.wait_log(rf"discard\[\d+\]: {queue_id}: to=<[a-z]+@drop2?\.test>, relay=none, .*status=sent")
        server.wait_log(rf"local\[\d+\]: {loc}: to=<{run_user.pw_name}@loc.test>, relay=local, .*"
                        r"status=sent \(delivered to mailbox\)")
        assert b"Subject: to loc" in (spool / run_user.pw_name).read_bytes()

        found = reports(seed, 3)
        texts = {}
        for report, recipients in found:
            [rcpt] = recipients
            texts[str(rcpt["Final-Recipient"])] = " ".join(str(rcpt["Diagnostic-Code"]).split())  # type: ignore[index]
        assert texts == {"rfc822; someone@err.test": "X-Postfix; no mail for err.test here",
                         "rfc822; a@x.sub.test": "X-Postfix; subdomains are closed",
                         "rfc822; joe@drop2.test": "X-Postfix; joe has left"}
        server.wait_queue_empty()
        assert len(maildir_messages(seed.maildir(BOUNCES))) == 3
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def test_transport_table_smtp_to_a_bracketed_host_and_port(make_server: MakeServer, seed: Seed,
                                                           sink: SmtpSink) -> None:
    require_smtp_client()
    seed.sql("INSERT INTO transport (domain, transport) VALUES (%s, %s)", "sink.test", f"smtp:{sink.nexthop}")
    server = seed_server(make_server, seed, "relay_domains = sink.test\n")
    queue_id = send(server, "far@sink.test", "to the sink")
    [dump] = sink.wait_messages(1, 30)
    assert b"X-Rcpt-Args: <far@sink.test>" in dump and b"Subject: to the sink" in dump
    server.wait_log(rf"smtp\[\d+\]: {queue_id}: to=<far@sink.test>, relay=127.0.0.3\[127.0.0.3\]:{sink.port}, "
                    r".*status=sent \(250 ")
    assert wait_for(lambda: not server.queue_ids("deferred"))
