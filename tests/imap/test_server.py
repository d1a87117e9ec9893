"""imapd with Python's imaplib and raw transcripts: every RFC 3501 command and the extensions."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.mailstore import deliver
from mailhorn.mailstore.folders import read_subscriptions
from mailhorn.mailstore.maildir import Mailbox
from tests.imap.server_util import PASSWORD, USER, ImapServer, Raw

MSG1 = (b"From: Ana <ana@example.com>\r\nTo: joao@example.com\r\nSubject: first\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nhello world\r\n")
MSG2 = (b"From: bob@example.org\r\nSubject: second\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
        b"part one\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--XX--\r\n")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ImapServer]:
    srv = ImapServer(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def login(srv: ImapServer) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=15)
    c.login(USER, PASSWORD)
    return c


def raw_login(srv: ImapServer) -> Raw:
    r = srv.raw()
    assert r.line().startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert r.cmd(b"L", b'LOGIN "' + USER.encode() + b'" "' + PASSWORD.encode() + b'"')[-1].startswith(b"L OK")
    return r


def test_greeting_capability_noop_logout(server: ImapServer) -> None:
    r = server.raw()
    greeting = r.line()
    assert greeting == (b"* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN "
                        b"AUTH=LOGIN] mailhorn ready.")
    assert r.cmd(b"a", b"CAPABILITY") == [greeting[len(b"* OK [CAPABILITY "):].split(b"]")[0].join(
        [b"* CAPABILITY ", b""]), b"a OK Capability completed."]
    assert r.cmd(b"b", b"NOOP") == [b"b OK NOOP completed."]
    assert r.cmd(b"c", b"SELECT INBOX") == [b"c BAD Please authenticate first."]
    assert r.cmd(b"d", b"LOGOUT") == [b"* BYE Logging out", b"d OK Logout completed."]
    assert r.closed()
    server.wait_log(r"imap-login: Disconnected \(no auth attempts in \d+ secs\): user=<>, "
                    r"rip=127\.0\.0\.1, lip=127\.0\.0\.1")


def test_login_logs_and_failures(server: ImapServer) -> None:
    r = server.raw()
    r.line()
    assert r.cmd(b"a", b"LOGIN nobody@example.com wrong") == [
        b"a NO [AUTHENTICATIONFAILED] Authentication failed."]
    assert r.cmd(b"b", b"LOGIN " + USER.encode() + b" wrong") == [
        b"b NO [AUTHENTICATIONFAILED] Authentication failed."]
    r.cmd(b"c", b"LOGOUT")
    server.wait_log(r"imap-login: Disconnected \(auth failed, 2 attempts in \d+ secs\): "
                    r"user=<joao@example.com>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1")
    c = login(server)
    program, text = server.wait_log(r"imap-login: Login: ")
    assert re.fullmatch(r"Login: user=<joao@example\.com>, method=PLAIN, rip=127\.0\.0\.1, "
                        r"lip=127\.0\.0\.1, mpid=\d+, secured", text), text
    c.logout()
    program, text = server.wait_log(r"Disconnected: Logged out")
    assert program == f"imap({USER})"
    assert re.fullmatch(r"Disconnected: Logged out in=\d+ out=\d+", text)


def test_authenticate_plain_sasl_ir_and_login(server: ImapServer) -> None:
    import base64
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    r = server.raw()
    r.line()
    out = r.cmd(b"a", b"AUTHENTICATE PLAIN " + token)
    assert out[-1].startswith(b"a OK [CAPABILITY IMAP4rev1 ") and out[-1].endswith(b"] Logged in")
    r.close()
    r = server.raw()
    r.line()
    r.send(b"b AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ VXNlcm5hbWU6"
    r.send(base64.b64encode(USER.encode()) + b"\r\n")
    assert r.line() == b"+ UGFzc3dvcmQ6"
    r.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert r.line().startswith(b"b OK [CAPABILITY")
    r.close()
    r = server.raw()
    r.line()
    r.send(b"c AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(b"*\r\n")
    assert r.line() == b"c BAD Authentication aborted by client."
    imap = imaplib.IMAP4("127.0.0.1", server.port)
    imap.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
    assert imap.state == "AUTH"
    imap.logout()


def test_select_examine_fetch(server: ImapServer) -> None:
    deliver(server.maildir, [MSG1])
    deliver(server.maildir, [MSG2])
    r = raw_login(server)
    out = r.cmd(b"s", b"SELECT INBOX")
    assert out[:5] == [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
                       b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.",
                       b"* 2 EXISTS", b"* 2 RECENT", b"* OK [UNSEEN 1] First unseen."]
    assert re.fullmatch(rb"\* OK \[UIDVALIDITY \d+\] UIDs valid", out[5])
    assert out[6:] == [b"* OK [UIDNEXT 3] Predicted next UID", b"s OK [READ-WRITE] Select completed."]
    out = r.cmd(b"f", b"FETCH 1 (ENVELOPE INTERNALDATE FLAGS BODY.PEEK[TEXT] RFC822.SIZE UID)")
    assert re.fullmatch(rb'\* 1 FETCH \(INTERNALDATE "\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}" '
                        rb'FLAGS \(\\Recent\) RFC822.SIZE 149 UID 1 ENVELOPE \("Mon, 1 Jan 2024 10:00:00 \+0000" '
                        rb'"first" \(\("Ana" NIL "ana" "example.com"\)\) .* "<1@example.com>"\) BODY\[TEXT\] \{13\}',
                        out[0]), out[0]
    assert out[1:] == [b"hello world", b")", b"f OK Fetch completed."]
    out = r.cmd(b"g", b"FETCH 2 (BODY[1] BODY.PEEK[2.MIME] BODY[]<0.4>)")
    assert out[0] == b"* 2 FETCH (FLAGS (\\Seen \\Recent) BODY[1] {8}"
    assert out[1:3] == [b"part one BODY[2.MIME] {77}", b"Content-Type: application/octet-stream"]
    assert out[-1] == b"g OK Fetch completed."
    out = r.cmd(b"h", b"UID FETCH 1:* (FLAGS)")
    assert out == [b"* 1 FETCH (UID 1 FLAGS (\\Recent))", b"* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))",
                   b"h OK Fetch completed."]
    out = r.cmd(b"i", b"FETCH 1 (BODYSTRUCTURE)")
    assert out == [b'* 1 FETCH (BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 '
                   b'NIL NIL NIL NIL))', b"i OK Fetch completed."]
    assert r.cmd(b"j", b"FETCH 3 FLAGS") == [b"j BAD Error in IMAP command FETCH: Invalid messageset"]
    out = r.cmd(b"e", b"EXAMINE INBOX")
    assert b"* 0 RECENT" in out and b"* OK [PERMANENTFLAGS ()] Read-only mailbox." in out
    assert out[-1] == b"e OK [READ-ONLY] Examine completed."
    assert r.cmd(b"k", b"FETCH 1 BODY[TEXT]")[0] == b"* 1 FETCH (BODY[TEXT] {13}"  # no \\Seen when read-only
    assert r.cmd(b"l", b"STORE 1 +FLAGS (\\Seen)") == [b"l NO Mailbox is read-only."]
    assert r.cmd(b"m", b"SELECT nothere") == [b"m NO [NONEXISTENT] Mailbox doesn't exist: nothere"]
    assert r.cmd(b"n", b"FETCH 1 FLAGS") == [b"n BAD No mailbox selected"]


def test_store_search_expunge_uidplus(server: ImapServer) -> None:
    for i in range(4):
        deliver(server.maildir, [MSG1.replace(b"first", b"msg%d" % i)])
    r = raw_login(server)
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"a", b"STORE 1:2 +FLAGS (\\Deleted $Label1)") == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)] Flags permitted.",
        b"* 1 FETCH (FLAGS (\\Deleted \\Recent $Label1))", b"* 2 FETCH (FLAGS (\\Deleted \\Recent $Label1))",
        b"a OK Store completed."]
    assert r.cmd(b"b", b"STORE 3 FLAGS.SILENT (\\Answered)") == [b"b OK Store completed."]
    assert r.cmd(b"c", b"STORE 3 -FLAGS (\\Answered)") == [b"* 3 FETCH (FLAGS (\\Recent))",
                                                           b"c OK Store completed."]
    assert r.cmd(b"d", b"SEARCH DELETED") == [b"* SEARCH 1 2", b"d OK Search completed."]
    assert r.cmd(b"e", b"UID SEARCH SUBJECT msg3") == [b"* SEARCH 4", b"e OK Search completed."]
    assert r.cmd(b"f", b"SEARCH CHARSET UTF-8 NOT KEYWORD $Label1") == [b"* SEARCH 3 4",
                                                                        b"f OK Search completed."]
    assert r.cmd(b"g", b"SEARCH CHARSET X-NOPE SUBJECT x") == [
        b"g NO [BADCHARSET (UTF-8)] Unsupported charset"]
    assert r.cmd(b"h", b"STORE 1 +FLAGS (\\Recent)")[0].startswith(b"h BAD")
    # Dovecot also says how many are \\Recent after an expunge.
    assert r.cmd(b"i", b"UID EXPUNGE 2") == [b"* 2 EXPUNGE", b"* 3 RECENT", b"i OK Expunge completed."]
    assert r.cmd(b"j", b"EXPUNGE") == [b"* 1 EXPUNGE", b"* 2 RECENT", b"j OK Expunge completed."]
    assert r.cmd(b"k", b"UID SEARCH ALL") == [b"* SEARCH 3 4", b"k OK Search completed."]
    assert [m.uid for m in Mailbox(server.maildir).sync()] == [3, 4]
    assert r.cmd(b"l", b"STORE 1 +FLAGS (\\Deleted)")[-1] == b"l OK Store completed."
    assert r.cmd(b"m", b"CLOSE") == [b"m OK Close completed."]
    assert [m.uid for m in Mailbox(server.maildir).sync()] == [4]
    assert r.cmd(b"n", b"CHECK") == [b"n BAD No mailbox selected"]


def test_append_copy_move(server: ImapServer) -> None:
    c = login(server)
    assert c.create("Archive") == ("OK", [b"Create completed."])
    typ, data = c.append("Archive", "(\\Seen \\Flagged)", '"01-Feb-2024 12:00:00 +0000"', MSG1)
    assert typ == "OK"
    m = re.fullmatch(rb"\[APPENDUID (\d+) 1\] Append completed\.", data[0])
    assert m is not None
    (box_msg,) = Mailbox(server.maildir.parent / "Maildir", "Archive").sync()
    assert box_msg.flags == "FS" and int(box_msg.internal_date) == 1706788800
    assert c.append("Nope", None, None, MSG1)[1] == [b"[TRYCREATE] Mailbox doesn't exist: Nope"]
    deliver(server.maildir, [MSG1])
    deliver(server.maildir, [MSG2])
    c.select("INBOX")
    typ, data = c.copy("1:2", "Archive")
    assert data == [b"[COPYUID %s 1:2 2:3] Copy completed." % m.group(1)]
    typ, data = c.uid("MOVE", "2", "Archive")
    assert typ == "OK"
    assert c.untagged_responses.get("OK", [])[-1:] == [b"[COPYUID %s 2 4] Moved UIDs." % m.group(1)]
    assert c.response("EXPUNGE") == ("EXPUNGE", [b"2"])
    assert c.copy("1", "Nope")[1] == [b"[TRYCREATE] Mailbox doesn't exist: Nope"]
    assert c.status("Archive", "(MESSAGES UIDNEXT UNSEEN RECENT)")[1] == [
        b"Archive (MESSAGES 4 UIDNEXT 5 UNSEEN 3 RECENT 3)"]
    c.logout()


def test_append_literal_plus_and_limits(tmp_path: Path) -> None:
    srv = ImapServer(tmp_path, {"message_size_limit": "1000"})
    try:
        r = raw_login(srv)
        r.send(b"a APPEND INBOX {12+}\r\nSubject: x\r\n\r\n")
        assert r.line().startswith(b"a OK [APPENDUID ")
        r.send(b"b APPEND INBOX {2000}\r\n")
        assert r.line() == (b"b NO [TOOBIG] Mail size is larger than the maximum size allowed by "
                            b"server configuration")
        r.send(b"c APPEND INBOX (\\Bogus) {3}\r\n")
        assert r.line() == b"c BAD Error in IMAP command APPEND: Invalid flags"
        assert r.cmd(b"d", b"NOOP") == [b"d OK NOOP completed."]
    finally:
        srv.stop()


def test_mailbox_commands(server: ImapServer) -> None:
    c = login(server)
    for name in ("Sent", "Trash", "Projetos.2024", "Açaí"):
        assert c.create('"' + name.encode("utf-7").decode().replace("+", "&") + '"'
                        if name == "Açaí" else name)[0] == "OK"
    typ, data = c.list()
    assert data == [b'(\\HasNoChildren) "." INBOX',
                    b'(\\HasNoChildren) "." A&AOc-a&AO0-',
                    b'(\\Noselect \\HasChildren) "." Projetos',
                    b'(\\HasNoChildren) "." Projetos.2024',
                    b'(\\HasNoChildren \\Sent) "." Sent',
                    b'(\\HasNoChildren \\Trash) "." Trash']
    assert c.list('""', "%")[1][2] == b'(\\Noselect \\HasChildren) "." Projetos'
    assert c.list("Projetos.", "%")[1] == [b'(\\HasNoChildren) "." Projetos.2024']
    assert c._simple_command("LIST", '""', '""')[0] == "OK"
    assert c.untagged_responses.pop("LIST") == [b'(\\Noselect) "." ""']
    typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
    assert c.untagged_responses.pop("LIST") == [b'(\\HasNoChildren \\Sent) "." Sent',
                                                b'(\\HasNoChildren \\Trash) "." Trash']
    assert c.subscribe("Sent")[0] == "OK"
    assert read_subscriptions(server.maildir) == ["Sent"]
    assert c.lsub()[1] == [b'() "." Sent']
    typ, data = c._simple_command("LIST", '""', "*", "RETURN", "(SUBSCRIBED)")
    assert b'(\\HasNoChildren \\Subscribed \\Sent) "." Sent' in c.untagged_responses.pop("LIST")
    assert c.unsubscribe("Sent")[0] == "OK" and read_subscriptions(server.maildir) == []
    assert c.rename("Projetos", "Trabalho")[0] == "OK"
    assert b'(\\HasNoChildren) "." Trabalho.2024' in c.list()[1]
    assert c.rename("Sent", "Trash")[1] == [b"[ALREADYEXISTS] Mailbox already exists"]
    assert c.delete("Trabalho.2024")[0] == "OK"
    assert c.delete("Trabalho.2024")[1] == [b"[NONEXISTENT] Mailbox doesn't exist: Trabalho.2024"]
    assert c.delete("INBOX")[1] == [b"INBOX can't be deleted."]
    assert c.create("INBOX")[1] == [b"[ALREADYEXISTS] Mailbox already exists"]
    assert c.create("../../x")[1] == [b"[CANNOT] Invalid mailbox name: Begins with hierarchy separator"]
    assert c.create("a/b")[0] == "NO" and c.create("~root")[0] == "NO"
    assert not (server.tmp / "x").exists() and not (server.tmp.parent / "x").exists()
    assert c.namespace()[1] == [b'(("" ".")) NIL NIL']
    assert c.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")[0] == "OK"
    c.logout()


def test_quota_id_enable_unselect(tmp_path: Path) -> None:
    srv = ImapServer(tmp_path)
    try:
        from mailhorn.mailstore.quota import QuotaLimits, set_limits
        srv.maildir.mkdir(parents=True)
        for sub in ("cur", "new", "tmp"):
            (srv.maildir / sub).mkdir()
        deliver(srv.maildir, [b"x" * 2048])
        set_limits(srv.maildir, QuotaLimits(storage=10 * 1024 * 1024, messages=100))
        r = raw_login(srv)
        assert r.cmd(b"a", b"GETQUOTAROOT INBOX") == [
            b'* QUOTAROOT INBOX "User quota"', b'* QUOTA "User quota" (STORAGE 2 10240 MESSAGE 1 100)',
            b"a OK Getquotaroot completed."]
        assert r.cmd(b"b", b'GETQUOTA "User quota"')[0] == b'* QUOTA "User quota" (STORAGE 2 10240 MESSAGE 1 100)'
        assert r.cmd(b"c", b'SETQUOTA "User quota" (STORAGE 1)')[0].startswith(b"c NO [NOPERM]")
        assert r.cmd(b"d", b"ID NIL") == [b'* ID ("name" "mailhorn")', b"d OK ID completed."]
        assert r.cmd(b"e", b"ENABLE CONDSTORE") == [b"* ENABLED", b"e OK Enabled."]
        r.cmd(b"f", b"SELECT INBOX")
        assert r.cmd(b"g", b"UNSELECT") == [b"g OK Unselect completed."]
        assert r.cmd(b"h", b"UNSELECT") == [b"h BAD No mailbox selected"]
    finally:
        srv.stop()


def test_security_literals_nesting_and_names(server: ImapServer) -> None:
    r = server.raw()
    r.line()
    r.send(b"a LOGIN {4294967295}\r\n")
    assert r.line() == b"a BAD [TOOBIG] Literal size too large"
    assert r.cmd(b"b", b"NOOP") == [b"b OK NOOP completed."]
    r.send(b"c LOGIN {4294967295+}\r\n")
    assert r.line() == b"c BAD [TOOBIG] Literal size too large"
    assert r.line() == b"* BYE Literal size too large"
    assert r.closed()
    r = raw_login(server)
    r.cmd(b"s", b"SELECT INBOX")
    deep = b"(" * 4000 + b"ALL" + b")" * 4000
    out = r.cmd(b"d", b"SEARCH " + deep)
    assert len(out) == 1 and out[0].startswith(b"d BAD")
    r.close()
    r = raw_login(server)
    assert r.cmd(b"f", b"CREATE ../../x") == [
        b"f NO [CANNOT] Invalid mailbox name: Begins with hierarchy separator"]
    assert r.cmd(b"g", b'SELECT "../x"')[0].startswith(b"g NO [CANNOT]")
    assert r.cmd(b"h", b"A" * 100 + b" NOOP " + b"B" * 70000)[0].endswith(b"Too long argument")
    assert r.cmd(b"i", b"NOOP") == [b"i OK NOOP completed."]


def test_two_sessions_see_each_other(server: ImapServer) -> None:
    for i in range(3):
        deliver(server.maildir, [MSG1])
    a = raw_login(server)
    b = raw_login(server)
    assert b"* 3 RECENT" in a.cmd(b"s", b"SELECT INBOX")
    assert b"* 0 RECENT" in b.cmd(b"s", b"SELECT INBOX")  # \\Recent went to the first session
    assert a.cmd(b"a1", b"STORE 2 +FLAGS (\\Deleted \\Flagged)")[-1] == b"a1 OK Store completed."
    assert b.cmd(b"b1", b"NOOP") == [b"* 2 FETCH (FLAGS (\\Flagged \\Deleted))", b"b1 OK NOOP completed."]
    assert a.cmd(b"a2", b"EXPUNGE") == [b"* 2 EXPUNGE", b"* 2 RECENT", b"a2 OK Expunge completed."]
    # No EXPUNGE during FETCH (RFC 3501 §7.4.1): it waits for the next command that allows it.
    assert b.cmd(b"b2", b"FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS ())", b"b2 OK Fetch completed."]
    assert b.cmd(b"b3", b"NOOP") == [b"* 2 EXPUNGE", b"b3 OK NOOP completed."]
    deliver(server.maildir, [MSG2])
    assert b.cmd(b"b4", b"NOOP") == [b"* 3 EXISTS", b"* 1 RECENT", b"b4 OK NOOP completed."]
    assert a.cmd(b"a3", b"NOOP") == [b"* 3 EXISTS", b"* 2 RECENT", b"a3 OK NOOP completed."]


def test_idle_sees_delivery_and_other_session(server: ImapServer) -> None:
    deliver(server.maildir, [MSG1])
    a = raw_login(server)
    a.cmd(b"s", b"SELECT INBOX")
    a.send(b"i IDLE\r\n")
    assert a.line() == b"+ idling"
    deliver(server.maildir, [MSG2])
    assert a.line() == b"* 2 EXISTS"
    assert a.line() == b"* 2 RECENT"
    b = raw_login(server)
    b.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"t", b"STORE 1 +FLAGS (\\Answered)")
    assert a.line() == b"* 1 FETCH (FLAGS (\\Answered \\Recent))"
    a.send(b"DONE\r\n")
    assert a.line() == b"i OK Idle completed."
    a.send(b"j IDLE\r\n")
    assert a.line() == b"+ idling"
    a.send(b"nope\r\n")
    assert a.line() == b"j BAD Expected DONE."


def test_autologout_before_login(tmp_path: Path) -> None:
    srv = ImapServer(tmp_path, {"imap_login_timeout": "1s"})
    try:
        r = srv.raw()
        r.line()
        assert r.line() == b"* BYE Disconnected for inactivity."
        assert r.closed()
        srv.wait_log(r"imap-login: Disconnected \(no auth attempts in \d+ secs\)")
    finally:
        srv.stop()
