"""Maildir++ folder names, the folder tree and the ``subscriptions`` file.

What it does
    Maps IMAP mailbox names to directories the way Dovecot's default
    Maildir++ layout does (``mail_location = maildir:~/Maildir``):

    * ``INBOX`` (any case) is the Maildir root itself;
    * every other mailbox ``Name`` is the directory ``.Name`` inside the
      root, and a child ``Name.Sub`` is ``.Name.Sub`` (the hierarchy
      separator is ``.``);
    * non-ASCII names are stored in modified UTF-7 (RFC 3501 §5.1.3), as
      Dovecot does with its default ``mailbox_list_utf8 = no``:
      ``Açaí`` is ``.A&AOc-a&AO0-`` and ``a&b`` is ``.a&-b``.

    Names are checked as Dovecot checks them before creating a mailbox, so a
    name can never leave the Maildir: refused are ``/``, a leading ``~``, a
    leading separator (so ``..`` and ``.x``), adjacent separators, control
    characters, and components longer than a file name may be. One trailing
    separator is dropped (``x.`` is ``x``), as Dovecot does.

    ``subscriptions`` is read in both of Dovecot's formats (version 1: one
    name a line; version 2: a ``V<TAB>2`` line, an empty line, then one name
    a line with the hierarchy separator written as a TAB) and written in
    version 2, names in modified UTF-7.

    Special-use attributes (RFC 6154) come from a name table; the default is
    the one Dovecot's stock configuration declares for its INBOX namespace.
    :func:`parse_special_use` reads the table from the text of main.cf's
    ``mailbox_special_use`` (one ``Name=\\Attribute`` element per mailbox,
    Dovecot's ``mailbox Name { special_use = \\Attribute }`` blocks flattened
    into one Postfix-style list; an element with spaces goes in braces:
    ``{ Sent Messages = \\Sent }``, several attributes are separated by
    spaces).

Parameters read
    None: callers pass the Maildir root and parameter values.

Errors
    :class:`InvalidFolderName` (a ``ValueError``) names the rule a name broke.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from mailhorn.config.maincf import split_list, strip_braces
from mailhorn.mailstore.errors import FolderExistsError, InvalidFolderName, NoSuchFolder

#: Hierarchy separator of the Maildir++ layout.
SEPARATOR: Final = "."
#: The name of the root mailbox.
INBOX: Final = "INBOX"
#: Marks a Maildir++ folder (README.maildirquota: "Within each subdirectory
#: there's an empty file, maildirfolder").
MAILDIRFOLDER: Final = "maildirfolder"
SUBSCRIPTIONS: Final = "subscriptions"
#: Longest file name component (NAME_MAX on Linux file systems).
NAME_MAX: Final = 255

#: RFC 6154 attributes of Dovecot's stock ``15-mailboxes.conf``.
DEFAULT_SPECIAL_USE: Final[dict[str, str]] = {
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Trash": "\\Trash",
    "Sent": "\\Sent",
    "Sent Messages": "\\Sent",
}


# --- modified UTF-7 (RFC 3501 §5.1.3) ---------------------------------------------------

def _is_direct(ch: str) -> bool:
    """Printable US-ASCII other than ``&`` stands for itself."""
    return 0x20 <= ord(ch) <= 0x7E and ch != "&"


def mutf7_encode(name: str) -> str:
    """Encode a Unicode mailbox name to modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.append(ch)
        elif ch == "&":
            flush()
            out.append("&-")
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(text: str) -> str:
    """Decode a modified UTF-7 mailbox name; raises ``ValueError`` when malformed."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            if not _is_direct(ch):
                raise ValueError(f"invalid character {ch!r} in modified UTF-7")
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 shift sequence")
        chunk = text[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                raw = base64.b64decode(b64, validate=True)
                decoded = raw.decode("utf-16-be")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"invalid modified UTF-7 sequence &{chunk}-") from exc
            out.append(decoded)
        i = end + 1
    return "".join(out)


# --- names and directories -----------------------------------------------------------------

def is_inbox(name: str) -> bool:
    """INBOX is case-insensitive (RFC 3501 §5.1)."""
    return name.upper() == INBOX


def validate_name(name: str) -> str:
    """Check a mailbox name (Unicode, ``.`` separated) and return it normalised.

    The rules are Dovecot's for its Maildir++ layout; each error names the rule.
    """
    if is_inbox(name):
        return INBOX
    if name.endswith(SEPARATOR) and not name.endswith(SEPARATOR * 2):
        name = name[:-1]
    if not name:
        raise InvalidFolderName("Invalid mailbox name: Empty name")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidFolderName(f"Invalid mailbox name {name!r}: Control characters not allowed")
    if name.startswith(SEPARATOR):
        raise InvalidFolderName(f"Invalid mailbox name {name!r}: Begins with hierarchy separator")
    if "/" in name:
        raise InvalidFolderName(f"Invalid mailbox name {name!r}: Name must not have '/' characters")
    if name.startswith("~"):
        raise InvalidFolderName(f"Invalid mailbox name {name!r}: Begins with '~'")
    if SEPARATOR * 2 in name or name.endswith(SEPARATOR):
        raise InvalidFolderName(f"Invalid mailbox name {name!r}: Has adjacent hierarchy separators")
    if len(SEPARATOR + mutf7_encode(name)) > NAME_MAX:
        raise InvalidFolderName(f"Invalid mailbox name {name!r}: Name is too long")
    return name


def folder_dirname(name: str) -> str:
    """Directory name of a mailbox inside the root: ``""`` for INBOX, ``.Name`` otherwise."""
    name = validate_name(name)
    if name == INBOX:
        return ""
    return SEPARATOR + mutf7_encode(name)


def folder_path(root: str | os.PathLike[str], name: str) -> Path:
    """Path of a mailbox's Maildir."""
    sub = folder_dirname(name)
    return Path(root) / sub if sub else Path(root)


