"""pipe(8): delivery to an external command named in master.cf.

What it does
    A master.cf entry such as::

        maildrop  unix  -  n  n  -  -  pipe
          flags=DRhu user=vmail argv=/usr/bin/maildrop -d ${recipient}

    runs ``argv`` for each delivery request, with the message on standard
    input, as pipe(8) does:

    * attributes (before ``argv=``, which must come last): ``flags=``,
      ``user=name[:group]`` (required), ``directory=`` (default
      ``$queue_directory``, or ``/`` when the command runs as another user:
      mailhorn's queue directory is private, mode 0700), ``eol=`` (default ``\\n``; C escapes),
      ``null_sender=`` (default ``MAILER-DAEMON``), ``size=`` (bigger
      messages bounce with ``5.2.3 message too large``); ``chroot=`` is
      refused (the request defers with a warning);
    * ``argv`` is executed directly, never through a shell (a shell runs
      only when argv names one). ``{ ... }`` groups an argument with
      spaces. Macros ``$name``, ``${name}``, ``$(name)`` and ``$$``:
      ``sender``, ``nexthop``, ``size``, ``queue_id``, ``client_address``,
      ``client_helo``, ``client_hostname``, ``client_port``,
      ``client_protocol``, ``sasl_method``, ``sasl_sender``,
      ``sasl_username``, and the per-recipient ``recipient``,
      ``original_recipient``, ``user``, ``extension``, ``mailbox``,
      ``domain``: an argument holding one of these is repeated once per
      recipient (an argument whose ``$user`` is empty is left out). An
      unknown macro defers the request (``4.3.5 mail system configuration
      error``);
    * flags: ``B`` blank line at the end, ``D`` ``Delivered-To:`` (and loop
      detection: ``5.4.6 mail forwarding loop for ADDRESS``), ``F`` a
      ``From `` line, ``O`` ``X-Original-To:``, ``R`` ``Return-Path:``,
      ``X`` final delivery (``delivered`` instead of ``relayed`` in success
      notices), ``h`` fold domains and next hop to lower case, ``q`` quote
      local parts (RFC 5322), ``u`` fold local parts to lower case, ``.``
      dot-stuffing, ``>`` ``>From `` quoting. ``D`` and ``O`` need
      ``TRANSPORT_destination_recipient_limit = 1``; with more recipients
      the request defers with a warning, as Postfix's;
    * as ``user`` (uid, gid, supplementary groups) when mailhorn runs as
      root; root and gid 0 are refused. Running unprivileged, the command
      runs as mailhorn itself. The environment holds only the variables of
      ``export_environment``; the process gets its own session so that
      ``TRANSPORT_time_limit`` (default ``$command_time_limit``) kills the
      whole group.

    Outcome (Postfix's pipe_command): exit 0 is ``2.0.0 delivered via
    SERVICE service`` (plus the command's output in parentheses); output
    that starts with ``X.Y.Z`` gives the status and text; a <sysexits.h>
    code maps through :data:`SYS_EXITS` (``EX_TEMPFAIL`` and ``EX_OSERR``
    defer, others bounce); any other status bounces with ``Command died
    with status N: "CMD"``; a signal defers; the time limit bounces with
    ``Command time limit exceeded``. Output is added as ``. Command output:
    TEXT``. ``pipe_delivery_status_filter`` may then rewrite the status and
    text (postconf(5) default_delivery_status_filter: the success class
    cannot change into a failure class or back). ``relay=`` is the service
    name.

Parameters read
    ``queue_directory``, ``command_time_limit``, ``TRANSPORT_time_limit``,
    ``export_environment``, ``recipient_delimiter``,
    ``pipe_delivery_status_filter``.

Errors
    :class:`PipeConfigError` from :func:`parse_attributes` for a bad
    master.cf entry; :meth:`PipeAgent.deliver` never raises: a bad entry
    defers every request with ``4.3.5 mail system configuration error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import re
import signal
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mailhorn import log, privsep
from mailhorn.address.parse import split_extension
from mailhorn.address.quote import quote_local
from mailhorn.config.load import Config
from mailhorn.delivery.command import collect_output, feed_stdin
from mailhorn.delivery.error import dsn_prefix_length, split_dsn
from mailhorn.delivery.request import Action, DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.iopool import offload
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.registry import open_table

__all__ = ["PipeAgent", "PipeAttributes", "PipeConfigError", "SYS_EXITS", "make_agent", "parse_attributes"]

#: <sysexits.h> codes and their (status, text), as Postfix's sys_exits table.
SYS_EXITS: dict[int, tuple[str, str]] = {
    64: ("5.3.0", "command line usage error"),
    65: ("5.6.0", "data format error"),
    66: ("5.3.0", "cannot open input"),
    67: ("5.1.1", "user unknown"),
    68: ("5.1.2", "host name unknown"),
    69: ("5.3.0", "service unavailable"),
    70: ("5.3.0", "internal software error"),
    71: ("4.3.0", "system resource problem"),
    72: ("5.3.0", "critical OS file missing"),
    73: ("5.2.0", "can't create user output file"),
    74: ("5.3.0", "input/output error"),
    75: ("4.3.0", "temporary failure"),
    76: ("5.5.0", "remote error in protocol"),
    77: ("5.7.0", "permission denied"),
    78: ("5.3.5", "local configuration error"),
}
#: Command output kept for the status text (Postfix keeps one buffer's worth).
OUTPUT_LIMIT = 4096
FLAG_LETTERS = frozenset("BDFORXhqu.>")
#: Macros that make an argument repeat once per recipient.
RECIPIENT_MACROS = frozenset({"recipient", "original_recipient", "user", "extension", "mailbox", "domain"})
MESSAGE_MACROS = frozenset({
    "sender", "nexthop", "size", "queue_id", "client_address", "client_helo", "client_hostname",
    "client_port", "client_protocol", "sasl_method", "sasl_sender", "sasl_username",
})
CONFIG_ERROR = ("4.3.5", "mail system configuration error")
_MACRO_RE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


class PipeConfigError(Exception):
    """The master.cf entry of a pipe service is unusable."""


@dataclass(frozen=True)
class PipeAttributes:
    """The command attributes of one pipe service."""

    argv: tuple[str, ...]
    user: str
    group: str | None = None
    flags: frozenset[str] = frozenset()
    directory: str | None = None
    eol: bytes = b"\n"
    null_sender: str = "MAILER-DAEMON"
    size_limit: int = 0


def unescape(text: str) -> str:
    """C-style escapes of ``eol=`` (``\\r\\n``, ``\\ddd`` octal)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "01234567":
            j = i + 1
            while j < len(text) and j < i + 4 and text[j] in "01234567":
                j += 1
            out.append(chr(int(text[i + 1:j], 8)))
            i = j
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


