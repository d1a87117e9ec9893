"""``hash:/file`` and ``btree:/file``: indexed tables built by postmap/postalias.

Where Postfix keeps a Berkeley DB file ``/file.db``, mailhorn keeps an SQLite
file ``/file.sqlite`` beside the source (a different name, so a Postfix and a
mailhorn index of the same source can coexist). Lookups read only that file,
never the source. hash: and btree: share the format; both list their entries
in byte order of the keys (``postmap -s``).

Index format: one table ``map(key BLOB PRIMARY KEY, value BLOB)`` holding
UTF-8 bytes (non-UTF-8 input bytes kept as they came), keys already folded
when the index was built with folding.

Rebuilds: :class:`IndexBuilder` writes a whole index to a temporary file in the
same directory, fsyncs it, renames it over ``/file.sqlite`` and fsyncs the
directory, so a concurrent lookup sees the old or the new table, never a
mixture. Incremental changes (``postmap -i``, ``-d``) are one SQLite
transaction on the index in place. An open table notices a replaced or changed
index (device, inode, size or mtime differ) and reopens it, as Postfix daemons
notice a changed table.

Errors: a missing index raises TableConfigError ``open database
/file.sqlite: No such file or directory``; an unreadable one
TableConfigError; a locked one (a writer holds it too long) TableRetry.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from types import TracebackType

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError, TableRetry
from mailhorn.tables.source import check_name, fold_key, utf8_enabled

#: The suffix of the index file beside the source.
INDEX_SUFFIX = ".sqlite"

_SCHEMA = "CREATE TABLE IF NOT EXISTS map (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"


def index_path(name: str) -> str:
    """The index file of source ``name``."""
    return name + INDEX_SUFFIX


def encode(text: str) -> bytes:
    """A key or value as stored (UTF-8, stray bytes kept)."""
    return text.encode("utf-8", "surrogateescape")


def decode(data: bytes) -> str:
    """A stored key or value as text."""
    return bytes(data).decode("utf-8", "surrogateescape")


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _missing(path: str, exc: OSError) -> TableConfigError:
    return TableConfigError(f"open database {path}: {os.strerror(exc.errno or 0)}")


class IndexedTable:
    """A read-only view of one ``/file.sqlite`` index."""

    def __init__(self, kind: str, name: str, fold: bool, utf8: bool) -> None:
        self._type = kind
        self._name = name
        self.path = index_path(name)
        self.fold = fold
        self.utf8 = utf8
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        with self._lock:
            self._open()

    @property
    def type(self) -> str:
        """``hash`` or ``btree``."""
        return self._type

    @property
    def name(self) -> str:
        """The source file name (without ``.sqlite``)."""
        return self._name

    def _open(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise _missing(self.path, exc) from exc
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
            conn.execute("SELECT 1 FROM map LIMIT 1").fetchall()
        except sqlite3.OperationalError as exc:
            raise TableConfigError(f"open database {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise TableConfigError(f"open database {self.path}: {exc}") from exc
        if self._conn is not None:
            self._conn.close()
        self._conn = conn
        self._stamp = _stamp(st)

    def _current(self) -> sqlite3.Connection:
        """The connection, reopened when the index file changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            st = None  # Removed after open: keep answering from the open file.
        if self._conn is None or (st is not None and _stamp(st) != self._stamp):
            self._open()
        assert self._conn is not None
        return self._conn

    def lookup(self, key: str) -> str | None:
        """The value of ``key`` (folded unless ``-f``) or None."""
        if self.fold:
            key = fold_key(key, self.utf8)
        with self._lock:
            try:
                row = self._current().execute("SELECT value FROM map WHERE key = ?", (encode(key),)).fetchone()
            except sqlite3.OperationalError as exc:
                raise TableRetry(f"{self._type}:{self._name}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise TableConfigError(f"{self._type}:{self._name}: {exc}") from exc
        return None if row is None else decode(row[0])

    def items(self) -> Iterator[tuple[str, str]]:
        """Every entry, in byte order of the keys."""
        with self._lock:
            try:
                rows = self._current().execute("SELECT key, value FROM map ORDER BY key").fetchall()
            except sqlite3.DatabaseError as exc:
                raise TableConfigError(f"{self._type}:{self._name}: {exc}") from exc
        for key, value in rows:
            yield decode(key), decode(value)


def open_hash(name: str, config: Config, options: OpenOptions) -> IndexedTable:
    """Open ``hash:/file`` (reads ``/file.sqlite``)."""
    check_name("hash", name)
    return IndexedTable("hash", name, options.fold_case, utf8_enabled(config))


def open_btree(name: str, config: Config, options: OpenOptions) -> IndexedTable:
    """Open ``btree:/file`` (reads ``/file.sqlite``)."""
    check_name("btree", name)
    return IndexedTable("btree", name, options.fold_case, utf8_enabled(config))


#: The table types this module builds.
INDEXED_TYPES = frozenset({"hash", "btree"})


class IndexBuilder:
    """Writes an index: a fresh one (atomic replace) or changes to an existing one.

    ``fresh=True`` builds into a temporary file that :meth:`commit` renames over
    the index; otherwise changes go into the existing index (created when
    missing) in one transaction. ``fold``/``utf8`` fold keys as lookups do.
    Duplicate keys keep the first value unless ``replace``; ``on_duplicate``
    is told of each duplicate key (as stored) when not replacing.
    """

    def __init__(
        self,
        name: str,
        *,
        fresh: bool,
        fold: bool,
        utf8: bool,
        replace: bool = False,
        on_duplicate: Callable[[str], None] | None = None,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.path = index_path(name)
        self.fresh = fresh
        self.fold = fold
        self.utf8 = utf8
        self.replace = replace
        self.on_duplicate = on_duplicate
        self.owner = owner
        self._temp: str | None = None
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            if fresh:
                fd, temp = tempfile.mkstemp(prefix=os.path.basename(self.path) + ".", suffix=".tmp", dir=directory)
                os.close(fd)
                self._temp = temp
                target = temp
            else:
                target = self.path
            self.conn = sqlite3.connect(target, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=DELETE")
            if fresh:
                self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(_SCHEMA)
        except OSError as exc:
            self._discard()
            raise TableConfigError(f"open database {self.path}: {os.strerror(exc.errno or 0)}") from exc
        except sqlite3.DatabaseError as exc:
            self._discard()
            raise TableConfigError(f"open database {self.path}: {exc}") from exc

    def _key(self, key: str) -> bytes:
        return encode(fold_key(key, self.utf8) if self.fold else key)

    def put(self, key: str, value: str, raw_key: bool = False) -> None:
        """Add one entry; ``raw_key`` stores the key unfolded (postalias's YP_* keys)."""
        stored = encode(key) if raw_key else self._key(key)
        if self.replace:
            self.conn.execute("INSERT OR REPLACE INTO map (key, value) VALUES (?, ?)", (stored, encode(value)))
            return
        cur = self.conn.execute("INSERT OR IGNORE INTO map (key, value) VALUES (?, ?)", (stored, encode(value)))
        if cur.rowcount == 0 and self.on_duplicate is not None:
            self.on_duplicate(decode(stored))

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        cur = self.conn.execute("DELETE FROM map WHERE key = ?", (self._key(key),))
        return cur.rowcount > 0

    def commit(self) -> None:
        """Make the changes visible: atomic rename for a fresh build."""
        self.conn.execute("COMMIT")
        self.conn.close()
        if self._temp is None:
            return
        temp, self._temp = self._temp, None
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temp, 0o644 & ~umask)
            if self.owner is not None:
                os.chown(temp, *self.owner)
            with open(temp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except OSError:
            _unlink(temp)
            raise
        dirfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    def abort(self) -> None:
        """Drop the changes (a fresh build leaves the old index untouched)."""
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.conn.close()
        self._discard()

    def _discard(self) -> None:
        if self._temp is not None:
            _unlink(self._temp)
            self._temp = None

    def __enter__(self) -> IndexBuilder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
