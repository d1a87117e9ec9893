"""The same Maildir opened by mailhorn and by the real Dovecot (doveadm).

Each test writes with one side and reads with the other: UIDs, flags,
keywords, sizes, contents, folders, subscriptions and quota must agree.
"""

from __future__ import annotations

import io

from mailhorn.mailstore import folders, quota
from mailhorn.mailstore.maildir import Mailbox
from mailhorn.mailstore.writer import deliver
from tests.mailstore.conftest import Dovecot


def _msg(n: int, crlf: bool = False) -> bytes:
    eol = b"\r\n" if crlf else b"\n"
    return eol.join([b"From: a@example.org", f"Subject: message {n}".encode(), b"",
                     f"body {n}".encode() * (n + 1), b""])


def _flags(value: str) -> set[str]:
    return {f for f in value.split() if f != "\\Recent"}


def test_mailhorn_delivers_dovecot_reads_same_uids_flags_sizes(dovecot: Dovecot) -> None:
    root = dovecot.maildir
    folders.make_maildir(root)
    sent = []
    for n in range(6):
        flags = "S" if n % 2 else ""
        kws = ("$Label1",) if n == 3 else ()
        sent.append(deliver(root, io.BytesIO(_msg(n, crlf=n == 5)), flags=flags, keywords=kws))
    box = Mailbox(root)
    listed = box.sync()
    assert [m.uid for m in listed] == [1, 2, 3, 4, 5, 6]
    rows = dovecot.fetch("uid flags size.physical size.virtual guid")
    assert [int(r["uid"]) for r in rows] == [m.uid for m in listed]
    for row, msg, d in zip(rows, listed, sent):
        assert row["guid"] == msg.base
        assert int(row["size.physical"]) == msg.size == d.size
        assert int(row["size.virtual"]) == msg.vsize == d.vsize
        assert _flags(row["flags"]) == set(msg.imap_flags())
    assert _flags(rows[3]["flags"]) == {"\\Seen", "$Label1"}
    for n, msg in enumerate(listed):
        assert dovecot.text(msg.uid) == _msg(n, crlf=n == 5)
    status = dovecot.status()
    assert int(status["uidvalidity"]) == box.uidvalidity
    assert int(status["uidnext"]) == box.next_uid == 7


def test_dovecot_saves_mailhorn_reads_same_uids_keywords_flags(dovecot: Dovecot) -> None:
    for n in range(4):
        dovecot.run("save", stdin=_msg(n))
    dovecot.run("flags", "add", "\\Seen \\Flagged $Junk", "mailbox", "INBOX", "uid", "2")
    dovecot.run("flags", "add", "\\Answered NonJunk", "mailbox", "INBOX", "uid", "4")
    dovecot.run("expunge", "mailbox", "INBOX", "uid", "3")
    rows = dovecot.fetch("uid guid flags size.physical")
    listed = Mailbox(dovecot.maildir).sync()
    assert [m.uid for m in listed] == [int(r["uid"]) for r in rows] == [1, 2, 4]
    for row, msg in zip(rows, listed):
        assert row["guid"] == msg.base
        assert int(row["size.physical"]) == msg.size
        assert _flags(row["flags"]) == set(msg.imap_flags())
    assert listed[1].flags == "FS" and listed[1].keywords == ("$Junk",)
    assert listed[2].flags == "R" and listed[2].keywords == ("NonJunk",)
    assert b"".join(Mailbox(dovecot.maildir).read(listed[0])) == _msg(0)


