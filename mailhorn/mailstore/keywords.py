"""``dovecot-keywords``: IMAP keywords stored as the letters ``a``..``z`` in file names.

What it does
    Dovecot keeps up to 26 keywords per mailbox in the Maildir file name's
    flags field as lower-case letters; ``dovecot-keywords`` maps each letter's
    index (0 is ``a``) to the keyword's name, one ``<index> <name>`` a line
    (Dovecot documentation, "Maildir Mailbox Format", *IMAP Keywords*)::

        0 $Junk
        1 $NonJunk

    The file needs no lock to be read; writers hold ``dovecot-uidlist.lock``
    and replace it with ``rename()``, never editing it in place.

Parameters read
    None.

Errors
    :class:`~mailhorn.mailstore.errors.MailstoreError` when all 26 letters are
    used; ``OSError`` from the file system.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from mailhorn.mailstore.errors import MailstoreError

KEYWORDS: Final = "dovecot-keywords"
LETTERS: Final = string.ascii_lowercase


class KeywordMap:
    """The index <-> name table of one mailbox."""

    def __init__(self, names: dict[int, str] | None = None) -> None:
        self.names: dict[int, str] = dict(names or {})

    @classmethod
    def read(cls, maildir: Path) -> KeywordMap:
        try:
            text = (maildir / KEYWORDS).read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return cls()
        names: dict[int, str] = {}
        for line in text.split("\n"):
            idx, sep, name = line.partition(" ")
            if sep and idx.isdigit() and int(idx) < len(LETTERS) and name:
                names[int(idx)] = name
        return cls(names)

    def write(self, maildir: Path) -> None:
        """Replace the file atomically. Caller holds ``dovecot-uidlist.lock``."""
        data = "".join(f"{i} {self.names[i]}\n" for i in sorted(self.names)).encode("utf-8")
        tmp = maildir / f"{KEYWORDS}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, maildir / KEYWORDS)

    def name_of(self, letter: str) -> str | None:
        """Keyword name of a file-name letter, None when the letter is not mapped."""
        idx = LETTERS.find(letter)
        return self.names.get(idx) if idx >= 0 and len(letter) == 1 else None

    def letter_of(self, name: str) -> str | None:
        """File-name letter of a keyword (exact name match), None when it has none yet."""
        for idx, known in self.names.items():
            if known == name:
                return LETTERS[idx]
        return None

    def assign(self, names: Iterable[str]) -> bool:
        """Give a letter to every name lacking one; True when the table changed."""
        changed = False
        for name in names:
            if self.letter_of(name) is not None:
                continue
            free = [i for i in range(len(LETTERS)) if i not in self.names]
            if not free:
                raise MailstoreError(f"no free keyword letter for {name!r} (26 in use)")
            self.names[free[0]] = name
            changed = True
        return changed

    def names_of(self, letters: str) -> tuple[str, ...]:
        """Keyword names of the lower-case letters of a flags field, in letter order."""
        out: list[str] = []
        for letter in sorted(set(letters)):
            name = self.name_of(letter)
            if name is not None:
                out.append(name)
        return tuple(out)


def valid_keyword(name: str) -> bool:
    """An IMAP ``flag-keyword`` is an atom (RFC 3501 §9): no specials, controls or space."""
    specials = set('(){ %*"\\]')
    return bool(name) and all(0x20 < ord(c) < 0x7F and c not in specials for c in name)