def _ungroup(word: str) -> str:
    """``{ text with spaces }`` -> ``text with spaces`` (master.cf, Postfix 3.0)."""
    if word.startswith("{") and word.endswith("}"):
        return word[1:-1].strip()
    return word


def parse_attributes(args: Sequence[str]) -> PipeAttributes:
    """Read the pipe(8) command attributes of a master.cf entry."""
    flags: set[str] = set()
    user: str | None = None
    group: str | None = None
    values: dict[str, str] = {}
    argv: list[str] | None = None
    for index, raw in enumerate(args):
        word = _ungroup(raw)
        name, eq, value = word.partition("=")
        key = name.lower()
        if not eq:
            raise PipeConfigError(f"unknown attribute name: {word}")
        if key == "argv":
            argv = [value] + [_ungroup(w) for w in args[index + 1:]]
            if not argv[0]:
                argv = argv[1:]
            break
        if key == "flags":
            bad = set(value) - FLAG_LETTERS
            if bad:
                raise PipeConfigError(f"unknown flag: {sorted(bad)[0]}")
            flags.update(value)
        elif key == "user":
            user, _, grp_name = value.partition(":")
            group = grp_name or None
        elif key in ("directory", "eol", "null_sender", "size", "chroot"):
            values[key] = value
        else:
            raise PipeConfigError(f"unknown attribute name: {word}")
    if not user:
        raise PipeConfigError("missing user= command-line attribute")
    if not argv:
        raise PipeConfigError("missing argv= command-line attribute")
    if "chroot" in values:
        raise PipeConfigError("chroot= is not supported")
    size = values.get("size", "0")
    if not size.isdigit():
        raise PipeConfigError(f"bad size= value: {size}")
    return PipeAttributes(
        argv=tuple(argv), user=user, group=group, flags=frozenset(flags),
        directory=values.get("directory"), eol=unescape(values.get("eol", "\\n")).encode("latin-1"),
        null_sender=values.get("null_sender", "MAILER-DAEMON"), size_limit=int(size),
    )


@dataclass(frozen=True)
class Identity:
    """Who the command runs as (None fields: as mailhorn itself)."""

    uid: int | None
    gid: int | None
    groups: tuple[int, ...] = ()
    name: str = ""


