"""smtpd behaviours at the edges of a transaction, each checked against Postfix 3.7's.

- END-OF-MESSAGE actions (``smtpd_end_of_data_restrictions``) reach cleanup
  after the content: HOLD puts the message in ``hold/``, DISCARD drops it,
  FILTER and REDIRECT land in the queue file; PREPEND is refused with
  Postfix's warning (the headers are already written).
- BDAT runs ``smtpd_data_restrictions`` before its first chunk (Postfix logs
  ``reject: BDAT``), and later chunks of a refused message get ``551 5.0.0
  Discarded N bytes after earlier error``.
- ``smtpd_discard_ehlo_keyword_address_maps`` hides EHLO keywords per client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.smtpd.server_harness import HOST, SmtpdServer

Maker = Callable[[dict[str, str]], SmtpdServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Maker]:
    servers: list[SmtpdServer] = []

    def factory(main_cf: dict[str, str]) -> SmtpdServer:
        server = SmtpdServer(tmp_path, {"mynetworks": "127.0.0.0/8", **main_cf}, real_checks=True)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def _send(server: SmtpdServer, body: str = "Subject: t\r\n\r\nbody\r\n") -> list[str]:
    c = server.client()
    assert c.reply()[0].startswith("220 ")
    assert c.cmd("EHLO client.example")[-1].startswith("250 ")
    assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    assert c.cmd(f"RCPT TO:<postmaster@{HOST}>") == ["250 2.1.5 Ok"]
    assert c.cmd("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
    c.send(body + ".\r\n")
    reply = c.reply()
    c.cmd("QUIT")
    return reply


def _queue_id(reply: list[str]) -> str:
    assert reply[0].startswith("250 2.0.0 Ok: queued as "), reply
    return reply[0].rsplit(" ", 1)[1]


def test_end_of_data_hold_puts_the_message_in_hold(make_server: Maker) -> None:
    server = make_server({"smtpd_end_of_data_restrictions": "check_client_access static:HOLD"})
    queue_id = _queue_id(_send(server))
    # Postfix: "QID: hold: END-OF-MESSAGE from ...: <...>: Client host triggers HOLD action"
    line = server.wait_log(rf"^{queue_id}: hold: END-OF-MESSAGE from ")
    assert "Client host triggers HOLD action" in line
    assert list(server.store.scan("hold")) == [queue_id]
    assert server.queued() == []


def test_end_of_data_discard_drops_the_message(make_server: Maker) -> None:
    server = make_server({"smtpd_end_of_data_restrictions": "check_client_access static:DISCARD"})
    queue_id = _queue_id(_send(server))
    server.wait_log(rf"^{queue_id}: discard: END-OF-MESSAGE from ")
    assert server.queued() == [] and list(server.store.scan("hold")) == []


def test_end_of_data_filter_and_redirect_reach_the_queue_file(make_server: Maker) -> None:
    server = make_server({
        "content_filter": "smtp:[127.0.0.1]:10024",
        "smtpd_end_of_data_restrictions":
            "check_client_access static:{FILTER smtp:[127.0.0.1]:10025}, "
            "check_sender_access static:{REDIRECT other@example.net}",
    })
    queue_id = _queue_id(_send(server))
    qf = server.read(queue_id)
    assert qf.content_filter == "smtp:[127.0.0.1]:10025"
    assert [r.address for r in qf.recipients] == ["other@example.net"]


def test_end_of_data_prepend_is_refused_as_in_postfix(make_server: Maker) -> None:
    server = make_server({"smtpd_end_of_data_restrictions": "check_client_access static:{PREPEND X-Late: yes}"})
    queue_id = _queue_id(_send(server))
    server.wait_log(r"warning: access table static:\{PREPEND X-Late: yes\}: action PREPEND must be used "
                    r"before smtpd_end_of_data_restrictions$")
    assert b"X-Late" not in server.content(queue_id)


def test_bdat_runs_data_restrictions(make_server: Maker) -> None:
    server = make_server({"smtpd_data_restrictions": "reject"})
    c = server.client()
    assert c.reply()[0].startswith("220 ")
    assert c.cmd("EHLO client.example")[-1] == "250 CHUNKING"
    assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    assert c.cmd(f"RCPT TO:<postmaster@{HOST}>") == ["250 2.1.5 Ok"]
    # Postfix 3.7, same dialogue: the first chunk gets the DATA refusal, the
    # transaction stays open, later chunks are discarded, LAST ends it.
    c.send("BDAT 5\r\nhello")
    assert c.reply() == ["554 5.7.1 <DATA>: Data command rejected: Access denied"]
    assert c.cmd("MAIL FROM:<a@example.org>") == ["503 5.5.1 Error: nested MAIL command"]
    c.send("BDAT 3 LAST\r\nabc")
    assert c.reply() == ["551 5.0.0 Discarded 3 bytes after earlier error"]
    assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    line = server.wait_log(r": reject: BDAT from ")
    assert line.endswith(f"554 5.7.1 <DATA>: Data command rejected: Access denied; from=<a@example.org> "
                         f"to=<postmaster@{HOST}> proto=ESMTP helo=<client.example>")
    server.wait_log(r"disconnect from .* bdat=0/2 ")
    assert server.queued() == []


def test_bdat_passes_data_restrictions_that_permit(make_server: Maker) -> None:
    server = make_server({"smtpd_data_restrictions": "permit_mynetworks, reject"})
    c = server.client()
    assert c.reply()[0].startswith("220 ")
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    assert c.cmd(f"RCPT TO:<postmaster@{HOST}>") == ["250 2.1.5 Ok"]
    text = "Subject: t\r\n\r\nhi\r\n"
    c.send(f"BDAT {len(text)} LAST\r\n{text}")
    reply = c.reply()
    assert reply[0].startswith(f"250 2.0.0 Ok: {len(text)} bytes queued as ")
    assert len(server.queued()) == 1


def test_discard_ehlo_keyword_address_maps(make_server: Maker, tmp_path: Path) -> None:
    table = tmp_path / "ehlo_discard.cidr"
    table.write_text("127.0.0.1/32 pipelining, dsn, silent-discard\n127.0.0.3/32 chunking\n")
    server = make_server({"smtpd_discard_ehlo_keywords": "etrn",
                          "smtpd_discard_ehlo_keyword_address_maps": f"cidr:{table}"})

    def keywords(source: str) -> list[str]:
        c = server.client(source)
        assert c.reply()[0].startswith("220 ")
        words = [line[4:] for line in c.cmd("EHLO client.example")[1:]]
        c.cmd("QUIT")
        return words

    # Postfix 3.7 with the same table: the client's entry replaces
    # smtpd_discard_ehlo_keywords; other clients get the main.cf list.
    assert keywords("127.0.0.1") == ["SIZE 10240000", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME",
                                     "CHUNKING"]
    assert keywords("127.0.0.2") == ["PIPELINING", "SIZE 10240000", "VRFY", "ENHANCEDSTATUSCODES", "8BITMIME",
                                     "DSN", "CHUNKING"]
    assert keywords("127.0.0.3") == ["PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "ENHANCEDSTATUSCODES",
                                     "8BITMIME", "DSN"]
    server.wait_log(r"discarding EHLO keywords: CHUNKING$")
    assert not [line for line in server.logs() if "discarding EHLO keywords: PIPELINING" in line]
