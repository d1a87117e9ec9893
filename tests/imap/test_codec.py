"""The sans-I/O IMAP engine without sockets: framing, literals, limits, events."""

from __future__ import annotations

import datetime as dt
import tracemalloc

import pytest

from mailhorn.imap import codec as C
from mailhorn.imap.commands import State
from mailhorn.imap.message import SectionSpec
from mailhorn.imap.parse import (
    Append,
    Authenticate,
    Copy,
    Create,
    Expunge,
    Fetch,
    FetchAttr,
    Id,
    ListCmd,
    Login,
    Search,
    SearchKey,
    Select,
    Status,
    Store,
)


def events(codec: C.ImapCodec, data: bytes = b"") -> list[C.Event]:
    codec.receive_data(data)
    out = []
    while (ev := codec.next_event()) is not None:
        out.append(ev)
    return out


def one(data: bytes) -> C.Event:
    evs = events(C.ImapCodec(), data)
    assert len(evs) == 1, evs
    return evs[0]


def command(data: bytes) -> object:
    ev = one(data)
    assert isinstance(ev, C.CommandEvent), ev
    return ev.command


def test_simple_commands_and_states() -> None:
    ev = one(b"a1 login joe secret\r\n")
    assert isinstance(ev, C.CommandEvent)
    assert ev.tag == b"a1" and ev.name == "LOGIN" and ev.command == Login(b"joe", b"secret")
    assert ev.spec.states == State.NOT_AUTH
    assert command(b"x SELECT inbox\r\n") == Select("INBOX", False)
    assert command(b"x EXAMINE \"A&AOc-a&AO0-\"\r\n") == Select("Açaí", True)
    assert command(b"x CREATE Sent (USE (\\Sent))\r\n") == Create("Sent")
    assert command(b"x STATUS INBOX (MESSAGES UIDNEXT)\r\n") == Status("INBOX", ("MESSAGES", "UIDNEXT"))
    assert command(b"x AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n") == Authenticate("PLAIN", b"AGpvZQBzZWNyZXQ=")
    assert command(b'x ID ("name" "mbsync" "version" NIL)\r\n') == Id(((b"name", b"mbsync"), (b"version", None)))
    assert command(b"x ID NIL\r\n") == Id(None)
    assert command(b'x LIST "" *\r\n') == ListCmd("", ("*",))
    assert command(b'x LIST (SPECIAL-USE) "" ("*" "%") RETURN (CHILDREN)\r\n') == \
        ListCmd("", ("*", "%"), False, ("SPECIAL-USE",), ("CHILDREN",))
    assert command(b"x UID EXPUNGE 3:5\r\n") == Expunge(Expunge(None).uids or __import__(
        "mailhorn.imap.parse", fromlist=["parse_seqset"]).parse_seqset(b"3:5"))


def test_literals_synchronising_and_plus() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b"a LOGIN {3}\r\n")
    assert evs == [C.Continue(b"+ OK\r\n")]
    evs = events(codec, b"joe {6+}\r\nsecret\r\n")
    assert len(evs) == 1 and isinstance(evs[0], C.CommandEvent)
    assert evs[0].command == Login(b"joe", b"secret")
    # A literal may hold CRLF and anything else.
    assert command(b"a LOGIN {4+}\r\na\r\nb {1+}\r\n\"\r\n") == Login(b"a\r\nb", b'"')


def test_fetch_items() -> None:
    cmd = command(b"a UID FETCH 1:* (FLAGS BODY.PEEK[1.2.MIME] BODY[HEADER.FIELDS (from To)]<0.100>)\r\n")
    assert isinstance(cmd, Fetch) and cmd.uid
    ev = one(b"a UID FETCH 1 FLAGS\r\n")
    assert isinstance(ev, C.CommandEvent) and ev.name == "FETCH" and ev.uid
    assert cmd.attrs[0] == FetchAttr("UID")
    assert cmd.attrs[2] == FetchAttr("BODY[]", SectionSpec((1, 2), "MIME"), None, True)
    assert cmd.attrs[3].response_name() == b"BODY[HEADER.FIELDS (FROM TO)]<0>"
    assert cmd.attrs[3].partial == (0, 100)
    full = command(b"a FETCH 2,4:5 FULL\r\n")
    assert isinstance(full, Fetch)
    assert [a.name for a in full.attrs] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]
    assert full.seqset.iter(10) == [2, 4, 5]
    ev = one(b"a FETCH 1 BODY[0]\r\n")
    assert isinstance(ev, C.CommandError) and b"a BAD" in ev.response
    ev = one(b"a FETCH 1 (BODY[MIME])\r\n")
    assert isinstance(ev, C.CommandError) and b"a BAD" in ev.response


