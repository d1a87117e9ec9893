"""What postmap(1), postalias(1) and newaliases share: options, building, querying.

Every table type is opened through :func:`mailhorn.tables.registry.open_table`,
so ``-q`` and ``-s`` work with any type (regexp:, mysql:, ...); ``-s`` needs a
table that can list its entries (an ``items()`` method), else ``table
TYPE:NAME: sequence operation is not supported``. Building, ``-i`` and ``-d``
work on the indexed types hash: and btree: (an SQLite index ``FILE.sqlite``
beside the source, see :mod:`mailhorn.tables.indexed`).

Parameters read: ``default_database_type`` (type of a bare ``FILE``, default
``hash``), ``smtputf8_enable`` (Unicode case folding), ``myhostname``
(postalias's ``YP_MASTER_NAME`` entry), ``syslog_name``.

Errors end the program with ``PROGRAM: fatal: TEXT`` and status 1, with
Postfix's texts; warnings print ``PROGRAM: warning: TEXT`` and go on.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.tables.aliases import alias_entries
from mailhorn.tables.base import OpenOptions, Table, TableRetry
from mailhorn.tables.indexed import INDEXED_TYPES, IndexBuilder, index_path
from mailhorn.tables.registry import TABLE_TYPES, open_table, split_spec
from mailhorn.tables.source import open_error, read_text, source_entries, utf8_enabled


@runtime_checkable
class Dumpable(Protocol):
    """A table that can list its entries (base.IterableTable, checked at run time)."""

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (key, value) pair."""
        ...


@dataclass
class ToolOptions:
    """The command line of postmap/postalias, decoded."""

    program: str
    aliases: bool
    config_dir: str | None = None
    fold: bool = True
    mode: str = "build"  # build | query | dump | delete
    key: str = ""
    incremental: bool = False
    replace: bool = False
    warn_duplicates: bool = True
    change_owner: bool = True
    headers: bool = False
    bodies: bool = False
    maps: list[str] = field(default_factory=list)


def setup_streams() -> None:
    """Pass keys and values through byte for byte, also when not UTF-8."""
    for stream in (sys.stdin, sys.stdout):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")


def load_config(opts: ToolOptions) -> Config:
    """Read main.cf and point logging at standard error."""
    log.setup(opts.program, stderr=True)
    try:
        config = load(opts.config_dir)
        log.setup(opts.program, syslog_name=config.get("syslog_name") or "mailhorn", stderr=True)
    except ConfigError as exc:
        log.fatal(str(exc))
    return config


def full_spec(spec: str, config: Config) -> tuple[str, str]:
    """(type, name) of ``[type:]name``; a bare name has ``default_database_type``."""
    if ":" not in spec:
        return (config.get("default_database_type") or "hash"), spec
    try:
        return split_spec(spec)
    except ConfigError as exc:
        log.fatal(str(exc))


def open_for_query(spec: str, config: Config, fold: bool) -> Table:
    """Open a table for ``-q``/``-s``; a failure is fatal."""
    kind, name = full_spec(spec, config)
    try:
        return open_table(f"{kind}:{name}", config, OpenOptions(fold_case=fold), cached=False)
    except ConfigError as exc:
        log.fatal(str(exc))
    except TableRetry as exc:
        log.fatal(f"open {kind}:{name}: {exc}")


def lookup(table: Table, key: str) -> str | None:
    """One lookup; an empty value warns as Postfix's tools do."""
    try:
        value = table.lookup(key)
    except TableRetry:
        log.fatal(f"table {table.type}:{table.name}: query error")
    except ConfigError as exc:
        log.fatal(str(exc))
    if value == "":
        log.warning(f"table {table.type}:{table.name}: key {key}: empty string result is not allowed")
        log.warning(f"table {table.type}:{table.name} should return NO RESULT in case of NOT FOUND")
    return value


def separator(opts: ToolOptions) -> str:
    """Between key and value in listings: postalias prints ``key:<TAB>value``."""
    return ":\t" if opts.aliases else "\t"


def query_one(opts: ToolOptions, config: Config) -> int:
    """``-q key``: the first table that has the key answers; 0 found, 1 not."""
    for spec in opts.maps:
        table = open_for_query(spec, config, opts.fold)
        value = lookup(table, opts.key)
        if value is not None:
            print(value, flush=True)
            return 0
    return 1