def name_from_dirname(dirname: str) -> str | None:
    """Mailbox name of a ``.Name`` directory, or None when it is not one."""
    if not dirname.startswith(SEPARATOR) or dirname in (".", ".."):
        return None
    try:
        name = mutf7_decode(dirname[1:])
        return validate_name(name)
    except ValueError:
        return None


def make_maildir(path: Path, *, folder: bool = False) -> None:
    """Create ``cur new tmp`` (mode 0700) under ``path``; ``folder`` adds ``maildirfolder``.

    Existing directories are kept, so this also repairs a partial Maildir.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(mode=0o700, exist_ok=True)
    if folder:
        marker = path / MAILDIRFOLDER
        if not marker.exists():
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)


def is_maildir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds ``cur``, ``new`` and ``tmp`` (directories, or links to them).

    With ``os.stat`` on joined strings rather than ``os.path.isdir`` and
    ``os.path.join``, which are Python functions: a delivery asks this first.
    """
    base = os.fspath(path)
    prefix = base if not base or base.endswith("/") else base + "/"
    for sub in ("cur", "new", "tmp"):
        try:
            mode = os.stat(prefix + sub).st_mode
        except (OSError, ValueError):
            return False
        if not stat.S_ISDIR(mode):
            return False
    return True


def create_folder(root: str | os.PathLike[str], name: str) -> Path:
    """Create a mailbox (and nothing above it: Maildir++ parents are implicit)."""
    path = folder_path(root, name)
    if path == Path(root):
        make_maildir(path)
        return path
    if is_maildir(path):
        raise FolderExistsError(f"Mailbox already exists: {validate_name(name)}")
    make_maildir(path, folder=True)
    return path


def delete_folder(root: str | os.PathLike[str], name: str) -> None:
    """Remove an empty-of-children mailbox directory tree (its messages go with it)."""
    path = folder_path(root, name)
    if path == Path(root):
        raise InvalidFolderName("INBOX can't be deleted")
    if not is_maildir(path):
        raise NoSuchFolder(f"Mailbox doesn't exist: {name}")
    # Rename first so a concurrent reader never sees a half-removed Maildir.
    trash = Path(root) / "tmp" / f"deleting{path.name}.{os.getpid()}"
    os.rename(path, trash)
    for dirpath, dirnames, filenames in os.walk(trash, topdown=False):
        for f in filenames:
            os.unlink(os.path.join(dirpath, f))
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))
    os.rmdir(trash)