def test_flag_changes_and_expunges_cross_over(dovecot: Dovecot) -> None:
    root = dovecot.maildir
    for n in range(3):
        deliver(root, io.BytesIO(_msg(n)))
    box = Mailbox(root)
    first = box.sync()
    dovecot.fetch("uid")  # Dovecot indexes the mailbox as it is now
    box.set_flags(first[0], add="S", add_keywords=["Important"])
    box.expunge([first[1]])
    rows = dovecot.fetch("uid flags")
    assert [int(r["uid"]) for r in rows] == [1, 3]
    assert _flags(rows[0]["flags"]) == {"\\Seen", "Important"}
    # Dovecot changes flags and delivers; mailhorn keeps the UIDs and sees the change.
    dovecot.run("flags", "remove", "\\Seen", "mailbox", "INBOX", "uid", "1")
    dovecot.run("save", stdin=_msg(9))
    again = box.sync()
    assert [m.uid for m in again] == [1, 3, 4]
    assert again[0].flags == "" and again[0].keywords == ("Important",)


def test_uids_assigned_by_mailhorn_survive_dovecot_and_back(dovecot: Dovecot) -> None:
    root = dovecot.maildir
    for n in range(3):
        deliver(root, io.BytesIO(_msg(n)))
    box = Mailbox(root)
    mine = {m.base: m.uid for m in box.sync()}
    dovecot.run("save", stdin=_msg(7))
    deliver(root, io.BytesIO(_msg(8)))
    theirs = {r["guid"]: int(r["uid"]) for r in dovecot.fetch("uid guid")}
    for base, uid in mine.items():
        assert theirs[base] == uid
    assert sorted(theirs.values()) == [1, 2, 3, 4, 5]
    assert {m.base: m.uid for m in Mailbox(root).sync()} == theirs


def test_folders_names_and_subscriptions_agree(dovecot: Dovecot) -> None:
    root = dovecot.maildir
    folders.make_maildir(root)
    for name in ("Enviados", "Açaí", "a&b", "Projetos.2024"):
        folders.create_folder(root, name)
    folders.subscribe(root, "Açaí")
    folders.subscribe(root, "Projetos.2024")
    listed = set(dovecot.run("mailbox", "list").stdout.decode().split("\n")) - {""}
    assert {"INBOX", "Enviados", "Açaí", "a&b", "Projetos.2024"} <= listed
    subscribed = set(dovecot.run("mailbox", "list", "-s").stdout.decode().split("\n")) - {""}
    assert subscribed == {"Açaí", "Projetos.2024"}
    dovecot.run("mailbox", "create", "Lixeira", "Coisas.Sub", "Ação")
    dovecot.run("mailbox", "subscribe", "Coisas.Sub", "Ação")
    assert {"Lixeira", "Coisas.Sub", "Ação"} <= set(folders.list_folders(root))
    assert set(folders.read_subscriptions(root)) == {"Açaí", "Projetos.2024", "Coisas.Sub", "Ação"}
    deliver(folders.folder_path(root, "Ação"), io.BytesIO(_msg(1)))
    assert [r["uid"] for r in dovecot.fetch("uid", mailbox="Ação")] == ["1"]


def test_quota_written_by_mailhorn_is_read_by_dovecot(dovecot: Dovecot) -> None:
    root = dovecot.maildir
    folders.make_maildir(root)
    quota.set_limits(root, quota.QuotaLimits(10_240_000, 50))
    total = 0
    for n in range(3):
        total += deliver(root, io.BytesIO(_msg(n) + b"x" * 3000 + b"\n")).size
    out = dovecot.run("-f", "tab", "quota", "get").stdout.decode().split("\n")
    rows = {line.split("\t")[1]: line.split("\t") for line in out[1:] if line}
    header = out[0].split("\t")
    storage = dict(zip(header, rows["STORAGE"]))
    messages = dict(zip(header, rows["MESSAGE"]))
    assert storage["Limit"] == "10000"
    # doveadm shows kilobytes rounded up.
    assert storage["Value"] == str((total + 1023) // 1024)
    assert messages["Limit"] == "50" and messages["Value"] == "3"
    # Dovecot's own saves and expunges append lines that mailhorn sums.
    dovecot.run("save", stdin=_msg(4))
    dovecot.run("expunge", "mailbox", "INBOX", "uid", "1")
    usage = quota.get_usage(root)
    assert usage is not None
    assert usage.used_count == 3
    assert usage.used_bytes == quota.count_usage(root)[0]
