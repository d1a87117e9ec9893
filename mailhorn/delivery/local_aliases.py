"""Alias, ``.forward`` and ``:include:`` expansion for local delivery (aliases(5), local(8)).

What it does
    :class:`AliasMaps` searches ``alias_maps`` in order (the first table
    that knows a name wins; a table's temporary error stops the search and
    defers the delivery) and tells who owns the table that answered:
    local(8) runs ``/file`` and ``|command`` destinations of an alias with
    the privileges of the alias database's owner, or of ``default_privs``
    when root owns it (and for tables without an owner, such as SQL).

    :func:`expand_value` turns an alias value, a ``.forward`` file or an
    ``:include:`` file into :class:`Destination` values: addresses (which
    local(8) hands back to cleanup as new recipients), files, commands and
    includes, each marked with where it came from (``alias``, ``forward``,
    ``include``) so that ``allow_mail_to_commands`` and
    ``allow_mail_to_files`` can be applied, and with the unmatched address
    extension propagated when ``propagate_unmatched_extensions`` says so.

    ``.forward`` and ``:include:`` files are read with the privileges of the
    user (or alias owner) they belong to, through
    :mod:`mailhorn.delivery.privs`; lines starting with ``#`` are comments,
    and destinations are separated by commas or newlines as in an alias value.

    ``owner-NAME``: when an alias ``NAME`` has an ``owner-NAME`` alias,
    mail forwarded for it goes out with the envelope sender
    ``owner-NAME@$myorigin`` (or the owner alias's value with
    ``expand_owner_alias = yes``), so errors from list members go to the list
    owner (aliases(5), ``owner_request_special``).

Parameters read
    ``alias_maps``, ``default_privs``, ``recipient_delimiter``,
    ``propagate_unmatched_extensions``, ``owner_request_special``,
    ``expand_owner_alias``, ``myorigin``.

Errors
    ``TableRetry`` from a table (the caller defers); ``OSError`` and
    :class:`~mailhorn.delivery.privs.HelperError` from reading files.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Literal

from mailhorn import log
from mailhorn.address.quote import split_internal
from mailhorn.config.load import Config
from mailhorn.delivery.privs import Identity, default_privs_identity, run_as
from mailhorn.tables.aliases import AliasTarget, parse_targets
from mailhorn.tables.base import Table, TableConfigError
from mailhorn.tables.registry import open_table, split_spec

Origin = Literal["alias", "forward", "include"]

#: Table types whose name is a file whose owner owns the aliases.
_FILE_TYPES = frozenset({"hash", "btree", "texthash", "regexp", "pcre", "cidr", "sqlite", "inline"})


@dataclass(frozen=True)
class Destination:
    """One place to deliver to, found by expansion."""

    target: AliasTarget
    origin: Origin
    identity: Identity
    """Whose privileges a file or command destination runs with."""
    sender: str | None = None
    """The envelope sender for forwarded addresses (an owner- alias), None: unchanged."""


@dataclass(frozen=True)
class AliasHit:
    """An alias found in ``alias_maps``."""

    name: str
    value: str
    owner: Identity


class AliasMaps:
    """``alias_maps`` searched in order, with each table's owner."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._tables: list[tuple[str, Table]] | None = None

    def tables(self) -> list[tuple[str, Table]]:
        if self._tables is None:
            tables: list[tuple[str, Table]] = []
            for spec in self.config.list("alias_maps"):
                kind, _ = split_spec(spec)
                if kind == "nis":
                    # No NIS domain here: Postfix's dict_nis then finds nothing.
                    continue
                tables.append((spec, open_table(spec, self.config)))
            self._tables = tables
        return self._tables

    def owner(self, spec: str) -> Identity:
        """The privileges for destinations of aliases from table ``spec``."""
        kind, name = split_spec(spec)
        uid: int | None = None
        if kind in _FILE_TYPES and name.startswith("/"):
            for path in (name + ".sqlite", name) if kind in ("hash", "btree") else (name,):
                try:
                    uid = os.stat(path).st_uid
                    break
                except OSError:
                    continue
        if uid is not None and uid != 0:
            try:
                return Identity.from_passwd(pwd.getpwuid(uid))
            except KeyError:
                return Identity(str(uid), uid, uid)
        return default_privs_identity(self.config)

    def lookup(self, name: str) -> AliasHit | None:
        """The alias ``name`` (lower case), or None; raises TableRetry."""
        for spec, table in self.tables():
            value = table.lookup(name)
            if value is not None:
                return AliasHit(name, value, self.owner(spec))
        return None

    def find_owner(self, name: str) -> str | None:
        """The ``owner-NAME`` sender for alias ``name``, when that alias exists."""
        if not self.config.bool("owner_request_special"):
            return None
        owner = f"owner-{name}"
        for _spec, table in self.tables():
            value = table.lookup(owner)
            if value is not None:
                if self.config.bool("expand_owner_alias"):
                    first = targets(value)
                    if first and first[0].kind == "address":
                        return qualify(first[0].text, self.config)
                return qualify(owner, self.config)
        return None


