"""Mailbox names for IMAP: LIST/LSUB patterns, STATUS, RENAME and QUOTA answers.

What it does
    :func:`list_lines` answers LIST and LSUB (RFC 3501 §6.3.8–9) with the
    RFC 5258 selection options ``SUBSCRIBED``, ``REMOTE``,
    ``RECURSIVEMATCH`` and ``SPECIAL-USE`` (RFC 6154) and the return
    options ``SUBSCRIBED``, ``CHILDREN`` and ``SPECIAL-USE``. ``*`` matches
    anything, ``%`` anything but the separator ``.``; the reference is put
    before the pattern. Attributes as Dovecot gives them: ``\\HasChildren``
    / ``\\HasNoChildren`` (CHILDREN, RFC 3348) always, the special-use
    attribute (``\\Sent`` …, from ``mailbox_special_use``, see
    :func:`special_use_table`) always, ``\\Noselect`` for a parent that exists only because of its
    children (Maildir++ ``.a.b`` without ``.a``), ``\\Subscribed`` when
    asked. ``LIST "" ""`` gives the separator.

    :func:`status_line` answers STATUS (MESSAGES, RECENT, UIDNEXT,
    UIDVALIDITY, UNSEEN, SIZE) for a mailbox that is not selected; RECENT
    counts files still in ``new/`` (no session has seen them yet).

    :func:`rename_mailbox` renames a folder and its children (``.a`` and
    ``.a.*``). RENAME of INBOX moves its messages into a new folder and
    leaves INBOX empty (RFC 3501 §6.3.5).

    :func:`quota_lines` answers GETQUOTAROOT/GETQUOTA (RFC 2087) from
    ``maildirsize``: one root, ``User quota`` (Dovecot's default name),
    STORAGE in kilobytes and MESSAGE counts.

Parameters read
    ``mailbox_special_use`` (:func:`special_use_table`).

Errors
    The mail store's (:class:`InvalidFolderName`, :class:`NoSuchFolder`,
    :class:`FolderExistsError`); :class:`ConfigError` for a bad
    ``mailbox_special_use``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.imap import quote
from mailhorn.imap.parse import ListCmd, Status
from mailhorn.mailstore import folders
from mailhorn.mailstore import quota as quotamod
from mailhorn.mailstore.errors import FolderExistsError, InvalidFolderName, NoSuchFolder
from mailhorn.mailstore.maildir import Mailbox
from mailhorn.imap.mailbox import SelectedMailbox

#: The one quota root (Dovecot's default ``quota = maildir:User quota``).
QUOTA_ROOT = "User quota"
SEP = folders.SEPARATOR


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    text = reference + pattern if reference and not pattern.startswith(SEP) else pattern
    out = []
    for ch in text:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(r"[^.]*")
        else:
            out.append(re.escape(ch))
    body = "".join(out)
    # INBOX is case-insensitive, also as the start of a pattern (RFC 3501 §5.1).
    if text[:5].upper() == "INBOX" and (len(text) == 5 or text[5] in (SEP, "*", "%")):
        body = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(body + r"\Z", re.DOTALL)


def _encode(name: str) -> bytes:
    return quote.astring(folders.mutf7_encode(name).encode("ascii"))


def _line(kind: str, attrs: list[str], name: str) -> bytes:
    return (f"* {kind} (" + " ".join(attrs) + ') "." ').encode("ascii") + _encode(name) + b"\r\n"


def _tree(root: Path) -> tuple[list[str], set[str]]:
    """Existing mailboxes and implied parents."""
    names = folders.list_folders(root)
    existing = set(names)
    implied: set[str] = set()
    for name in names:
        parts = name.split(SEP)
        for i in range(1, len(parts)):
            parent = SEP.join(parts[:i])
            if parent not in existing:
                implied.add(parent)
    return names, implied


@functools.lru_cache(maxsize=16)
def _special_use(value: str) -> Mapping[str, str]:
    return folders.parse_special_use(value)


def special_use_table(config: Config) -> Mapping[str, str]:
    """The special-use names of ``mailbox_special_use`` (parsed once per value)."""
    try:
        return _special_use(config.get("mailbox_special_use"))
    except ValueError as exc:
        file, line = config.where("mailbox_special_use")
        raise ConfigError(str(exc), file=file, line=line, param="mailbox_special_use") from None


def list_lines(root: Path, cmd: ListCmd, special_use: Mapping[str, str] | None = None) -> list[bytes]:
    """The untagged lines of LIST or LSUB (``special_use``: name table, None: the default)."""
    kind = "LSUB" if cmd.lsub else "LIST"
    if not cmd.lsub and cmd.patterns == ("",):
        return [b'* LIST (\\Noselect) "." ""\r\n']
    regexes = [_pattern(cmd.reference, p) for p in cmd.patterns]
    names, implied = _tree(root)
    existing = set(names)
    subscribed = folders.read_subscriptions(root)
    subs = set(subscribed)
    every = sorted(existing | implied, key=lambda n: (n != folders.INBOX, n))
    children = {n for n in every for m in every if m.startswith(n + SEP)}
    want_subs = "SUBSCRIBED" in cmd.select_options
    want_special = "SPECIAL-USE" in cmd.select_options
    show_subscribed = want_subs or "SUBSCRIBED" in cmd.return_options
    out: list[bytes] = []
    if cmd.lsub or want_subs:
        candidates = [n for n in subscribed if n in existing or n in implied or True]
    else:
        candidates = every
    seen: set[str] = set()
    for name in candidates:
        if name in seen or not any(r.match(name) for r in regexes):
            continue
        seen.add(name)
        attrs: list[str] = []
        if cmd.lsub:
            if name not in existing:
                attrs.append("\\Noselect")
            out.append(_line(kind, attrs, name))
            continue
        if name not in existing:
            attrs.append("\\NonExistent" if name not in implied else "\\Noselect")
        if name in existing or name in implied:
            attrs.append("\\HasChildren" if name in children else "\\HasNoChildren")
        use = folders.special_use(name, special_use)
        if want_special and use is None:
            continue
        if show_subscribed and name in subs:
            attrs.append("\\Subscribed")
        if use is not None:
            attrs.append(use)
        out.append(_line(kind, attrs, name))
    return out


def _status_items(cmd: Status, values: dict[str, int]) -> bytes:
    body = " ".join(f"{item} {values[item]}" for item in cmd.items)
    return b"* STATUS " + _encode(folders.validate_name(cmd.mailbox)) + b" (" + body.encode() + b")\r\n"


def status_line(root: Path, cmd: Status) -> bytes:
    box = Mailbox(root, folders.validate_name(cmd.mailbox))
    messages = box.sync()
    values = {
        "MESSAGES": len(messages),
        "RECENT": sum(1 for m in messages if m.recent_dir),
        "UIDNEXT": box.next_uid,
        "UIDVALIDITY": box.uidvalidity,
        "UNSEEN": sum(1 for m in messages if "S" not in m.flags),
        "SIZE": sum(m.vsize if m.vsize is not None else m.size for m in messages),
    }
    return _status_items(cmd, values)


def status_of_view(view: SelectedMailbox, cmd: Status) -> bytes:
    entries = view.entries
    values = {
        "MESSAGES": len(entries),
        "RECENT": view.recent_count,
        "UIDNEXT": view.uidnext,
        "UIDVALIDITY": view.uidvalidity,
        "UNSEEN": sum(1 for e in entries if "S" not in e.msg.flags),
        "SIZE": sum(e.msg.vsize if e.msg.vsize is not None else e.msg.size for e in entries),
    }
    return _status_items(cmd, values)


def rename_mailbox(root: Path, old: str, new: str) -> None:
    """RENAME (RFC 3501 §6.3.5) in the Maildir++ layout."""
    new_name = folders.validate_name(new)
    new_path = folders.folder_path(root, new_name)
    if folders.is_inbox(new_name) or folders.is_maildir(new_path):
        raise FolderExistsError(f"Mailbox already exists: {new_name}")
    old_name = folders.validate_name(old)
    if old_name == folders.INBOX:
        folders.create_folder(root, new_name)
        for sub in ("new", "cur"):
            for entry in os.scandir(root / sub):
                if not entry.name.startswith("."):
                    os.rename(entry.path, new_path / sub / entry.name)
        return
    if new_name.startswith(old_name + SEP):
        raise InvalidFolderName("Invalid mailbox name: Can't rename mailbox under itself")
    names, implied = _tree(root)
    moving = [n for n in names if n == old_name or n.startswith(old_name + SEP)]
    if not moving:
        raise NoSuchFolder(f"Mailbox doesn't exist: {old_name}")
    for name in moving:
        target = new_name + name[len(old_name):]
        if folders.is_maildir(folders.folder_path(root, target)):
            raise FolderExistsError(f"Mailbox already exists: {target}")
    for name in moving:
        target = new_name + name[len(old_name):]
        os.rename(folders.folder_path(root, name), folders.folder_path(root, target))


def quota_lines(root: Path, limits: quotamod.QuotaLimits | None, mailbox: str | None) -> list[bytes]:
    """``* QUOTAROOT`` (when ``mailbox`` is given) and ``* QUOTA`` lines (RFC 2087 §5)."""
    usage = quotamod.get_usage(root, limits)
    lines: list[bytes] = []
    if mailbox is not None:
        head = b"* QUOTAROOT " + _encode(folders.validate_name(mailbox))
        if usage is None:
            return [head + b"\r\n"]
        lines.append(head + b' "' + QUOTA_ROOT.encode() + b'"\r\n')
    if usage is None:
        return lines
    resources: list[str] = []
    if usage.limits.storage:
        resources.append(f"STORAGE {usage.used_bytes // 1024} {usage.limits.storage // 1024}")
    if usage.limits.messages:
        resources.append(f"MESSAGE {usage.used_count} {usage.limits.messages}")
    lines.append(f'* QUOTA "{QUOTA_ROOT}" (' .encode() + " ".join(resources).encode() + b")\r\n")
    return lines


__all__ = ["QUOTA_ROOT", "list_lines", "quota_lines", "rename_mailbox", "special_use_table", "status_line",
           "status_of_view"]