def command_identity(attrs: PipeAttributes) -> Identity:
    """The uid/gid of ``user=`` (root and gid 0 refused); mailhorn itself when unprivileged."""
    try:
        entry = pwd.getpwnam(attrs.user)
    except KeyError:
        raise PipeConfigError(f"unknown username: {attrs.user}") from None
    gid = entry.pw_gid
    if attrs.group is not None:
        try:
            gid = grp.getgrnam(attrs.group).gr_gid
        except KeyError:
            raise PipeConfigError(f"unknown group: {attrs.group}") from None
    if entry.pw_uid == 0:
        raise PipeConfigError("user= command-line attribute specifies root privileges")
    if gid == 0:
        raise PipeConfigError("user= command-line attribute specifies privileged group id 0")
    if os.geteuid() != 0 and not privsep.needed(entry.pw_uid):
        return Identity(None, None, name=entry.pw_name)
    groups = tuple(sorted({gid, *os.getgrouplist(entry.pw_name, gid)}))
    return Identity(entry.pw_uid, gid, groups, entry.pw_name)


# -- argument expansion ----------------------------------------------------------


@dataclass
class _Parts:
    """The pieces of one recipient address a macro may ask for."""

    recipient: str
    original_recipient: str
    user: str
    extension: str
    mailbox: str
    domain: str


def _morph(address: str, flags: frozenset[str]) -> str:
    """Quote (q) and fold (h, u) a whole address as pipe(8)'s morph_recipient."""
    text = quote_local(address) if "q" in flags else address
    local, at, domain = text.rpartition("@")
    if not at:
        return text.lower() if "u" in flags else text
    if "u" in flags:
        local = local.lower()
    if "h" in flags:
        domain = domain.lower()
    return f"{local}@{domain}"


def _parts(rcpt: DeliveryRecipient, flags: frozenset[str], delimiters: str) -> _Parts:
    folded = _morph(rcpt.address, flags & {"h", "u"})
    mailbox, at, domain = folded.rpartition("@")
    if not at:
        mailbox, domain = folded, ""
    split = split_extension(mailbox, delimiters)
    return _Parts(
        recipient=_morph(rcpt.address, flags),
        original_recipient=_morph(rcpt.orig_rcpt or rcpt.address, flags),
        user=split.base if split else mailbox,
        extension=split.extension if split else "",
        mailbox=mailbox,
        domain=domain,
    )


def _macros(word: str) -> set[str]:
    names: set[str] = set()
    for match in _MACRO_RE.finditer(word):
        name = match.group(1) or match.group(2) or match.group(3)
        if name:
            names.add(name)
    return names


