"""SEARCH results of mailhorn against Dovecot's on the same small mailbox.

Messages of the MIME corpus are delivered by mailhorn's store with flags,
keywords and INTERNALDATEs; then every key of :data:`KEYS` is searched by
the real Dovecot (``SEARCH CHARSET UTF-8 …``) and by :mod:`mailhorn.imap.search`,
and the sets of sequence numbers must be equal.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from mailhorn.imap import message as M
from mailhorn.imap.commands import parse_command
from mailhorn.imap.parse import Literal, Piece, Search
from mailhorn.imap.search import BadCharset, Candidate, Context, decode_search_string, matches
from mailhorn.mailstore import Mailbox, deliver
from mailhorn.mailstore import Message as StoreMessage
from tests.conftest import require
from tests.imap import dovecot

CORPUS = Path(__file__).resolve().parent.parent / "golden" / "mime"
DAY = 86400
T0 = dt.datetime(2024, 3, 10, 12, 0, 0).timestamp()

# (corpus file, maildir flags, keywords, internal date)
MAILBOX = [
    ("01-plain", "S", ("$Junk",), T0),
    ("03-multipart-mixed", "RS", (), T0 + DAY),
    ("06-encoded-words", "", ("Work",), T0 + 2 * DAY),
    ("07-8bit-headers", "F", (), T0 + 3 * DAY),
    ("13-malformed-addresses", "T", (), T0 + 3 * DAY + 3600),
    ("23-date-variants", "D", ("$Junk", "Work"), T0 - DAY),
    ("04-nested-alternative", "S", (), T0 + 5 * DAY),
    ("05-rfc822-part", "", (), T0 + 6 * DAY),
]

KEYS: list[bytes] = [
    b"ALL", b"ANSWERED", b"UNANSWERED", b"DELETED", b"UNDELETED", b"DRAFT", b"UNDRAFT",
    b"FLAGGED", b"UNFLAGGED", b"SEEN", b"UNSEEN", b"NEW", b"OLD", b"RECENT",
    b"KEYWORD $Junk", b"UNKEYWORD $Junk", b"KEYWORD work", b"KEYWORD nothere",
    b"BEFORE 12-Mar-2024", b"ON 13-Mar-2024", b"SINCE 13-Mar-2024", b'SINCE "11-Mar-2024"',
    b"SENTBEFORE 1-Jan-2000", b"SENTON 1-Jul-2003", b"SENTSINCE 1-Jan-2019", b"SENTSINCE 3-Mar-2021",
    b"SENTBEFORE 3-Mar-2021", b"SENTON 2-Jan-2019",
    b"LARGER 500", b"SMALLER 300", b"LARGER 100000",
    b"FROM alice", b'FROM "EXAMPLE.ORG"', b"FROM silva", b"TO mary", b"CC team", b"BCC y@example",
    b"SUBJECT hello", b'SUBJECT "com p"', b"SUBJECT {5+}\r\ncaf\xc3\xa9",
    b"FROM {5+}\r\njo\xc3\xa3o", b"TO {6+}\r\nMAR\xc3\x8dA",
    b'HEADER Message-ID "1234@example"', b'HEADER X-Missing ""', b'HEADER Subject ""',
    b'HEADER content-type "multipart"',
    b'BODY "plain message"', b'BODY "PLAIN MESSAGE"', b"BODY {4+}\r\nol\xc3\xa1", b'BODY "soft break"',
    b"BODY {5+}\r\ncaf\xc3\xa9", b'BODY "orig text"', b'BODY "report.pdf"', b'BODY "Subject"',
    b'TEXT "report.pdf"', b'TEXT "hello there"', b'TEXT "orig text"', b"TEXT nested",
    b"NOT SEEN", b"NOT NOT SEEN", b"OR SEEN FLAGGED", b"OR (SEEN DRAFT) (FLAGGED)",
    b"(SEEN UNANSWERED)", b"2:4", b"*", b"1,3:*", b"UID 2:3", b"UID *", b"UID 5:*",
    b"NOT (OR 1 2)", b"SEEN NOT KEYWORD $Junk", b"OR OR ANSWERED DRAFT DELETED",
]


def _pieces(cmd: bytes) -> list[Piece]:
    """Split a command with LITERAL+ literals the way the codec frames it."""
    out: list[Piece] = []
    pos = 0
    for m in re.finditer(rb"\{(\d+)\+\}\r\n", cmd):
        out.append(cmd[pos:m.start()])
        n = int(m.group(1))
        out.append(Literal(cmd[m.end():m.end() + n]))
        pos = m.end() + n
    out.append(cmd[pos:])
    return out


def _mailhorn(root: Path, keys: list[bytes]) -> list[list[int]]:
    box = Mailbox(root)
    listed = box.sync()
    results = []
    for key in keys:
        cmd, _, _ = parse_command("SEARCH", _pieces(b" CHARSET UTF-8 " + key))
        assert isinstance(cmd, Search)
        ctx = Context(len(listed), listed[-1].uid, cmd.charset)
        found = []
        for seq, msg in enumerate(listed, 1):
            # Dovecot makes the files still in new/ \Recent for its first session.
            flags = set(msg.imap_flags()[:len(msg.imap_flags()) - len(msg.keywords)])
            if msg.recent_dir:
                flags.add("\\Recent")
            def load(m: StoreMessage = msg) -> M.Message:
                return M.parse_message(b"".join(box.read(m)))

            cand = Candidate(seq, msg.uid, frozenset(flags), frozenset(msg.keywords),
                             msg.internal_date, msg.vsize or msg.size, load)
            if matches(cmd.key, cand, ctx):
                found.append(seq)
        results.append(found)
    return results


def _fill(root: Path) -> None:
    for name, flags, keywords, when in MAILBOX:
        deliver(root, [(CORPUS / f"{name}.eml").read_bytes()], flags=flags, keywords=keywords,
                internal_date=when)


def test_search_keys_against_dovecot() -> None:
    require(dovecot.available(), "Dovecot's imap is not installed (apt-get install dovecot-imapd)")
    d = dovecot.DovecotImap()
    try:
        _fill(d.maildir)
        ours = _mailhorn(d.maildir, KEYS)
        out = d.session([b"S SELECT INBOX"] + [b"K%d SEARCH CHARSET UTF-8 %s" % (i, k) for i, k in enumerate(KEYS)])
    finally:
        d.close()
    # Pipelined commands run in order, each giving exactly one "* SEARCH" line.
    lines = out.split(b"\r\n")
    results = [[int(x) for x in line.split()[2:]] for line in lines if line.startswith(b"* SEARCH")]
    statuses = [line for line in lines if re.match(rb"K\d+ ", line)]
    assert all(b" OK " in line for line in statuses), statuses
    assert len(results) == len(KEYS)
    theirs = dict(enumerate(results))
    problems = [f"{k.decode(errors='replace')!r}: dovecot {theirs.get(i)} mailhorn {ours[i]}"
                for i, k in enumerate(KEYS) if theirs.get(i) != ours[i]]
    assert problems == [], "\n".join(problems)


def test_search_without_dovecot(tmp_path: Path) -> None:
    """The same mailbox, a few answers known from RFC 3501's definitions."""
    _fill(tmp_path)
    res = dict(zip([b"SEEN", b"KEYWORD work", b"2:4", b"NOT (OR 1 2)", b"LARGER 100000"],
                   _mailhorn(tmp_path, [b"SEEN", b"KEYWORD work", b"2:4", b"NOT (OR 1 2)", b"LARGER 100000"])))
    assert res[b"SEEN"] == [1, 2, 7]
    assert res[b"KEYWORD work"] == [3, 6]
    assert res[b"2:4"] == [2, 3, 4]
    assert res[b"NOT (OR 1 2)"] == [3, 4, 5, 6, 7, 8]
    assert res[b"LARGER 100000"] == []


def test_bad_charset() -> None:
    with pytest.raises(BadCharset):
        decode_search_string(b"x", "X-NO-SUCH-CHARSET")
    assert decode_search_string(b"caf\xe9", "ISO-8859-1") == "café"
