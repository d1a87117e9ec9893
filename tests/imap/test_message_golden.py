"""FETCH renderings of a MIME corpus against Dovecot's, byte for byte.

``tests/golden/mime/NAME.eml`` is a message; ``NAME.ref`` is what the real
Dovecot 2.3 answered to the FETCH commands in :data:`FETCHES` after the
message was delivered into a Maildir by mailhorn's store. Every item of every
response is rendered by :mod:`mailhorn.imap.message` and compared. The live
test repeats the comparison against the installed Dovecot when it exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailhorn.imap import message as M
from mailhorn.mailstore import deliver
from tests.conftest import require
from tests.imap import dovecot
from tests.imap.response import all_fetches

CORPUS = Path(__file__).resolve().parent.parent / "golden" / "mime"
MESSAGES = sorted(CORPUS.glob("*.eml"))

FETCHES = [
    b"F1 FETCH 1 (ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[1.2.MIME] BODY.PEEK[HEADER.FIELDS (FROM TO)]"
    b" RFC822.SIZE BODY.PEEK[TEXT]<0.100>)",
    b"F2 FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT]"
    b" BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT DATE)] RFC822.HEADER BODY.PEEK[1.1] BODY.PEEK[2.1.2]"
    b" BODY.PEEK[2.MIME])",
    b"F3 FETCH 1 (BODY.PEEK[]<5.20> BODY.PEEK[HEADER] BODY.PEEK[3] BODY.PEEK[1.TEXT] BODY.PEEK[1.HEADER]"
    b" BODY.PEEK[2.2] BODY.PEEK[2.1] BODY.PEEK[2.1.MIME] BODY.PEEK[TEXT]<10.5>"
    b" BODY.PEEK[HEADER.FIELDS (X-NONE)])",
]
PARTIALS = {b"BODY[TEXT]<0>": (0, 100), b"BODY[]<5>": (5, 20), b"BODY[TEXT]<10>": (10, 5)}
_SECTION = re.compile(rb"(?:BODY\[(?P<sec>[^\]]*)\]|RFC822(?P<rfc>\.HEADER|\.TEXT)?)(?:<\d+>)?$")


def render(msg: M.Message, name: bytes) -> bytes | None:
    """mailhorn's value for one FETCH item name as Dovecot labelled it."""
    if name == b"ENVELOPE":
        return M.envelope(msg.root)
    if name == b"BODYSTRUCTURE":
        return M.bodystructure(msg)
    if name == b"BODY":
        return M.bodystructure(msg, extended=False)
    if name == b"RFC822.SIZE":
        return b"%d" % M.virtual_size(msg)
    if name == b"FLAGS":
        return None
    m = _SECTION.match(name)
    assert m, name
    sec = (m.group("sec") or (m.group("rfc") or b"").lstrip(b".")).decode()
    fields: tuple[bytes, ...] = ()
    if " (" in sec:
        sec, flist = sec.split(" (", 1)
        fields = tuple(flist.rstrip(")").encode().split())
    parts = sec.split(".") if sec else []
    path = []
    while parts and parts[0].isdigit():
        path.append(int(parts.pop(0)))
    spec = M.SectionSpec(tuple(path), ".".join(parts), fields)
    data = M.section_bytes(msg, spec, PARTIALS.get(name))
    return b"{%d}\r\n" % len(data) + data


def compare(eml: Path, transcript: bytes) -> list[str]:
    msg = M.parse_message(eml.read_bytes())
    problems = []
    fetches = all_fetches(transcript)
    assert len(fetches) == len(FETCHES), transcript[:300]
    for items in fetches:
        for name, want in items.items():
            got = render(msg, name)
            if got is not None and got != want:
                problems.append(f"{eml.name} {name.decode()}:\n  dovecot  {want[:300]!r}\n  mailhorn {got[:300]!r}")
    return problems


@pytest.mark.parametrize("eml", MESSAGES, ids=[p.stem for p in MESSAGES])
def test_golden(eml: Path) -> None:
    assert compare(eml, eml.with_suffix(".ref").read_bytes()) == []


def test_live_dovecot() -> None:
    require(dovecot.available(), "Dovecot's imap is not installed (apt-get install dovecot-imapd)")
    problems: list[str] = []
    for eml in MESSAGES:
        d = dovecot.DovecotImap()
        try:
            deliver(d.maildir, [eml.read_bytes()])
            out = d.session([b"S SELECT INBOX", *FETCHES])
        finally:
            d.close()
        problems += compare(eml, out)
    assert problems == []


def test_mmap_and_bytes_agree(tmp_path: Path) -> None:
    import mmap

    for eml in MESSAGES[:6]:
        with open(eml, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            a = M.parse_message(mm)
            b = M.parse_message(eml.read_bytes())
            assert M.bodystructure(a) == M.bodystructure(b)
            assert M.section_bytes(a, M.SectionSpec((1,), "")) == M.section_bytes(b, M.SectionSpec((1,), ""))