def test_store_copy_search() -> None:
    st = command(b"a STORE 1:3 +FLAGS.SILENT (\\seen $Junk)\r\n")
    assert isinstance(st, Store) and st.mode == "+" and st.silent and st.flags == ("\\Seen", "$Junk")
    assert isinstance(one(b"a STORE 1 FLAGS (\\Recent)\r\n"), C.CommandError)
    assert command(b"a UID MOVE 4 Trash\r\n") == Copy(
        __import__("mailhorn.imap.parse", fromlist=["parse_seqset"]).parse_seqset(b"4"), "Trash", True, True)
    s = command(b"a SEARCH CHARSET UTF-8 OR (SEEN FROM {4+}\r\njo\xc3\xa3) NOT 1:* SINCE 1-Feb-1994\r\n")
    assert isinstance(s, Search) and s.charset == "UTF-8"
    assert s.key.op == "AND" and s.key.children[0].op == "OR"
    assert s.key.children[1] == SearchKey("SINCE", (dt.date(1994, 2, 1),))
    assert command(b"a SEARCH 1:*\r\n") == Search(None, SearchKey(
        "SEQSET", (__import__("mailhorn.imap.parse", fromlist=["parse_seqset"]).parse_seqset(b"1:*"),)))
    ev = one(b"a SEARCH FOO\r\n")
    assert isinstance(ev, C.CommandError)
    assert ev.response == b"a BAD Error in IMAP command SEARCH: Unknown argument FOO\r\n"


def test_errors_use_dovecot_wording() -> None:
    assert one(b"i FOO\r\n") == C.CommandError(b"i", b"i BAD Error in IMAP command FOO: Unknown command\r\n")
    assert one(b"j SELECT\r\n") == C.CommandError(b"j", b"j BAD Error in IMAP command SELECT: Invalid arguments\r\n")
    assert one(b"k\r\n") == C.CommandError(b"k", b"k BAD Error in IMAP command: Invalid command name\r\n")
    assert one(b'l SELECT "a\r\n') == C.CommandError(b"l", b"l BAD Error in IMAP command SELECT: Missing '\"'\r\n")
    assert one(b"a SELECT &Jjo\r\n") == C.CommandError(b"a", b"a NO Mailbox name is not valid mUTF-7\r\n")
    bad_tag = one(b"+x NOOP\r\n")
    assert isinstance(bad_tag, C.CommandError) and bad_tag.tag is None


def test_huge_literal_is_refused_before_reading() -> None:
    codec = C.ImapCodec()
    tracemalloc.start()
    try:
        evs = events(codec, b"a SELECT {4294967295}\r\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert evs == [C.CommandError(b"a", b"a BAD [TOOBIG] Literal size too large\r\n")]
    # A synchronising literal was never sent: the session goes on.
    assert isinstance(events(codec, b"b NOOP\r\n")[0], C.CommandEvent)


def test_huge_nonsync_literal_closes() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b"a SELECT {4294967295+}\r\nxxxxx")
    assert len(evs) == 1 and isinstance(evs[0], C.CommandError) and evs[0].close
    assert evs[0].response.startswith(b"a BAD [TOOBIG]")
    assert b"* BYE" in evs[0].response
    assert codec.closed and not codec.wants_input
    assert events(codec, b"b NOOP\r\n") == []


