"""master.cf: the service table, parsed into typed records (master(5)).

Each logical line (see :func:`mailhorn.config.maincf.parse_logical_lines`:
continuation lines start with whitespace, ``#`` lines are comments) has eight
columns::

    service type private unpriv chroot wakeup maxproc command [args...]

* ``service``: a name, or for ``inet`` a ``[host:]port`` endpoint
  (``127.0.0.1:10025``, ``[::1]:10025``, ``smtp``);
* ``type``: ``inet``, ``unix``, ``unix-dgram``, ``fifo`` or ``pass``;
* ``private``, ``unpriv``, ``chroot``: ``y``/``n`` or ``-`` for the default
  (private ``y``, unpriv ``y``, chroot ``n`` since Postfix 3.0);
* ``wakeup``: seconds, ``0`` for never, a trailing ``?`` for a wakeup only
  when the service is in use, ``-`` for 0;
* ``maxproc``: a number, ``0`` for no limit, ``-`` for
  ``$default_process_limit``;
* the command and its arguments. Postfix 3.0 groups text in ``{ ... }`` so an
  argument may contain spaces.

Arguments are read the way Postfix's daemons read their options: up to the
first argument that does not start with ``-``, ``-o name=value`` and
``-o { name = value }`` are parameter overrides for this service; other
``-x`` flags stay arguments. :class:`Service` keeps the raw column text (what
``postconf -F`` shows) and resolves the ``-`` defaults.

Errors: :class:`ConfigError` naming the file and line for a wrong column count
or an invalid column. Non-fatal problems (a ``-o`` without ``=``, a missing
``}``, a line starting with whitespace) are returned as :class:`MasterWarning`
records so a command can print them as Postfix does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from mailhorn.config.errors import ConfigError
from mailhorn.config.maincf import parse_logical_lines

#: The service types master(8) knows.
SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")

#: The names postconf uses for the eight columns (postconf -F).
FIELD_NAMES = ("service", "type", "private", "unprivileged", "chroot", "wakeup", "process_limit", "command")

_WAKEUP_RE = re.compile(r"^\d+\??$")
_NUMBER_RE = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Setting:
    """One ``-o name=value`` override, as written in master.cf."""

    name: str
    value: str

    def render(self) -> str:
        """The override as ``postconf -M`` prints it (braces when the value has spaces)."""
        if any(c.isspace() for c in self.value):
            return f"-o {{{self.name}={self.value}}}"
        return f"-o {self.name}={self.value}"


#: An argument after the command: a plain word or an override.
Word = str | Setting


@dataclass(frozen=True)
class MasterWarning:
    """A problem Postfix reports as a warning and then ignores."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class Service:
    """One master.cf entry.

    ``private``, ``unpriv``, ``chroot``, ``wakeup`` and ``maxproc`` are the
    resolved values; the ``*_raw`` fields keep the column text. ``maxproc`` is
    None when the column is ``-`` (``$default_process_limit`` applies).
    ``argv`` holds the arguments after the command in order, overrides as
    :class:`Setting`.
    """

    name: str
    type: str
    private_raw: str
    unpriv_raw: str
    chroot_raw: str
    wakeup_raw: str
    maxproc_raw: str
    command: str
    argv: tuple[Word, ...]
    file: str = ""
    line: int = 0
    private: bool = True
    unpriv: bool = True
    chroot: bool = False
    wakeup: int = 0
    wakeup_if_used: bool = False
    maxproc: int | None = None
    host: str | None = None
    port: str = ""
    settings: tuple[Setting, ...] = field(default=())

    @property
    def key(self) -> str:
        """``name/type``, how postconf names a service."""
        return f"{self.name}/{self.type}"

    @property
    def args(self) -> tuple[str, ...]:
        """The arguments that are not overrides."""
        return tuple(w for w in self.argv if isinstance(w, str))

    @property
    def overrides(self) -> dict[str, str]:
        """The ``-o`` settings, last one of a name winning."""
        return {s.name: s.value for s in self.settings}

    def command_line(self) -> str:
        """The command and arguments as ``postconf -M`` prints them."""
        parts = [self.command]
        parts.extend(w.render() if isinstance(w, Setting) else w for w in self.argv)
        return " ".join(parts)

    def columns(self) -> tuple[str, ...]:
        """The eight columns as written (``-`` kept), the last being the command line."""
        return (
            self.name, self.type, self.private_raw, self.unpriv_raw, self.chroot_raw,
            self.wakeup_raw, self.maxproc_raw, self.command_line(),
        )


@dataclass(frozen=True)
class MasterCf:
    """A parsed master.cf: its services in file order and any warnings."""

    path: str
    services: tuple[Service, ...]
    warnings: tuple[MasterWarning, ...] = ()

    def find(self, name: str, type_: str) -> Service | None:
        """The first service called ``name`` of type ``type_``."""
        for service in self.services:
            if service.name == name and service.type == type_:
                return service
        return None


def split_words(text: str) -> tuple[list[str], bool]:
    """Split on whitespace, keeping a ``{ ... }`` group (with its braces) as one word.

    Returns the words and whether a group was left without its closing ``}``
    (the group then runs to the end of the text).
    """
    words: list[str] = []
    unclosed = False
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j = i
        if text[i] == "{":
            level = 0
            while j < n:
                if text[j] == "{":
                    level += 1
                elif text[j] == "}":
                    level -= 1
                    if level == 0:
                        j += 1
                        break
                j += 1
            else:
                unclosed = level > 0
        else:
            while j < n and not text[j].isspace():
                j += 1
        words.append(text[i:j])
        i = j
    return words, unclosed