def list_folders(root: str | os.PathLike[str]) -> list[str]:
    """Every mailbox under the root: ``INBOX`` first, then the others sorted."""
    rootp = Path(root)
    names: list[str] = []
    try:
        entries = list(os.scandir(rootp))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        name = name_from_dirname(entry.name)
        if name is None or name == INBOX:
            continue
        if is_maildir(Path(entry.path)):
            names.append(name)
    result = [INBOX] if is_maildir(rootp) else []
    return result + sorted(names)


def special_use(name: str, table: Mapping[str, str] | None = None) -> str | None:
    """RFC 6154 attribute of a mailbox name (``\\Sent`` for ``Sent``), or None."""
    return (DEFAULT_SPECIAL_USE if table is None else table).get(name)


#: An RFC 6154 attribute: a backslash and an atom (``\\Sent``, ``\\Archive``, ...).
_USE_ATTRIBUTE: Final = re.compile(r"\\[A-Za-z][A-Za-z0-9]*")


def parse_special_use(value: str) -> dict[str, str]:
    """The name table of a ``mailbox_special_use`` value (see the module doc).

    Raises ``ValueError`` naming the element that is not ``Name=\\Attribute``
    or whose name is not a valid mailbox name. A name given twice keeps its
    last attributes, as a later Dovecot ``mailbox`` block does.
    """
    table: dict[str, str] = {}
    for item in split_list(value):
        element = strip_braces(item)
        name, eq, attrs = element.rpartition("=")
        words = attrs.split()
        if not eq or not name.strip() or not words or not all(_USE_ATTRIBUTE.fullmatch(w) for w in words):
            raise ValueError(f"bad special-use element {item!r}: expected Name=\\Attribute")
        try:
            mailbox = validate_name(name.strip())
        except InvalidFolderName as exc:
            raise ValueError(f"bad special-use element {item!r}: {exc}") from None
        table[mailbox] = " ".join(words)
    return table


# --- subscriptions -------------------------------------------------------------------------

def read_subscriptions(root: str | os.PathLike[str]) -> list[str]:
    """Subscribed mailbox names (Unicode, ``.`` separated), in file order."""
    try:
        data = (Path(root) / SUBSCRIPTIONS).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    lines = data.split("\n")
    version2 = bool(lines) and lines[0] == "V\t2"
    if version2:
        lines = lines[2:]
    names: list[str] = []
    for line in lines:
        if not line:
            continue
        raw = line.replace("\t", SEPARATOR) if version2 else line
        try:
            names.append(mutf7_decode(raw))
        except ValueError:
            names.append(raw)
    return names


def write_subscriptions(root: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Replace ``subscriptions`` atomically (temp file, fsync, rename), format version 2."""
    seen: set[str] = set()
    body = ["V\t2", ""]
    for name in names:
        name = validate_name(name)
        if name in seen:
            continue
        seen.add(name)
        body.append(mutf7_encode(name).replace(SEPARATOR, "\t"))
    data = ("\n".join(body) + "\n").encode("ascii")
    target = Path(root) / SUBSCRIPTIONS
    tmp = target.with_name(f"{SUBSCRIPTIONS}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, target)


def subscribe(root: str | os.PathLike[str], name: str) -> None:
    """Add a name to ``subscriptions`` (no effect when already there)."""
    name = validate_name(name)
    current = read_subscriptions(root)
    if name not in current:
        write_subscriptions(root, [*current, name])


def unsubscribe(root: str | os.PathLike[str], name: str) -> None:
    """Remove a name from ``subscriptions``."""
    name = validate_name(name)
    current = read_subscriptions(root)
    if name in current:
        write_subscriptions(root, [n for n in current if n != name])