def test_append_limit_toobig() -> None:
    codec = C.ImapCodec(append_limit=1000)
    evs = events(codec, b"a APPEND INBOX {4294967295}\r\n")
    assert len(evs) == 1 and isinstance(evs[0], C.CommandError) and not evs[0].close
    assert evs[0].response.startswith(b"a NO [TOOBIG]")
    evs = events(codec, b"b APPEND INBOX {4294967295+}\r\n")
    assert isinstance(evs[0], C.CommandError) and evs[0].close


def test_nesting_4000_is_bad_with_bounded_memory() -> None:
    line = b"a SEARCH " + b"(" * 4000 + b"ALL" + b")" * 4000 + b"\r\n"
    ev = one(line)
    assert isinstance(ev, C.CommandError)
    assert ev.response == b"a BAD Error in IMAP command SEARCH: Too deep nesting\r\n"
    ev = one(b"a SEARCH " + b"NOT " * 4000 + b"ALL\r\n")
    assert isinstance(ev, C.CommandError) and b"Too deep nesting" in ev.response
    ev = one(b"a FETCH 1 " + b"(" * 4000 + b"\r\n")
    assert isinstance(ev, C.CommandError)
    assert isinstance(command(b"a SEARCH " + b"(" * 20 + b"ALL" + b")" * 20 + b"\r\n"), Search)


def test_long_line_is_discarded_and_answered() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b"a SELECT " + b"x" * 40000)
    assert evs == []
    evs = events(codec, b"x" * 40000)
    assert evs == [] and codec.buffered == 0   # nothing kept while the line goes on
    evs = events(codec, b"xx\r\nb NOOP\r\n")
    assert evs[0] == C.CommandError(b"a", b"a BAD Error in IMAP command SELECT: Too long argument\r\n")
    assert isinstance(evs[1], C.CommandEvent) and evs[1].name == "NOOP"


def test_command_with_literals_is_bounded_as_a_whole() -> None:
    codec = C.ImapCodec(max_line_length=100)
    evs = events(codec, b"a LOGIN {60}\r\n")
    assert evs == [C.Continue(b"+ OK\r\n")]
    evs = events(codec, b"u" * 60 + b" {60}\r\n")
    assert isinstance(evs[0], C.CommandError) and b"[TOOBIG]" in evs[0].response


def test_starttls_drops_injected_commands() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b"a STARTTLS\r\nb LOGIN joe secret\r\n")
    assert len(evs) == 2  # the engine would parse on, so the server stops at STARTTLS:
    codec = C.ImapCodec()
    codec.receive_data(b"a STARTTLS\r\nb LOGIN joe secret\r\n")
    ev = codec.next_event()
    assert isinstance(ev, C.CommandEvent) and ev.name == "STARTTLS"
    assert codec.start_tls() == len(b"b LOGIN joe secret\r\n")
    assert codec.next_event() is None
    assert isinstance(events(codec, b"c CAPABILITY\r\n")[0], C.CommandEvent)


def test_append_streams_and_ends() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b'a APPEND Sent (\\Seen $X) "07-Feb-1994 21:52:25 -0800" {11}\r\n')
    assert len(evs) == 1 and isinstance(evs[0], C.AppendStart)
    app = evs[0].append
    assert app == Append("Sent", ("\\Seen", "$X"),
                         dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
                         11, True, False)
    assert not codec.wants_input
    assert codec.accept_append() == b"+ OK\r\n"
    evs = events(codec, b"Hello")
    assert evs == [C.AppendData(b"Hello")]
    evs = events(codec, b" world\r\nb NOOP\r\n")
    assert evs[0] == C.AppendData(b" world")
    assert evs[1] == C.AppendEnd()
    assert isinstance(evs[2], C.CommandEvent)


def test_append_literal_plus_rejected_is_skipped() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b"a APPEND Nope {5+}\r\nHel")
    assert isinstance(evs[0], C.AppendStart)
    codec.reject_append()
    evs = events(codec, b"lo\r\nb NOOP\r\n")
    assert len(evs) == 1 and isinstance(evs[0], C.CommandEvent) and evs[0].name == "NOOP"


