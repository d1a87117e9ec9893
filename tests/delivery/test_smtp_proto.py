"""The client's command side, 8BITMIME downgrade, SIZE and SMTPUTF8 rules."""

from __future__ import annotations

import email
import email.policy
import quopri
import re
import time
from pathlib import Path

import pytest

from mailhorn.delivery import smtp_proto as proto
from mailhorn.delivery.request import Action
from mailhorn.delivery.smtp_8bit import NotConvertible, check_convertible, downgrade, qp_encode_line
from mailhorn.delivery.smtp_tls import protocol_range
from mailhorn.smtp.client import ReplyParser
from mailhorn.smtp.reply import Reply
from tests.delivery.smtp_helpers import SmtpSink, make_config, make_request, run_agent
from tests.smtpd.server_harness import SmtpdServer


def _ehlo(*lines: str) -> proto.Features:
    parser = ReplyParser()
    parser.feed("".join(f"250-{line}\r\n" for line in lines[:-1]).encode() + f"250 {lines[-1]}\r\n".encode())
    reply = parser.next_reply()
    assert reply is not None
    return proto.parse_ehlo(reply)


def test_parse_ehlo_and_mail_from_parameters() -> None:
    f = _ehlo("mx.example", "PIPELINING", "SIZE 1000", "8BITMIME", "DSN", "SMTPUTF8", "AUTH=LOGIN", "CHUNKING")
    assert f.pipelining and f.size_limit == 1000 and f.eightbitmime and f.dsn and f.smtputf8 and f.chunking
    assert f.auth == ("LOGIN",)
    line = proto.mail_from("a@b.example", f, size=42, body_8bit=True, smtputf8=True, ret="hdrs", envid="x y+z")
    assert line == "MAIL FROM:<a@b.example> SIZE=42 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+20y+2Bz"
    bare = proto.Features()
    assert proto.mail_from("", bare, size=42, body_8bit=True, smtputf8=False, ret="FULL", envid="e") == "MAIL FROM:<>"
    assert proto.rcpt_to("c@d", f, notify={"FAILURE", "SUCCESS"}, orcpt="rfc822;c@d") == \
        "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d"
    assert proto.rcpt_to("c@d", bare, notify={"NEVER"}) == "RCPT TO:<c@d>"
    assert proto.parse_ehlo(Reply.of(250, None, "mx", "PIPELINING"), ["pipelining"]).pipelining is False


def test_quoting_and_reply_texts() -> None:
    assert proto.quote_mailbox("john doe@example.com") == '"john doe"@example.com'
    assert proto.quote_mailbox("a..b@example.com") == '"a..b"@example.com'
    assert proto.quote_mailbox("plain.user@example.com") == "plain.user@example.com"
    reply = Reply.of(550, "5.1.1", "<u@example.com>: Recipient address rejected:", "User unknown")
    assert proto.said_text("mx[192.0.2.1]", reply, "RCPT TO") == (
        "host mx[192.0.2.1] said: 550 5.1.1 <u@example.com>: Recipient address rejected: User unknown "
        "(in reply to RCPT TO command)")
    assert proto.dsn_of(Reply.of(451, None, "later")) == "4.0.0"


def test_dot_stuffing_streams_across_chunks() -> None:
    stuffer = proto.DotStuffer()
    out = b"".join(stuffer.feed(c) for c in [b"a\n.", b"b\n", b"..c\nlast"]) + stuffer.end()
    assert out == b"a\r\n..b\r\n...c\r\nlast\r\n.\r\n"
    bdat = proto.DotStuffer(stuff=False)
    assert b"".join(bdat.feed(c) for c in [b".x\n", b"y"]) + bdat.end() == b".x\r\ny\r\n"


def test_qp_lines_are_short_and_decode_back() -> None:
    text = ("Olá, città, ăîșț " * 20 + " ").encode()
    encoded = qp_encode_line(text)
    assert all(len(line) <= 76 for line in encoded.split(b"\n"))
    assert quopri.decodestring(encoded) == text
    assert qp_encode_line(b"x=y\t") == b"x=3Dy=09"


MIME_8BIT = (
    b"From: a@example.org\nTo: b@example.net\nSubject: x\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"BB\"\nContent-Transfer-Encoding: 8bit\n\n"
    b"preamble\n--BB\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    b"Citt\xc3\xa0 di prova.\n.riga con punto\n--BB\nContent-Type: text/plain\n\nplain ascii\n"
    b"--BB\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n"
    b"Subject: inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    b"\xc8\x99i \xc3\xae\xc8\x9b\n--BB--\nepilogue\n"
)