def _setting(text: str, path: str, number: int, warnings: list[MasterWarning]) -> Word:
    """Turn the argument of ``-o`` into a Setting, or keep it as text when it has no ``=``."""
    body = text
    if body.startswith("{"):
        body = body[1:-1] if body.endswith("}") else body[1:]
        body = body.strip()
        if not text.endswith("}"):
            warnings.append(MasterWarning(path, number, f'missing \'}}\' in "{text}"'))
    name, sep, value = body.partition("=")
    if not sep:
        warnings.append(MasterWarning(path, number, f'missing \'=\' after attribute name: "{body}"'))
        return f"-o {body}"
    return Setting(name.strip(), value.strip())


def parse_args(words: list[str], path: str, number: int, warnings: list[MasterWarning]) -> tuple[Word, ...]:
    """Find the ``-o`` overrides among a command's arguments (getopt-style).

    Options end at the first argument not starting with ``-``; after that,
    ``-o`` is an ordinary word. ``-oNAME=VALUE`` written together is split on
    the letters ``-`` and ``o`` as Postfix 3.7 does (a quirk kept so that
    ``postconf -M`` shows the same entries).
    """
    out: list[Word] = []
    options = True
    i = 0
    while i < len(words):
        word = words[i]
        if options and (not word.startswith("-") or word == "-"):
            options = False
        if not options:
            out.append(word)
        elif word == "-o":
            if i + 1 < len(words):
                i += 1
                out.append(_setting(words[i], path, number, warnings))
            else:
                out.append(word)
        elif word.startswith("-o"):
            for piece in re.split(r"[-o]+", word):
                if piece:
                    out.append(_setting(piece, path, number, warnings))
        else:
            out.append(word)
        i += 1
    return tuple(out)


def split_endpoint(name: str) -> tuple[str | None, str]:
    """Split an inet service name into (host, port); host None means all addresses.

    ``[::1]:10025`` gives ``("::1", "10025")``, ``127.0.0.1:10025`` gives
    ``("127.0.0.1", "10025")``, ``smtp`` gives ``(None, "smtp")``. A host of
    ``*`` means all addresses too.
    """
    if name.startswith("["):
        close = name.find("]")
        if close > 0 and name[close + 1 : close + 2] == ":":
            return name[1:close], name[close + 2 :]
    host, sep, port = name.rpartition(":")
    if not sep:
        return None, name
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (None if host in ("", "*") else host), port


def _flag(value: str, default: bool, what: str, line_text: str, path: str, number: int) -> bool:
    if value == "-":
        return default
    if value in ("y", "n"):
        return value == "y"
    raise ConfigError(f'invalid {what} field "{value}" in "{line_text}"', file=path, line=number)


def parse_entry(line_text: str, path: str, number: int, warnings: list[MasterWarning]) -> Service:
    """Parse one logical master.cf line."""
    words, _ = split_words(line_text)
    if len(words) < 8:
        raise ConfigError("bad field count", file=path, line=number)
    name, type_, priv, unpriv, chroot, wakeup, maxproc, command = words[:8]
    if type_ not in SERVICE_TYPES:
        raise ConfigError(f'invalid type field "{type_}" in "{line_text}"', file=path, line=number)
    private = _flag(priv, True, "private", line_text, path, number)
    unprivileged = _flag(unpriv, True, "unprivileged", line_text, path, number)
    chrooted = _flag(chroot, False, "chroot", line_text, path, number)
    if wakeup != "-" and not _WAKEUP_RE.match(wakeup):
        raise ConfigError(f'invalid wakeup field "{wakeup}" in "{line_text}"', file=path, line=number)
    if maxproc != "-" and not _NUMBER_RE.match(maxproc):
        raise ConfigError(f'invalid process_limit field "{maxproc}" in "{line_text}"', file=path, line=number)
    argv = parse_args(words[8:], path, number, warnings)
    host, port = split_endpoint(name) if type_ == "inet" else (None, name)
    return Service(
        name=name, type=type_, private_raw=priv, unpriv_raw=unpriv, chroot_raw=chroot,
        wakeup_raw=wakeup, maxproc_raw=maxproc, command=command, argv=argv, file=path, line=number,
        private=private, unpriv=unprivileged, chroot=chrooted,
        wakeup=0 if wakeup == "-" else int(wakeup.rstrip("?")),
        wakeup_if_used=wakeup.endswith("?"),
        maxproc=None if maxproc == "-" else int(maxproc),
        host=host, port=port,
        settings=tuple(w for w in argv if isinstance(w, Setting)),
    )


def parse_master_cf(text: str, path: str) -> MasterCf:
    """Parse master.cf text; the first error raises :class:`ConfigError`."""
    warnings: list[MasterWarning] = []
    lines = text.split("\n")
    for index, raw in enumerate(lines):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] not in " \t":
            break
        # Postfix's readlline: indented text before the first logical line is dropped.
        warnings.append(MasterWarning(
            path, index + 1, f'logical line must not start with whitespace: "{raw.rstrip()}"'))
        lines[index] = ""
    services = [
        parse_entry(line_text, path, number, warnings)
        for number, line_text in parse_logical_lines("\n".join(lines))
    ]
    return MasterCf(path, tuple(services), tuple(warnings))


def read_master_cf(path: str) -> MasterCf:
    """Read and parse master.cf; a missing file is a configuration error."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"open {path}: {os.strerror(exc.errno or 0)}") from exc
    return parse_master_cf(text, path)


def master_cf_path(config_dir: str) -> str:
    """Where master.cf is for a configuration directory."""
    return os.path.join(config_dir, "master.cf")