def qualify(address: str, config: Config) -> str:
    """``name`` -> ``name@$myorigin`` (Postfix's canon_addr_internal for local names)."""
    if "@" in address:
        return address
    return f"{address}@{config.get('myorigin')}"


def with_extension(address: str, delimiter: str, extension: str | None) -> str:
    """``a@x`` + ``ext`` -> ``a+ext@x`` (propagate_unmatched_extensions)."""
    if not extension or not delimiter:
        return address
    local, domain = split_internal(address)
    if any(ch in local for ch in delimiter):
        return address
    local = f"{local}{delimiter[0]}{extension}"
    return local if domain is None else f"{local}@{domain}"


def _elements(value: str) -> list[str]:
    """An alias value split at commas outside quotes, brackets and comments."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    depth = 0
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in "(<[":
            depth += 1
        elif not quoted and ch in ")>]":
            depth = max(depth - 1, 0)
        elif ch == "," and not quoted and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return items


def targets(value: str) -> list[AliasTarget]:
    """parse_targets, keeping the ``\\name`` form that means "this user's own mailbox".

    aliases(5) and local(8): a name escaped with a backslash is delivered
    to the mailbox without further alias or .forward expansion.
    """
    out: list[AliasTarget] = []
    for element in _elements(value):
        text = element.strip()
        if text.startswith("\\") and len(text) > 1 and not any(c in text for c in ' "(<,'):
            out.append(AliasTarget("address", text))
        else:
            out.extend(parse_targets(element))
    return out


def expand_value(value: str, *, origin: Origin, identity: Identity, sender: str | None = None,
                 extension: str | None = None, delimiter: str = "") -> list[Destination]:
    """The destinations of an alias value or forward/include file text."""
    out: list[Destination] = []
    for target in targets(value):
        if target.kind == "address" and extension:
            target = AliasTarget("address", with_extension(target.text, delimiter, extension))
        out.append(Destination(target, origin, identity, sender))
    return out


def file_text_to_value(text: str) -> str:
    """A ``.forward`` or ``:include:`` file as an alias value (comments dropped)."""
    lines = [line.strip() for line in text.splitlines()]
    return ", ".join(line for line in lines if line and not line.startswith("#"))


async def read_list_file(path: str, identity: Identity) -> str | None:
    """The text of a ``.forward`` or ``:include:`` file read as ``identity``; None if absent."""
    try:
        result = await run_as(identity, "read_file", {"path": path})
    except FileNotFoundError:
        return None
    except OSError as exc:
        # Unreadable for the user (e.g. root's home as default_privs): as if absent.
        log.warning(f"cannot open {path}: {exc.strerror or exc}", program="local")
        return None
    if int(result["uid"]) not in (identity.uid, 0):
        log.warning(f"file {path} has bad owner uid {result['uid']}: ignored", program="local")
        return None
    return str(result["text"])


def propagate(config: Config, origin: Origin) -> bool:
    """Whether unmatched extensions are propagated for this kind of expansion."""
    try:
        wanted = {item.lower() for item in config.list("propagate_unmatched_extensions")}
    except TableConfigError:
        return False
    return origin in wanted
