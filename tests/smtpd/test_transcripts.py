"""The guides' telnet sessions, replayed over a raw socket.

The golden transcripts in tests/transcripts/ are the sessions of seeds 001
and 004 as the guides print them.  Each is replayed against smtpd set up
with the guide's main.cf settings; the replies must equal the guide's,
hostname and queue ID aside.  The golden files themselves are checked
against the seed texts, so they cannot drift from the guides.

The guide of seed 001 shows a Postfix older than 3.4, which had no CHUNKING
and no SMTPUTF8; its transcript is replayed with ``smtpd_discard_ehlo_keywords
= chunking, silent-discard`` (SMTPUTF8 is off by default at compatibility
level 0, as in Postfix 3.7).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import SEEDS
from tests.smtpd.server_harness import SmtpdServer
from tests.smtpd.tlscerts import make_cert

GOLDEN = Path(__file__).resolve().parent.parent / "transcripts"
HOSTS = re.compile(r"server\.home\.lan|mail\.fiap\.edu\.br|fiap\.edu\.br|mx\.example\.test")


def load(name: str) -> list[tuple[str, str]]:
    out = []
    for line in (GOLDEN / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        out.append((line[:2], line[3:]))
    return out


def mask(line: str) -> str:
    line = HOSTS.sub("HOST", line)
    return re.sub(r"queued as [0-9A-Za-z]+$", "queued as ID", line)


def replay(server: SmtpdServer, script: list[tuple[str, str]]) -> list[str]:
    """Send the C: lines one by one; after each, read as many reply lines as the script shows."""
    c = server.client()
    got: list[str] = []
    want = 0
    for kind, text in script:
        if kind == "S:":
            want += 1
            continue
        while len(got) < want:
            got.extend(c.reply())
        c.send(text + "\r\n")
    while len(got) < want:
        got.extend(c.reply())
    return got


def expected(script: list[tuple[str, str]]) -> list[str]:
    return [text for kind, text in script if kind == "S:"]


def seed_session(seed: str) -> list[str]:
    matches = list(SEEDS.glob(f"{seed}_*.txt"))
    if not matches:
        pytest.skip("the seed guides are not available")
    lines = matches[0].read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "Escape character is" in line)
    end = next(i for i in range(start, len(lines)) if "Connection closed by foreign host" in lines[i])
    return lines[start + 1:end]


@pytest.mark.parametrize(("golden", "seed"), [("seed001_telnet.txt", "001"), ("seed004_telnet.txt", "004")])
def test_golden_files_are_the_guides_sessions(golden: str, seed: str) -> None:
    script = load(golden)
    assert [text for _, text in script] == seed_session(seed)


def test_seed001_session(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "server.home.lan")
    server = SmtpdServer(tmp_path, {
        "myhostname": "server.home.lan",
        "mydomain": "home.lan",
        "smtpd_banner": "$myhostname ESMTP $mail_name (Debian/GNU)",
        "mynetworks": "127.0.0.0/8, 192.168.1.0/24",
        "mydestination": "home.lan, server.home.lan, localhost.home.lan, localhost",
        "smtpd_use_tls": "yes",
        "smtpd_tls_auth_only": "yes",
        "smtpd_tls_cert_file": str(cert),
        "smtpd_tls_key_file": str(key),
        "smtpd_discard_ehlo_keywords": "chunking, silent-discard",
    })
    try:
        script = load("seed001_telnet.txt")
        got = replay(server, script)
        assert [mask(x) for x in got] == [mask(x) for x in expected(script)]
        ids = server.queued()
        assert len(ids) == 1
        qf = server.read(ids[0])
        # cleanup completes bare addresses with $myorigin, as Postfix's does.
        assert qf.sender == "fribeiro@server.home.lan"
        assert [r.address for r in qf.recipients] == ["fribeiro@server.home.lan"]
    finally:
        server.stop()


def test_seed004_session(tmp_path: Path) -> None:
    server = SmtpdServer(tmp_path, {
        "myhostname": "mail.fiap.edu.br",
        "mydomain": "fiap.edu.br",
        "smtpd_banner": "Bem Vindo - $myhostname",
        "mydestination": "$myhostname, localhost, $mydomain",
        "mynetworks": "127.0.0.1/32 172.16.0.0/20",
        "inet_interfaces": "all",
    })
    try:
        script = load("seed004_telnet.txt")
        got = replay(server, script)
        assert [mask(x) for x in got] == [mask(x) for x in expected(script)]
        ids = server.queued()
        assert len(ids) == 1
        assert server.read(ids[0]).sender == "root@fiap.edu.br"
        assert b"Subject: Teste de Comandos SMTP" in server.content(ids[0])
    finally:
        server.stop()
