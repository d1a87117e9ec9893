"""Opening ``type:name`` tables: an explicit table of types and one shared cache.

``open_table("hash:/etc/postfix/virtual", config)`` returns a :class:`Table`.
The ``proxy:`` prefix (Postfix's proxymap) is accepted and means the same
table; tables are cached by their full specification so every user of a table
(and every ``proxy:`` user) shares one instance and one connection pool.

Errors: an unknown type raises :class:`TableConfigError` with Postfix's text
``unsupported dictionary type: X``; a name without ``:`` says
``need dictionary type:name``.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable
from typing import Final

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, Table, TableConfigError

Factory = Callable[[str, Config, OpenOptions], Table]

#: Every table type, mapped to the module and function that opens it.
TABLE_TYPES: Final[dict[str, str]] = {
    "static": "mailhorn.tables.static:open_static",
    "inline": "mailhorn.tables.inline:open_inline",
    "texthash": "mailhorn.tables.texthash:open_texthash",
    "hash": "mailhorn.tables.indexed:open_hash",
    "btree": "mailhorn.tables.indexed:open_btree",
    "regexp": "mailhorn.tables.regexp:open_regexp",
    "pcre": "mailhorn.tables.regexp:open_pcre",
    "cidr": "mailhorn.tables.cidr:open_cidr",
    "unix": "mailhorn.tables.unix:open_unix",
    "sqlite": "mailhorn.tables.sqlite:open_sqlite",
    "mysql": "mailhorn.tables.mysql:open_mysql",
    "pgsql": "mailhorn.tables.pgsql:open_pgsql",
    "passwd-file": "mailhorn.tables.passwdfile:open_passwd_file",
    "popbeforesmtp": "mailhorn.auth.popbeforesmtp:open_table",
}

#: Types whose modules load large client libraries (pymysql with cryptography,
#: psycopg with its own libcrypto, sqlite3): loaded ahead only when named.
_HEAVY_TYPES: Final = frozenset({"mysql", "pgsql", "sqlite"})
_TYPE_NAME: Final = re.compile(r"(?<![\w/.-])([a-z][a-z0-9-]*):")


def table_modules(texts: Iterable[str]) -> list[str]:
    """The modules of every table type a process may open, for loading ahead.

    ``texts`` are configuration values (main.cf and master.cf ``-o``); a
    heavy type is included only when one of them names it (``mysql:...``,
    also behind ``proxy:``), every other type always.
    """
    named: set[str] = set()
    for text in texts:
        named.update(match.group(1) for match in _TYPE_NAME.finditer(text))
    return sorted({target.partition(":")[0] for kind, target in TABLE_TYPES.items()
                   if kind not in _HEAVY_TYPES or kind in named})


_cache: dict[tuple[str, bool], Table] = {}
_lock = threading.Lock()


def split_spec(spec: str) -> tuple[str, str]:
    """Split ``[proxy:]type:name`` into (type, name), dropping ``proxy:``."""
    if spec.startswith("proxy:"):
        spec = spec[len("proxy:") :]
    kind, sep, name = spec.partition(":")
    if not sep or not kind:
        raise TableConfigError(f"need dictionary type:name: {spec}")
    return kind, name


def factory_for(kind: str) -> Factory:
    """The opener registered for a table type."""
    target = TABLE_TYPES.get(kind)
    if target is None:
        raise TableConfigError(f"unsupported dictionary type: {kind}")
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    opener: Factory = getattr(module, func)
    return opener


def open_table(spec: str, config: Config, options: OpenOptions | None = None, cached: bool = True) -> Table:
    """Open (or reuse) the table named by ``spec``."""
    opts = options or OpenOptions()
    kind, name = split_spec(spec)
    key = (f"{kind}:{name}", opts.fold_case)
    if cached and not opts.create:
        # A dict read is atomic: tables already opened (every lookup of a
        # running server) are found without taking the lock.
        table = _cache.get(key)
        if table is not None:
            return table
    table = factory_for(kind)(name, config, opts)
    if cached and not opts.create:
        with _lock:
            _cache.setdefault(key, table)
            table = _cache[key]
    return table


def clear_cache() -> None:
    """Forget every opened table (after a reload, and between tests)."""
    with _lock:
        _cache.clear()