def _expand(word: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return "$" if name is None else values[name]

    return _MACRO_RE.sub(replace, word)


def expand_argv(argv: Sequence[str], message: Mapping[str, str], recipients: Sequence[DeliveryRecipient],
                flags: frozenset[str], delimiters: str) -> list[str]:
    """The command line for a request; PipeConfigError names an unknown macro."""
    out: list[str] = []
    for word in argv:
        names = _macros(word)
        unknown = names - RECIPIENT_MACROS - MESSAGE_MACROS
        if unknown:
            raise PipeConfigError(f'unknown macro name: "{sorted(unknown)[0]}"')
        if not names & RECIPIENT_MACROS:
            out.append(_expand(word, message))
            continue
        for rcpt in recipients:
            parts = _parts(rcpt, flags, delimiters)
            if "user" in names and not parts.user:
                continue
            values = dict(message)
            values.update(parts.__dict__)
            out.append(_expand(word, values))
    return out


# -- the message as the command sees it ------------------------------------------------


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines with their LF (the last one may lack it)."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            yield data[start:end + 1]
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest


def message_stream(request: DeliveryRequest, attrs: PipeAttributes, sender: str) -> Iterator[bytes]:
    """The bytes written to the command: envelope headers, then the content (mail_copy)."""
    eol = attrs.eol
    flags = attrs.flags
    rcpt = request.recipients[0]
    if "F" in flags:
        stamp = time.asctime(time.localtime())
        yield f"From {sender or 'MAILER-DAEMON'}  {stamp}".encode() + eol
    if "R" in flags:
        yield f"Return-Path: <{sender}>".encode() + eol
    if "O" in flags:
        yield f"X-Original-To: {rcpt.orig_rcpt or rcpt.address}".encode() + eol
    if "D" in flags:
        yield f"Delivered-To: {rcpt.address}".encode() + eol
    for line in _lines(request.open_content()):
        body = line[:-1] if line.endswith(b"\n") else line
        if body.endswith(b"\r"):
            body = body[:-1]
        if "." in flags and body.startswith(b"."):
            body = b"." + body
        if ">" in flags and body.startswith(b"From "):
            body = b">" + body
        yield body + eol
    if "B" in flags:
        yield eol


def has_delivered_to(request: DeliveryRequest, address: str) -> bool:
    """Whether the header already holds ``Delivered-To: address`` (case-insensitive)."""
    wanted = address.lower()
    current: list[bytes] = []

    def matches(field_lines: list[bytes]) -> bool:
        text = b"".join(field_lines).decode("utf-8", "replace")
        name, colon, value = text.partition(":")
        return bool(colon) and name.strip().lower() == "delivered-to" and value.strip().lower() == wanted

    for line in _lines(request.open_content()):
        body = line.rstrip(b"\r\n")
        if not body:
            break
        if body[:1] in (b" ", b"\t") and current:
            current.append(body)
            continue
        if current and matches(current):
            return True
        current = [body]
    return bool(current) and matches(current)


# -- running the command ------------------------------------------------------------------


@dataclass
class CommandOutcome:
    """What became of one command run."""

    action: Action
    dsn: str
    text: str


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace").rstrip()
    return "".join(c if c.isprintable() else "_" for c in text)


def command_outcome(command: str, status: int | None, signum: int | None, output: bytes,
                    timed_out: bool, service: str, final: bool) -> CommandOutcome:
    """Postfix's pipe_command() verdict on an exit status and the command's output."""
    out = _printable(output)
    suffix = f". Command output: {out}" if out else ""
    if timed_out:
        return CommandOutcome(Action.BOUNCED, "5.3.0", f'Command time limit exceeded: "{command}"{suffix}')
    if signum is not None:
        return CommandOutcome(Action.DEFERRED, "4.3.0", f'Command died with signal {signum}: "{command}"{suffix}')
    if status == 0:
        text = f"delivered via {service} service" + (f" ({out})" if out else "")
        return CommandOutcome(Action.DELIVERED if final else Action.RELAYED, "2.0.0", text)
    if out and dsn_prefix_length(out):
        dsn, text = split_dsn("5.3.0", out)
        if dsn[0] == "2":
            dsn = "5" + dsn[1:]
        return CommandOutcome(Action.DEFERRED if dsn[0] == "4" else Action.BOUNCED, dsn, text)
    if status in SYS_EXITS:
        dsn, text = SYS_EXITS[status]
        return CommandOutcome(Action.DEFERRED if dsn[0] == "4" else Action.BOUNCED, dsn, f"{text}{suffix}")
    return CommandOutcome(Action.BOUNCED, "5.3.0", f'Command died with status {status}: "{command}"{suffix}')


@dataclass
class PipeAgent:
    """The pipe delivery agent of one master.cf service."""

    config: Config
    service: str
    args: tuple[str, ...]
    attrs: PipeAttributes | None = None
    problem: str | None = None
    _filter: list[Table] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            self.attrs = parse_attributes(self.args)
        except PipeConfigError as exc:
            self.problem = str(exc)

    def _time_limit(self) -> int:
        name = f"{self.service}_time_limit"
        if self.config.raw(name) is not None:
            try:
                return self.config.time(name)
            except Exception:  # a bad per-service value falls back, as an unset one
                log.warning(f"{name}: bad time value; using command_time_limit")
        return self.config.time("command_time_limit")

    def _config_error(self, request: DeliveryRequest, why: str) -> list[RecipientStatus]:
        log.warning(f"service {self.service}: {why}")
        return [RecipientStatus(r, Action.DEFERRED, CONFIG_ERROR[0], CONFIG_ERROR[1], relay=self.service)
                for r in request.recipients]

    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        attrs = self.attrs
        if attrs is None:
            return self._config_error(request, self.problem or "bad command attributes")
        try:
            identity = command_identity(attrs)
        except PipeConfigError as exc:
            return self._config_error(request, str(exc))
        multi = len(request.recipients) > 1
        for letter in ("D", "O"):
            if letter in attrs.flags and multi:
                return self._config_error(
                    request, f"pipe flag `{letter}' requires {self.service}_destination_recipient_limit = 1")
        if attrs.size_limit and request.content_size > attrs.size_limit:
            outcome = CommandOutcome(Action.BOUNCED, "5.2.3", "message too large")
        elif "D" in attrs.flags and await offload(
                has_delivered_to, request, request.recipients[0].address):
            outcome = CommandOutcome(Action.BOUNCED, "5.4.6",
                                     f"mail forwarding loop for {request.recipients[0].address}")
        else:
            try:
                outcome = await self._run(request, attrs, identity)
            except PipeConfigError as exc:
                return self._config_error(request, str(exc))
        return [self._status(r, outcome) for r in request.recipients]

    def _message_macros(self, request: DeliveryRequest, attrs: PipeAttributes) -> tuple[dict[str, str], str]:
        sender = request.sender or attrs.null_sender
        shown = quote_local(sender) if sender and "q" in attrs.flags else sender
        a = request.attributes
        values = {
            "sender": shown,
            "nexthop": request.nexthop.lower() if "h" in attrs.flags else request.nexthop,
            "size": str(request.content_size),
            "queue_id": request.queue_id,
            "client_address": a.get("log_client_address", a.get("client_address", "")),
            "client_helo": a.get("log_helo_name", a.get("helo_name", "")),
            "client_hostname": a.get("log_client_name", a.get("client_name", "")),
            "client_port": a.get("log_client_port", a.get("client_port", "")),
            "client_protocol": a.get("log_protocol_name", a.get("protocol_name", "")),
            "sasl_method": a.get("sasl_method", ""),
            "sasl_sender": a.get("sasl_sender", ""),
            "sasl_username": a.get("sasl_username", ""),
        }
        return values, sender

    async def _run(self, request: DeliveryRequest, attrs: PipeAttributes, identity: Identity) -> CommandOutcome:
        values, sender = self._message_macros(request, attrs)
        argv = expand_argv(attrs.argv, values, request.recipients, attrs.flags,
                           self.config.get("recipient_delimiter"))
        if not argv:
            raise PipeConfigError("empty command line")
        env = {name: os.environ[name] for name in self.config.list("export_environment") if name in os.environ}
        if attrs.directory:
            cwd = attrs.directory
        elif identity.uid is None:
            cwd = self.config.get("queue_directory") or "/"
        else:
            cwd = "/"  # the queue directory is private (0700): another user cannot enter it
        target = None
        if identity.uid is not None and identity.gid is not None:
            target = privsep.Target("pipe", identity.name, identity.uid, identity.gid, identity.groups, "/")
        try:
            proc = await privsep.start_command(list(argv), env=env, cwd=cwd, target=target, umask=-1)
        except (OSError, privsep.SpawnError) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return CommandOutcome(Action.DEFERRED, "4.3.0", f'Command failed: {text}: "{argv[0]}"')
        assert proc.stdin is not None and proc.stdout is not None
        feeding = asyncio.create_task(feed_stdin(proc.stdin, message_stream(request, attrs, sender)))
        collecting = asyncio.create_task(collect_output(proc.stdout, OUTPUT_LIMIT))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), self._time_limit())
        except asyncio.TimeoutError:
            timed_out = True
            proc.kill_group(signal.SIGKILL)
            await proc.wait()
        except asyncio.CancelledError:
            proc.kill_group(signal.SIGKILL)
            raise
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await feeding
        try:
            output = await asyncio.wait_for(collecting, 5)
        except asyncio.TimeoutError:
            output = b""
        code = proc.returncode
        signum = -code if code is not None and code < 0 and not timed_out else None
        status = code if code is not None and code >= 0 else None
        return command_outcome(argv[0], status, signum, output, timed_out, self.service, "X" in attrs.flags)

    def _filter_tables(self) -> list[Table]:
        if self._filter is None:
            specs = self.config.list("pipe_delivery_status_filter")
            self._filter = [open_table(spec, self.config) for spec in specs]
        return self._filter

    def _status(self, rcpt: DeliveryRecipient, outcome: CommandOutcome) -> RecipientStatus:
        action, dsn, text = outcome.action, outcome.dsn, outcome.text
        try:
            tables = self._filter_tables()
        except (TableConfigError, TableRetry) as exc:
            log.warning(f"pipe_delivery_status_filter: {exc}")
            tables = []
        for table in tables:
            try:
                found = table.lookup(f"{dsn} {text}")
            except (TableConfigError, TableRetry) as exc:
                log.warning(f"pipe_delivery_status_filter: {table.type}:{table.name}: {exc}")
                break
            if found is None:
                continue
            new_dsn, new_text = split_dsn("", found)
            if not new_dsn or not new_text or (new_dsn[0] == "2") != (dsn[0] == "2"):
                log.warning(f"pipe_delivery_status_filter: {table.type}:{table.name}: "
                            f"ignoring bad result \"{found}\" for \"{dsn} {text}\"")
                break
            dsn, text = new_dsn, new_text
            if dsn[0] == "4":
                action = Action.DEFERRED
            elif dsn[0] == "5":
                action = Action.BOUNCED
            break
        return RecipientStatus(rcpt, action, dsn, text, relay=self.service)


def make_agent(config: Config, service: str, args: Sequence[str] = ()) -> PipeAgent:
    """The pipe agent of a master.cf service; ``args`` are its command attributes."""
    return PipeAgent(config, service, tuple(args))