def test_append_with_mailbox_literal_and_bad_tail() -> None:
    codec = C.ImapCodec()
    evs = events(codec, b"a APPEND {5}\r\n")
    assert evs == [C.Continue(b"+ OK\r\n")]
    evs = events(codec, b"INBOX {2}\r\n")
    assert isinstance(evs[0], C.AppendStart) and evs[0].append.mailbox == "INBOX"
    codec.accept_append()
    evs = events(codec, b"hi junk\r\n")
    assert evs[0] == C.AppendData(b"hi")
    assert isinstance(evs[1], C.AppendEnd) and evs[1].error is not None


def test_want_line_for_idle_and_authenticate() -> None:
    codec = C.ImapCodec()
    ev = events(codec, b"a IDLE\r\n")[0]
    assert isinstance(ev, C.CommandEvent) and ev.name == "IDLE"
    codec.want_line()
    assert events(codec, b"DONE\r\n") == [C.ContinuationLine(b"DONE")]


def test_fetch_response_streams_literals() -> None:
    chunks = list(C.fetch_response(3, [(b"UID", b"7"), (b"BODY[]", (5, iter([b"ab", b"cde"])))]))
    assert b"".join(chunks) == b"* 3 FETCH (UID 7 BODY[] {5}\r\nabcde)\r\n"
    assert C.tagged(b"a", "NO", "Quota exceeded", "OVERQUOTA") == b"a NO [OVERQUOTA] Quota exceeded\r\n"


def test_byte_at_a_time_gives_the_same_events() -> None:
    data = (b"a LOGIN {3+}\r\njoe pw\r\nb APPEND INBOX {4+}\r\nabcd\r\n"
            b"c SEARCH OR SEEN (FROM \"x\")\r\n")
    whole = C.ImapCodec()
    split = C.ImapCodec()
    got_whole: list[C.Event] = []
    got_split: list[C.Event] = []
    for codec, got, pieces in ((whole, got_whole, [data]),
                               (split, got_split, [data[i:i + 1] for i in range(len(data))])):
        for piece in pieces:
            for ev in events(codec, piece):
                got.append(ev)
                if isinstance(ev, C.AppendStart):
                    codec.accept_append()
        got.extend(events(codec))
    merged = [e for e in got_split if not isinstance(e, C.AppendData)]
    assert [e for e in got_whole if not isinstance(e, C.AppendData)] == merged
    assert b"".join(e.data for e in got_split if isinstance(e, C.AppendData)) == b"abcd"


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_never_raises(seed: int) -> None:
    import random

    rnd = random.Random(seed)
    alphabet = b'aA1 ()[]<>{}+~*%"\\\r\n.:,$-\x00\xff'
    for _ in range(300):
        codec = C.ImapCodec(max_line_length=200, append_limit=50)
        data = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 120)))
        codec.receive_data(b"t1 " + data)
        for _ in range(50):
            ev = codec.next_event()
            if isinstance(ev, C.AppendStart):
                codec.accept_append()
            elif ev is None:
                break


@pytest.mark.parametrize("name, reason", [
    # Dovecot names the leading separator first; the store checks '/' first.
    ("../../x", "Begins with hierarchy separator"),
    ("..x", "Begins with hierarchy separator"),
    ("~x", "Begins with '~'"),
    ("a/b", "Name must not have '/' characters"),
])
def test_escaping_names_are_refused_with_cannot(tmp_path: object, name: str, reason: str) -> None:
    """The answers Dovecot gives to CREATE with these names (same code and wording)."""
    from pathlib import Path

    from mailhorn.mailstore import create_folder
    from mailhorn.mailstore.errors import MailstoreError

    ev = one(b"b CREATE " + name.encode() + b"\r\n")
    assert isinstance(ev, C.CommandEvent)
    assert isinstance(ev.command, Create)
    root = Path(str(tmp_path)) / "Maildir"
    with pytest.raises(MailstoreError) as info:
        create_folder(root, ev.command.mailbox)
    assert C.store_error(b"b", info.value) == f"b NO [CANNOT] Invalid mailbox name: {reason}\r\n".encode()
    assert not (root.parent / "x").exists()