def message_items(text: str, headers: bool, bodies: bool) -> list[str]:
    """The header (unfolded, newlines kept) and/or body lines of a message."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    items: list[str] = []
    index = 0
    current: list[str] = []
    while index < len(lines):
        line = lines[index]
        if line == "":
            index += 1
            break
        if line[:1] in (" ", "\t") and current:
            current.append(line)
        else:
            if current and headers:
                items.append("\n".join(current))
            current = [line]
        index += 1
    if current and headers:
        items.append("\n".join(current))
    if bodies:
        items.extend(lines[index:])
    return items


def query_stdin(opts: ToolOptions, config: Config) -> int:
    """``-q -``: keys (or message parts with -h/-b) from stdin, ``key<TAB>value`` out."""
    tables = [open_for_query(spec, config, opts.fold) for spec in opts.maps]
    if opts.headers or opts.bodies:
        keys = message_items(sys.stdin.read(), opts.headers, opts.bodies)
    else:
        keys = [line[:-1] if line.endswith("\n") else line for line in sys.stdin]
    found = False
    sep = separator(opts)
    for key in keys:
        if not key:
            continue
        for table in tables:
            value = lookup(table, key)
            if value is not None:
                print(f"{key}{sep}{value}", flush=True)
                found = True
                break
    return 0 if found else 1


def dump(opts: ToolOptions, config: Config) -> int:
    """``-s``: list every entry of every table."""
    sep = separator(opts)
    for spec in opts.maps:
        table = open_for_query(spec, config, opts.fold)
        if not isinstance(table, Dumpable):
            log.fatal(f"table {table.type}:{table.name}: sequence operation is not supported")
        try:
            for key, value in table.items():
                if not key:
                    log.warning(f"table {table.type}:{table.name}: empty lookup key value is not allowed")
                print(f"{key}{sep}{value}")
        except TableRetry:
            log.fatal(f"table {table.type}:{table.name}: sequence error")
        except ConfigError as exc:
            log.fatal(str(exc))
    sys.stdout.flush()
    return 0


def delete(opts: ToolOptions, config: Config) -> int:
    """``-d key``: remove the key from each indexed table; 0 when any had it."""
    deleted = False
    for spec in opts.maps:
        kind, name = full_spec(spec, config)
        if kind not in TABLE_TYPES:
            log.fatal(f"unsupported dictionary type: {kind}")
        if kind not in INDEXED_TYPES:
            log.fatal(f"{kind}:{name} map requires O_RDONLY access mode")
        path = index_path(name)
        if not os.path.exists(path):
            log.fatal(f"open database {path}: No such file or directory")
        try:
            with IndexBuilder(name, fresh=False, fold=opts.fold, utf8=utf8_enabled(config)) as builder:
                deleted = builder.delete(opts.key) or deleted
        except ConfigError as exc:
            log.fatal(str(exc))
    return 0 if deleted else 1


def _owner(path: str, opts: ToolOptions) -> tuple[int, int] | None:
    """Run as root, the index gets the source file's owner (unless ``-o``)."""
    if not opts.change_owner or os.geteuid() != 0:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_uid, st.st_gid


Filler = Callable[[IndexBuilder, str, str], None]


def fill_postmap(builder: IndexBuilder, text: str, path: str) -> None:
    """Put the ``key value`` entries of postmap source text."""
    for entry in source_entries(text, path, log.warning):
        builder.put(entry.key, entry.value)


def make_fill_aliases(config: Config, sentinel: bool) -> Filler:
    """A filler for aliases(5) text; ``sentinel`` adds Postfix's extra entries.

    postalias adds ``@`` (sendmail's "aliases are complete" sentinel) and the
    NIS entries ``YP_LAST_MODIFIED`` and ``YP_MASTER_NAME``, as Postfix built
    with NIS support does.
    """

    def fill(builder: IndexBuilder, text: str, path: str) -> None:
        for entry in alias_entries(text, path, log.warning):
            builder.put(entry.name, entry.value)
        if sentinel:
            builder.put("@", "@", raw_key=True)
            builder.put("YP_LAST_MODIFIED", f"{int(time.time()):010d}", raw_key=True)
            builder.put("YP_MASTER_NAME", config.get("myhostname"), raw_key=True)

    return fill


def build(opts: ToolOptions, config: Config, spec: str) -> None:
    """Build (or, with ``-i``, update from stdin) the index of one table."""
    kind, name = full_spec(spec, config)
    if not name:
        log.fatal(f'open dictionary: expecting "type:name" form instead of "{kind}:"')
    if kind not in TABLE_TYPES:
        log.fatal(f"unsupported dictionary type: {kind}")
    if opts.incremental:
        text = sys.stdin.read()
        where = name
    else:
        try:
            text = read_text(name)
        except OSError as exc:
            log.fatal(open_error(name, exc))
        where = name
    if kind not in INDEXED_TYPES:
        log.fatal(f"unsupported dictionary type: {kind} does not support bulk-mode creation.")
    path = index_path(name)

    def duplicate(key: str) -> None:
        if opts.warn_duplicates:
            log.warning(f'{path}: duplicate entry: "{key}"')

    fill: Filler = make_fill_aliases(config, not opts.incremental) if opts.aliases else fill_postmap
    try:
        with IndexBuilder(
            name,
            fresh=not opts.incremental,
            fold=opts.fold,
            utf8=utf8_enabled(config),
            replace=opts.replace,
            on_duplicate=duplicate,
            owner=_owner(name, opts),
        ) as builder:
            fill(builder, text, where)
    except ConfigError as exc:
        log.fatal(str(exc))
    except OSError as exc:
        log.fatal(f"{path}: {os.strerror(exc.errno or 0)}")


def run_tool(opts: ToolOptions) -> int:
    """Carry out a decoded postmap/postalias command line."""
    setup_streams()
    config = load_config(opts)
    if opts.mode == "query":
        return query_stdin(opts, config) if opts.key == "-" else query_one(opts, config)
    if opts.mode == "dump":
        return dump(opts, config)
    if opts.mode == "delete":
        return delete(opts, config)
    for spec in opts.maps:
        build(opts, config, spec)
    return 0