def test_downgrade_converts_8bit_parts_only() -> None:
    out = b"".join(downgrade([MIME_8BIT[i:i + 5] for i in range(0, len(MIME_8BIT), 5)]))
    assert all(b < 128 for b in out)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    parts = list(msg.walk())
    assert msg["Content-Transfer-Encoding"] == "7bit"
    leaf = parts[1]
    assert leaf["Content-Transfer-Encoding"] == "quoted-printable"
    # The line end before a boundary belongs to the boundary (RFC 2046 §5.1.1).
    assert leaf.get_content() == "Città di prova.\n.riga con punto"
    assert parts[2].get_content() == "plain ascii"
    assert parts[3]["Content-Transfer-Encoding"] == "7bit"
    inner = parts[4]
    assert inner["Content-Transfer-Encoding"] == "quoted-printable"
    assert inner.get_content().rstrip("\n") == "și îț"
    assert out.endswith(b"--BB--\nepilogue\n")


def test_undeclared_8bit_is_not_convertible() -> None:
    with pytest.raises(NotConvertible, match="improper use of 8-bit data in message body"):
        check_convertible([b"Subject: x\n\ncaf\xc3\xa9\n"])
    check_convertible([MIME_8BIT])


def test_protocol_ranges() -> None:
    import ssl
    assert protocol_range(">=TLSv1.2") == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert protocol_range("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1") == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert protocol_range("TLSv1.3") == (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)


def test_8bit_message_downgraded_for_a_7bit_server(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, "-8")
    try:
        request = make_request(sink.nexthop, ["b@example.net"], MIME_8BIT, attributes={"encoding": "8bit"})
        undeclared = make_request(sink.nexthop, ["b@example.net"], b"Subject: x\n\ncaf\xc3\xa9\n",
                                  attributes={"encoding": "8bit"})
        [[ok], [bad]] = run_agent(make_config(tmp_path), [request, undeclared])
        assert ok.action is Action.DELIVERED
        assert bad.action is Action.BOUNCED and bad.dsn == "5.6.3"
        assert bad.text == "improper use of 8-bit data in message body"
        [dump] = sink.wait_messages(1)
        assert b"BODY=8BITMIME" not in dump
        assert b"Content-Transfer-Encoding: quoted-printable\n\nCitt=C3=A0 di prova.\n.riga con punto\n" in dump
    finally:
        sink.stop()


def test_8bitmime_server_gets_the_body_as_it_is(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        request = make_request(sink.nexthop, ["b@example.net"], MIME_8BIT, attributes={"encoding": "8bit"})
        [[ok]] = run_agent(make_config(tmp_path), [request])
        assert ok.action is Action.DELIVERED
        [dump] = sink.wait_messages(1)
        assert b"X-Mail-Args: <sender@example.org> BODY=8BITMIME" in dump
        assert b"Citt\xc3\xa0 di prova." in dump
    finally:
        sink.stop()


def test_smtputf8_required_but_not_offered_bounces(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        request = make_request(sink.nexthop, ["jos\u00e9@example.net"], attributes={"smtputf8": "1"})
        [[s]] = run_agent(make_config(tmp_path), [request])
        assert s.action is Action.BOUNCED and s.dsn == "5.6.7"
        assert s.text == "SMTPUTF8 is required, but was not offered by host 127.0.0.3[127.0.0.3]"
        assert sink.messages() == []
    finally:
        sink.stop()


def test_size_over_the_server_limit_is_refused_before_sending(tmp_path: Path) -> None:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = SmtpdServer(server_dir, {"message_size_limit": "100"}, real_cleanup=False)
    try:
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        big = b"Subject: big\n\n" + b"x" * 200 + b"\n"
        [[s]] = run_agent(make_config(client_dir), [make_request(f"[127.0.0.1]:{server.port}", ["b@example.test"],
                                                                   big)])
        assert s.action is Action.BOUNCED and s.dsn == "5.3.4"
        assert s.text == f"message size {len(big)} exceeds size limit 100 of server 127.0.0.1[127.0.0.1]"
        assert server.queued() == []
    finally:
        server.stop()


def test_pipelining_and_chunking_into_mailhorn_smtpd(tmp_path: Path) -> None:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = SmtpdServer(server_dir, real_cleanup=False)
    try:
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        content = b"Subject: many\n\n" + b"".join(b".line %d\n" % i for i in range(20000))
        requests = [make_request(f"[127.0.0.1]:{server.port}", [f"r{i}@example.test", f"s{i}@example.test"],
                                 content, queue_id=f"5ABC{i}", chunk=65536) for i in range(10)]
        results = run_agent(make_config(client_dir, smtp_connection_cache_time_limit="60s"), requests)
        assert all(s.action is Action.DELIVERED for r in results for s in r)
        ids = server.queued()
        assert len(ids) == 10
        for qid in ids:
            assert server.content(qid).endswith(content.split(b"\n\n", 1)[1])
        # One connection carried all ten (the log is the client's: one log setup per process).
        # The server logs its disconnect after the client's QUIT exchange; wait for it.
        log = client_dir / "maillog"
        deadline = time.monotonic() + 15
        pattern = re.compile(r"disconnect from \S+ ehlo=1 mail=10 rcpt=20 bdat=\d+ rset=9 quit=1 commands=\d+$", re.M)
        while not pattern.search(log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pattern.search(log.read_text()), log.read_text()[-2000:]
    finally:
        server.stop()
