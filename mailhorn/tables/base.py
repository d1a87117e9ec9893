"""The lookup table interface (design.md §5 rule 4).

A lookup has exactly three outcomes:

* a value (``str``): the key was found;
* ``None``: the key is not in the table;
* an exception: :class:`TableRetry` for a temporary failure (database down,
  timeout: the caller defers with a 4xx, never rejects or accepts), or
  :class:`TableConfigError` for a permanent configuration mistake.

Tables are synchronous, like Postfix's dict_lookup(); asyncio code calls
:func:`lookup_async`, which runs the lookup in a worker thread so a slow
database never stalls the event loop. Table types held wholly in memory
(static, inline, texthash, cidr, regexp, pcre) are marked with
:func:`in_memory`: their lookups never wait for anything, so they run on the
event loop at once, without the cost of a thread hand-off per lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from mailhorn.config.errors import ConfigError
from mailhorn.iopool import offload


class TableRetry(Exception):
    """A temporary lookup failure: try again later (Postfix's DICT_ERR_RETRY)."""


class TableConfigError(ConfigError):
    """A permanent table problem: bad syntax, unknown type, bad ``*.cf`` file."""


@dataclass(frozen=True)
class OpenOptions:
    """How a table is opened.

    ``fold_case``: lower-case lookup keys of fixed-string tables (Postfix's
    DICT_FLAG_FOLD_FIX, on unless ``postmap -f``). ``create``: the table is being
    built (postmap/postalias) and need not exist yet.
    """

    fold_case: bool = True
    create: bool = False


@runtime_checkable
class Table(Protocol):
    """One opened ``type:name`` table."""

    @property
    def type(self) -> str:
        """The table type, e.g. ``hash``."""
        ...

    @property
    def name(self) -> str:
        """The table name, e.g. ``/etc/postfix/virtual``."""
        ...

    def lookup(self, key: str) -> str | None:
        """Return the value for ``key`` or None; raise TableRetry/TableConfigError."""
        ...


class IterableTable(Table, Protocol):
    """A table that can list its entries (``postmap -s``)."""

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (key, value) pair, in the table's order."""
        ...


#: Table classes whose lookups never block (see :func:`in_memory`).
_IN_MEMORY: set[type] = set()

_T = TypeVar("_T", bound=type)


def in_memory(cls: _T) -> _T:
    """Class decorator: lookups in this table type only read memory, so
    :func:`lookup_async` calls them directly on the event loop."""
    _IN_MEMORY.add(cls)
    return cls


async def lookup_async(table: Table, key: str) -> str | None:
    """Look ``key`` up without blocking the event loop."""
    if type(table) in _IN_MEMORY:
        return table.lookup(key)
    return await offload(table.lookup, key)
