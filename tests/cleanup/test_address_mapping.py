"""cleanup's address mapping: virtual aliases, canonical maps, masquerading, header rewriting.

The seeds' setups (000: ``virtual_alias_maps = hash:...`` forwards; 003:
forwardings, a catch-all and ``@a -> @b`` in MariaDB) run through the real
cleanup and are read back from the queue file. A few cases are compared
with the queue file the real Postfix 3.7 cleanup writes for the same input
(tests/cleanup/postfix_oracle.py).
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.cleanup.request import ClientInfo, Outcome
from tests.cleanup import postfix_oracle
from tests.cleanup.util import Rig, headers_of, make_rig
from tests.conftest import require, run_mailhorn

HOST = "oracle.example.org"
LOCAL = ClientInfo(name="localhost", addr="127.0.0.1", port="4711", helo="client.example", protocol="ESMTP")
REMOTE = ClientInfo(name="unknown", addr="192.0.2.7", port="4711", helo="client.example", protocol="ESMTP")
MESSAGE = b"Subject: t\nFrom: s@sender.example\nTo: x@dest.example\n\nbody\n"


def rig(tmp_path: Path, **params: str) -> Rig:
    return make_rig(tmp_path, myhostname=HOST, mydomain="example.org", **params)


def recipients(r: Rig, queue_id: str) -> list[tuple[str, str | None]]:
    qf = r.store.read("incoming", queue_id)
    return [(x.address, x.orig_rcpt) for x in qf.recipients]


def queued(r: Rig, *rcpts: str, sender: str = "s@sender.example", data: bytes = MESSAGE,
           client: ClientInfo = LOCAL) -> str:
    result = r.submit(data, sender=sender, recipients=rcpts, client=client)
    assert result.outcome is Outcome.QUEUED and result.queue_id, result
    return result.queue_id


def test_seed000_hash_virtual_alias_forward(tmp_path: Path) -> None:
    table = tmp_path / "virtual"
    table.write_text("email_entrada@domain.example  email_destino1@domain.example, email_destino2@domain.example\n"
                     "user@domain.example           hugo\n")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(f"myhostname = {HOST}\n")
    built = run_mailhorn("postmap", "-c", str(etc), f"hash:{table}")
    assert built.returncode == 0, built.stderr
    r = rig(tmp_path, virtual_alias_maps=f"hash:{table}")
    qid = queued(r, "email_entrada@domain.example", "user@domain.example", "other@domain.example")
    assert recipients(r, qid) == [
        ("email_destino1@domain.example", "email_entrada@domain.example"),
        ("email_destino2@domain.example", "email_entrada@domain.example"),
        (f"hugo@{HOST}", "user@domain.example"),
        ("other@domain.example", "other@domain.example"),
    ]
    # The message's headers keep what the sender wrote (virtual(5)).
    _qf, content = r.read(qid)
    assert "To: x@dest.example" in headers_of(content)


@pytest.fixture
def seed003_db(mysql_server: dict[str, object], tmp_path: Path) -> Iterator[Path]:
    pymysql = pytest.importorskip("pymysql")
    conn = pymysql.connect(host=str(mysql_server["host"]), port=int(str(mysql_server["port"])),
                           user=str(mysql_server["user"]), password=str(mysql_server["password"]),
                           autocommit=True)
    name = f"mailhorn_vmap_{os.getpid()}_{abs(hash(str(tmp_path))) % 100000}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"USE {name}")
        cur.execute("CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL,"
                    " PRIMARY KEY (source))")
        cur.execute("CREATE TABLE users (email varchar(80) NOT NULL, PRIMARY KEY (email))")
        cur.executemany("INSERT INTO forwardings VALUES (%s, %s)", [
            ("proba@d3xt3r01.tk", "dexter@d3xt3r01.tk"),
            ("@example.com", "thomas@example.com"),
            ("@mapped.example", "@anotherdomain.tld"),
        ])
        cur.executemany("INSERT INTO users VALUES (%s)", [("thomas@example.com",), ("sales@example.com",)])
    common = (f"user = {mysql_server['user']}\npassword = {mysql_server['password']}\n"
              f"hosts = {mysql_server['host']}:{mysql_server['port']}\ndbname = {name}\n")
    (tmp_path / "mysql-virtual_forwardings.cf").write_text(
        common + "query = SELECT destination FROM forwardings WHERE source='%s'\n")
    (tmp_path / "mysql-virtual_email2email.cf").write_text(
        common + "query = SELECT email FROM users WHERE email='%s'\n")
    try:
        yield tmp_path
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.mark.mysql
def test_seed003_mysql_forwardings_catch_all_and_domain_mapping(seed003_db: Path) -> None:
    maps = (f"mysql:{seed003_db}/mysql-virtual_forwardings.cf, "
            f"mysql:{seed003_db}/mysql-virtual_email2email.cf")
    r = rig(seed003_db, virtual_alias_maps=maps)
    qid = queued(r, "proba@d3xt3r01.tk", "sales@example.com", "nobody@example.com", "joe@mapped.example")
    assert recipients(r, qid) == [
        ("dexter@d3xt3r01.tk", "proba@d3xt3r01.tk"),
        ("sales@example.com", "sales@example.com"),
        ("thomas@example.com", "nobody@example.com"),
        ("joe@anotherdomain.tld", "joe@mapped.example"),
    ]


def test_canonical_masquerade_and_header_rewriting(tmp_path: Path) -> None:
    r = rig(tmp_path, sender_canonical_maps="inline:{old@sender.example=new@sender.example}",
            recipient_canonical_maps="inline:{a@rcpt.example=b@rcpt.example}",
            masquerade_domains="example.com")
    data = (b"Subject: t\nFrom: \"Old, Name\" <old@sender.example> (comment)\n"
            b"To: a@rcpt.example, <bare>, grp: c@host.sub.example.com;\nCc: A <a@sub.example.com>\n"
            b"Reply-To: x@host.example.com\n\nbody\n")
    qid = queued(r, "a@rcpt.example", "u@sub.example.com", sender="old@sender.example", data=data)
    qf, content = r.read(qid)
    assert qf.sender == "new@sender.example"
    # envelope_recipient is not in the default masquerade_classes.
    assert recipients(r, qid) == [("b@rcpt.example", "a@rcpt.example"),
                                  ("u@sub.example.com", "u@sub.example.com")]
    heads = headers_of(content)
    assert "From: \"Old, Name\" <new@sender.example> (comment)" in heads
    assert f"To: b@rcpt.example, <bare@{HOST}>, grp: c@example.com;" in heads
    assert "Cc: A <a@example.com>" in heads
    assert "Reply-To: x@example.com" in heads
    # Remote clients' headers are left alone (empty remote_header_rewrite_domain).
    qid = queued(r, "a@rcpt.example", sender="old@sender.example", data=data, client=REMOTE)
    _qf, content = r.read(qid)
    assert "Cc: A <a@sub.example.com>" in headers_of(content)


def test_no_address_mappings(tmp_path: Path) -> None:
    r = rig(tmp_path, virtual_alias_maps="inline:{x@dest.example=y@dest.example}",
            canonical_maps="inline:{s@sender.example=t@sender.example}",
            receive_override_options="no_address_mappings")
    qid = queued(r, "x@dest.example", "bare")
    qf, content = r.read(qid)
    assert qf.sender == "s@sender.example"
    # Address completion is not a mapping: it still happens.
    assert recipients(r, qid) == [("x@dest.example", "x@dest.example"), (f"bare@{HOST}", "bare")]
    assert "From: s@sender.example" in headers_of(content)


def test_duplicates_after_expansion_are_written_once(tmp_path: Path) -> None:
    r = rig(tmp_path, virtual_alias_maps="inline:{{a@d.example=z@d.example, y@d.example}, b@d.example=z@d.example}")
    qid = queued(r, "a@d.example", "b@d.example", "y@d.example")
    assert [a for a, _ in recipients(r, qid)] == ["z@d.example", "y@d.example"]


def test_expansion_limit_refuses_with_4_6_0(tmp_path: Path) -> None:
    r = rig(tmp_path, virtual_alias_maps="inline:{{a@d.example=b@d.example, c@d.example, e@d.example}}",
            virtual_alias_expansion_limit="2")
    result = r.submit(MESSAGE, recipients=("a@d.example",), client=LOCAL)
    assert result.outcome is Outcome.REJECTED and result.reply is not None
    assert (result.reply.code, result.reply.status) == (451, "4.6.0")
    assert list(r.store.scan("incoming")) == []


@pytest.mark.mysql
def test_table_failure_refuses_with_4_3_0(tmp_path: Path, mysql_server: dict[str, object]) -> None:
    cf = tmp_path / "broken.cf"
    cf.write_text(f"user = {mysql_server['user']}\npassword = {mysql_server['password']}\n"
                  f"hosts = {mysql_server['host']}:{mysql_server['port']}\ndbname = mailhorn_no_such_db_x\n"
                  "query = SELECT destination FROM forwardings WHERE source='%s'\n")
    r = rig(tmp_path, virtual_alias_maps=f"mysql:{cf}")
    result = r.submit(MESSAGE, recipients=("a@d.example",), client=LOCAL)
    assert result.outcome is Outcome.REJECTED and result.reply is not None
    assert (result.reply.code, result.reply.status) == (451, "4.3.0")
    assert list(r.store.scan("incoming")) == []


# -- compared with the real Postfix ------------------------------------------------

ORACLE_MAIN = (
    "virtual_alias_maps = inline:{ {x@dest.example=r3@dest.example,r4@dest.example}, "
    "@map.example=@other.example }\n"
    "sender_canonical_maps = inline:{old@sender.example=new@sender.example}\n"
    "masquerade_domains = example.com\n"
)
MAILHORN_MAPS = {
    "virtual_alias_maps": "inline:{ {x@dest.example=r3@dest.example,r4@dest.example}, @map.example=@other.example }",
    "sender_canonical_maps": "inline:{old@sender.example=new@sender.example}",
    "masquerade_domains": "example.com",
}
_DATE = re.compile(r"[A-Z][a-z]{2}, [ \d]\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)")


@pytest.fixture(scope="module")
def oracle() -> Iterator[postfix_oracle.PostfixOracle]:
    require(postfix_oracle.available(), "a private Postfix needs root and the postfix package")
    root = Path(tempfile.mkdtemp(prefix="mailhorn-mapping-oracle-"))
    instance = postfix_oracle.PostfixOracle(root, myhostname=HOST, extra_main=ORACLE_MAIN)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


def _envelope(postcat: str) -> tuple[str, list[tuple[str, str]]]:
    sender = re.search(r"^sender: (.*)$", postcat, re.M)
    assert sender is not None
    pairs = re.findall(r"^original_recipient: (.*)\nrecipient: (.*)$", postcat, re.M)
    return sender.group(1), [(rcpt, orig) for orig, rcpt in pairs]


ORACLE_CASES = [
    ("alias-and-domain-map", "old@sender.example", ["x@dest.example", "r1@dest.example", "u@map.example"],
     b"Subject: t\r\nFrom: old@sender.example, b@host.sub.example.com\r\nTo: x@dest.example, <bare>\r\n"
     b"Cc: A <a@sub.example.com>\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n"),
    ("bare-sender", "fribeiro", ["a@sub.example.com"],
     b"Subject: t\r\nFrom: fribeiro\r\nMessage-ID: <m2@x>\r\n\r\nbody\r\n"),
]


@pytest.mark.parametrize("name,sender,rcpts,data", ORACLE_CASES, ids=[c[0] for c in ORACLE_CASES])
def test_same_queue_file_as_postfix(oracle: postfix_oracle.PostfixOracle, tmp_path: Path, name: str,
                                    sender: str, rcpts: list[str], data: bytes) -> None:
    known = set(oracle.incoming())
    with smtplib.SMTP("127.0.0.1", oracle.port) as client:
        client.ehlo("client.example")
        client.sendmail(sender, rcpts, data)
    pf_id = oracle.wait_for_queue_file(known)
    pf_sender, pf_rcpts = _envelope(oracle.postcat(pf_id, "-e"))
    pf_content = _DATE.sub("DATE", oracle.postcat(pf_id, "-bh").replace(pf_id, "QUEUEID"))

    r = rig(tmp_path, **MAILHORN_MAPS)
    qid = queued(r, *rcpts, sender=sender, data=data.replace(b"\r\n", b"\n"))
    qf, content = r.read(qid)
    assert qf.sender == pf_sender
    assert [(x.address, x.orig_rcpt) for x in qf.recipients] == pf_rcpts
    assert _DATE.sub("DATE", content.decode().replace(qid, "QUEUEID")) == pf_content
