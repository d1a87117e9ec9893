"""Editing main.cf and master.cf in place, as ``postconf -e/-#/-X`` do.

main.cf (postconf(1) ``-e``, ``-#``, ``-X``):

* ``set``: every logical line defining a name is replaced by ``name = value``
  (its continuation lines go, comment lines between them stay); names not
  found are appended at the end, in command-line order;
* ``comment``: each physical line of the setting gets a ``#`` in front;
* ``remove``: the setting's physical lines are deleted.

master.cf (``-M -e``, ``-M -#``, ``-M -X``): entries are addressed as
``service/type``; a replaced or added entry is written in ``postconf -Mf``
layout.

Everything else in the file (comments, blank lines, other settings, a missing
final newline) is kept byte for byte. The new file is written next to the old
one, flushed to disk and renamed over it, so a reader sees either the old or
the new file, never a mix.

Errors: :class:`ConfigError` when the file cannot be read or written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailhorn.config.errors import ConfigError

#: What to do with the named settings.
SET, COMMENT, REMOVE = "set", "comment", "remove"


@dataclass(frozen=True)
class Block:
    """One logical line: the index of its first physical line and of each continuation."""

    first: int
    continuations: tuple[int, ...]


def read_lines(path: str) -> list[str]:
    """The file's physical lines with their line ends (Postfix's wording on failure)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read().splitlines(keepends=True)
    except OSError as exc:
        raise ConfigError(f"open {path} for reading: {os.strerror(exc.errno or 0)}") from exc


def blocks(lines: list[str]) -> list[Block]:
    """Group physical lines into logical lines (readlline rules; comments are skipped)."""
    out: list[Block] = []
    first: int | None = None
    conts: list[int] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if first is not None:
                conts.append(index)
            continue
        if first is not None:
            out.append(Block(first, tuple(conts)))
        first, conts = index, []
    if first is not None:
        out.append(Block(first, tuple(conts)))
    return out


def _rewrite(lines: list[str], changes: Mapping[int, str | None], drop: set[int]) -> list[str]:
    """Apply per-line replacements (None deletes) and deletions."""
    out: list[str] = []
    for index, line in enumerate(lines):
        if index in drop:
            continue
        if index in changes:
            new = changes[index]
            if new is not None:
                out.append(new)
            continue
        out.append(line)
    return out


def edit_main_cf(path: str, mode: str, edits: Mapping[str, str], warn: Callable[[str], None]) -> None:
    """Set, comment out or remove main.cf settings (``edits`` maps name to value)."""
    lines = read_lines(path)
    changes: dict[int, str | None] = {}
    drop: set[int] = set()
    seen: dict[str, int] = {}
    for block in blocks(lines):
        name = lines[block.first].partition("=")[0].strip()
        if "=" not in lines[block.first] or name not in edits:
            continue
        seen[name] = seen.get(name, 0) + 1
        if mode == SET:
            changes[block.first] = f"{name} = {edits[name]}\n"
            drop.update(block.continuations)
        elif mode == COMMENT:
            for index in (block.first, *block.continuations):
                changes[index] = "#" + lines[index]
        else:
            drop.update((block.first, *block.continuations))
    for name, count in seen.items():
        if count > 1:
            warn(f'{path}: multiple entries for "{name}"')
    out = _rewrite(lines, changes, drop)
    if mode == SET:
        out.extend(f"{name} = {value}\n" for name, value in edits.items() if name not in seen)
    write_atomically(path, "".join(out))


def edit_master_cf(
    path: str,
    mode: str,
    selected: Callable[[str, str], bool],
    entries: Mapping[str, str],
) -> None:
    """Replace/add (``entries`` maps ``name/type`` to rendered text), comment out or remove entries.

    ``selected(name, type)`` says which existing entries a ``-#``/``-X`` edit
    touches.
    """
    lines = read_lines(path)
    changes: dict[int, str | None] = {}
    drop: set[int] = set()
    done: set[str] = set()
    for block in blocks(lines):
        text = "".join(lines[i].rstrip("\r\n") for i in (block.first, *block.continuations))
        words = text.split()
        if len(words) < 2:
            continue
        key = f"{words[0]}/{words[1]}"
        if mode == SET:
            if key in entries:
                changes[block.first] = entries[key] + "\n"
                drop.update(block.continuations)
                done.add(key)
        elif selected(words[0], words[1]):
            if mode == COMMENT:
                for index in (block.first, *block.continuations):
                    changes[index] = "#" + lines[index]
            else:
                drop.update((block.first, *block.continuations))
    out = _rewrite(lines, changes, drop)
    if mode == SET:
        out.extend(text + "\n" for key, text in entries.items() if key not in done)
    write_atomically(path, "".join(out))


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(f"write {path}: {os.strerror(exc.errno or 0)}") from exc
