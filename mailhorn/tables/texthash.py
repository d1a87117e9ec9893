"""``texthash:/file``: a postmap(1) source file read into memory at open time.

No index is built (``postmap texthash:/file`` is refused as by Postfix). The
file has postmap's ``key whitespace value`` format (see
:mod:`mailhorn.tables.source`); the first of duplicate keys wins with the
warning ``FILE, line N: duplicate entry: "KEY"``. Keys are folded to lower
case unless ``postmap -f``.

Errors: a missing file raises TableConfigError ``open database FILE: No such
file or directory`` (Postfix's text).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError, in_memory
from mailhorn.tables.source import Warn, check_name, fold_key, read_text, source_entries, utf8_enabled


@in_memory
@dataclass
class TextHashTable:
    """The entries of one source file, held in memory."""

    name: str
    fold: bool
    utf8: bool
    entries: dict[str, str] = field(default_factory=dict)
    type: str = "texthash"

    def lookup(self, key: str) -> str | None:
        """The value of ``key`` or None."""
        return self.entries.get(fold_key(key, self.utf8) if self.fold else key)

    def items(self) -> Iterator[tuple[str, str]]:
        """Entries in file order."""
        yield from self.entries.items()


def load_texthash(name: str, fold: bool, utf8: bool, warn: Warn) -> TextHashTable:
    """Read ``name`` into a table, warning about bad lines and duplicates."""
    try:
        text = read_text(name)
    except OSError as exc:
        raise TableConfigError(f"open database {name}: {os.strerror(exc.errno or 0)}") from exc
    table = TextHashTable(name, fold, utf8)
    for entry in source_entries(text, name, warn, ignoring=True):
        key = fold_key(entry.key, utf8) if fold else entry.key
        if key in table.entries:
            warn(f'{name}, line {entry.line}: duplicate entry: "{entry.key}"')
            continue
        table.entries[key] = entry.value
    return table


def open_texthash(name: str, config: Config, options: OpenOptions) -> TextHashTable:
    """Open ``texthash:/file``."""
    check_name("texthash", name)
    return load_texthash(name, options.fold_case, utf8_enabled(config), log.warning)
