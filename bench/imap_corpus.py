"""Realistic mailboxes for the IMAP benchmark, written with mailhorn's mail store.

Usage (from the repository)::

    .venv/bin/python bench/imap_corpus.py DIR [--messages 2000] [--seed 1]

writes one Maildir at DIR (``cur/ new/ tmp/``, ``dovecot-uidlist``,
``dovecot-keywords``) holding MESSAGES messages; :func:`clone_maildir` then
makes one mailbox per benchmark user from it.

The messages are what a person's INBOX holds, in these shares (sizes are of
the whole message):

* 70 % short plain-text mail, 1-6 kB, some quoted-printable with accented
  Portuguese/Italian/Romanian words, some 7-bit;
* 22 % newsletters and replies: ``multipart/alternative`` with a text and an
  HTML part, 8-40 kB;
* 7 % mail with one or two base64 attachments (``multipart/mixed``), 60-250 kB;
* 1 % large attachments, 0.5-1.5 MB.

Each has a realistic header block (a few ``Received:`` lines, DKIM-like
signature, ``Message-ID``, ``Date`` over the last year, ``List-Id`` for
newsletters). Flags are as a reader leaves them: 85 % ``\\Seen`` (the older
ones), 4 % ``\\Flagged``, 6 % ``\\Answered``, a few ``$Forwarded`` and
``$Junk``-style keywords; the newest 2 % are unseen in ``new/``. Delivery goes
through :func:`mailhorn.mailstore.deliver` (fsynced, Dovecot's file names with
``,S=`` and ``,W=``), then one :meth:`Mailbox.sync` writes the
``dovecot-uidlist`` so both servers start from the same UIDs.

The corpus is deterministic for a seed: the same mailboxes for every run.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import sys
import time
from email.utils import format_datetime
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mailhorn.mailstore import deliver, open_mailbox  # noqa: E402

#: Maildir files rewritten in place or appended to: each mailbox gets its own copy.
CONTROL_FILES = ("dovecot-uidlist", "dovecot-keywords", "dovecot-uidvalidity", "subscriptions", "maildirsize")

_WORDS = (
    "reunião relatório orçamento projeto entrega cliente contrato fatura proposta "
    "riunione preventivo consegna fornitore scadenza ordine spedizione pagamento "
    "întâlnire factură livrare comandă ofertă termen plată raport "
    "meeting invoice schedule update review draft release budget quarter team "
    "the a of to and in for on with is are was be this that we you please thanks"
).split()
_NAMES = ("João Silva", "Maria Souza", "Luca Bianchi", "Giulia Rossi", "Andrei Popescu",
          "Ioana Ionescu", "Alice Martin", "Bob Smith", "Chen Wei", "Fatima Zahra")
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.it", "correio.example.pt")
_LISTS = ("news.example.com", "promo.example.org", "dev-list.example.net")


def _text(rng: random.Random, size: int) -> str:
    """Wrapped prose of about ``size`` characters."""
    lines, line, total = [], [], 0
    while total < size:
        word = rng.choice(_WORDS)
        line.append(word)
        total += len(word) + 1
        if sum(len(w) + 1 for w in line) > 68:
            lines.append(" ".join(line))
            line = []
            if rng.random() < 0.12:
                lines.append("")
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def _qp(text: str) -> str:
    """Quoted-printable (RFC 2045 §6.7) of UTF-8 text, soft-wrapped at 76."""
    out = []
    for line in text.split("\n"):
        encoded, width = [], 0
        for byte in line.encode("utf-8"):
            piece = chr(byte) if 33 <= byte <= 126 and byte != 61 or byte == 32 else f"={byte:02X}"
            if width + len(piece) > 75:
                encoded.append("=\n")
                width = 0
            encoded.append(piece)
            width += len(piece)
        out.append("".join(encoded))
    return "\n".join(out)


def _b64(data: bytes) -> str:
    raw = base64.b64encode(data).decode()
    return "\n".join(raw[i:i + 76] for i in range(0, len(raw), 76)) + "\n"


def _address(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(_NAMES)
    local = name.split()[0].lower().encode("ascii", "ignore").decode() or "user"
    return name, f"{local}.{rng.randrange(100)}@{rng.choice(_DOMAINS)}"


def _encoded_word(name: str) -> str:
    """RFC 2047 B encoding for a non-ASCII display name."""
    if name.isascii():
        return f'"{name}"'
    return "=?UTF-8?B?" + base64.b64encode(name.encode()).decode() + "?="


def _headers(rng: random.Random, index: int, when: float, kind: str, recipient: str) -> list[str]:
    name, sender = _address(rng)
    date = format_datetime(datetime.fromtimestamp(when, timezone.utc))
    subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 9))).capitalize()
    host = rng.choice(_DOMAINS)
    lines = [
        f"Return-Path: <{sender}>",
        f"Delivered-To: {recipient}",
    ]
    for hop in range(rng.randrange(2, 5)):
        lines.append(f"Received: from mx{hop}.{host} (mx{hop}.{host} [192.0.2.{rng.randrange(1, 255)}])\n"
                     f"\tby mail.example.test (mailhorn) with ESMTPS id {rng.getrandbits(40):010X}\n"
                     f"\tfor <{recipient}>; {date}")
    signature = _b64(rng.randbytes(128)).replace("\n", "\n\t ").rstrip()
    lines += [
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={host}; s=sel1;\n"
        f"\th=from:to:subject:date:message-id; bh={_b64(rng.randbytes(32)).strip()};\n\tb={signature}",
        f"From: {_encoded_word(name)} <{sender}>",
        f"To: <{recipient}>",
        f"Subject: {'Re: ' if kind == 'reply' else ''}{subject}",
        f"Date: {date}",
        f"Message-ID: <{index}.{rng.getrandbits(48):012x}@{host}>",
        "MIME-Version: 1.0",
    ]
    if kind == "newsletter":
        listid = rng.choice(_LISTS)
        lines += [f"List-Id: <{listid}>", f"List-Unsubscribe: <mailto:unsubscribe@{listid}>"]
    if kind == "reply":
        lines.append(f"In-Reply-To: <{index - 1}.{rng.getrandbits(48):012x}@{host}>")
    return lines


def make_message(rng: random.Random, index: int, when: float, recipient: str) -> bytes:
    """One message of a kind drawn with the shares in the module text."""
    roll = rng.random()
    boundary = f"=_mh_{rng.getrandbits(64):016x}"
    if roll < 0.70:
        kind = "reply" if rng.random() < 0.3 else "plain"
        body = _text(rng, rng.randrange(600, 5000))
        head = _headers(rng, index, when, kind, recipient)
        if rng.random() < 0.5:
            head += ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable"]
            body = _qp(body)
        else:
            head += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
            body = body.encode("ascii", "replace").decode()
        parts = body
    elif roll < 0.92:
        head = _headers(rng, index, when, "newsletter", recipient)
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        text = _text(rng, rng.randrange(2000, 12000))
        html = "<html><body>" + "".join(f"<p>{p}</p>\n" for p in _text(rng, rng.randrange(4000, 25000)).split("\n\n")) \
            + "</body></html>\n"
        parts = (f"--{boundary}\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n"
                 f"{_qp(text)}\n--{boundary}\nContent-Type: text/html; charset=UTF-8\n"
                 f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(html)}\n--{boundary}--\n")
    else:
        large = roll >= 0.99
        head = _headers(rng, index, when, "plain", recipient)
        head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        parts = (f"--{boundary}\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n"
                 f"{_qp(_text(rng, rng.randrange(300, 2000)))}\n")
        for number in range(1 if large or rng.random() < 0.7 else 2):
            size = rng.randrange(400_000, 1_100_000) if large else rng.randrange(40_000, 180_000)
            kind, ext = rng.choice((("application/pdf", "pdf"), ("image/jpeg", "jpg"),
                                    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")))
            parts += (f"--{boundary}\nContent-Type: {kind}; name=\"anexo{number}.{ext}\"\n"
                      f"Content-Disposition: attachment; filename=\"anexo{number}.{ext}\"\n"
                      f"Content-Transfer-Encoding: base64\n\n{_b64(rng.randbytes(size))}")
        parts += f"--{boundary}--\n"
    return ("\n".join(head) + "\n\n" + parts).encode("utf-8")


def make_corpus(maildir: Path, messages: int, seed: int = 1, recipient: str = "bench@example.test") -> int:
    """Deliver ``messages`` messages into ``maildir`` and write its uidlist; the total size in bytes."""
    rng = random.Random(seed)
    now = time.time()
    start = now - 365 * 86400
    total = 0
    for index in range(messages):
        when = start + (now - start) * index / max(messages, 1) + rng.random() * 600
        data = make_message(rng, index, when, recipient)
        age = (messages - index) / messages
        flags, keywords = "", []
        if age > 0.02:
            flags += "S" if rng.random() < 0.85 or age > 0.3 else ""
            if rng.random() < 0.06:
                flags += "R"
            if rng.random() < 0.04:
                flags += "F"
            if rng.random() < 0.02:
                keywords.append("$Forwarded")
            if rng.random() < 0.01:
                keywords.append("$Junk")
        deliver(maildir, [data], flags=flags, keywords=keywords, internal_date=when, enforce_quota=False)
        total += len(data)
    open_mailbox(maildir).sync()
    return total


def clone_maildir(source: Path, target: Path, uid: int, gid: int) -> None:
    """A mailbox for one user: message files hard-linked, control files copied.

    Maildir never changes a message file in place (a flag change renames it,
    an expunge unlinks it), so users can share the files' inodes; the files
    that are rewritten or appended to (:data:`CONTROL_FILES`) are copied.
    Everything is owned by ``uid``:``gid`` (chown on the shared inodes is done
    once, on ``source``, by the caller).
    """
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        dest = target / rel
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(dest, uid, gid)
        for name in filenames:
            if name.startswith("dovecot.index") or name == "dovecot-uidlist.lock":
                continue
            src_file = Path(dirpath) / name
            if name in CONTROL_FILES:
                shutil.copy2(src_file, dest / name)
                os.chown(dest / name, uid, gid)
            else:
                os.link(src_file, dest / name)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), uid, gid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("maildir", type=Path)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    total = make_corpus(args.maildir, args.messages, args.seed)
    print(f"{args.messages} messages, {total / 1e6:.1f} MB in {time.monotonic() - started:.1f}s: {args.maildir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
