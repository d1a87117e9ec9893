"""sendmail(1): the Sendmail-compatible submission command, as Postfix implements it.

``sendmail [options] [recipient ...]`` reads a message on standard input and
writes it into ``$queue_directory/maildrop`` (postdrop's job), where the
pickup service takes it; no running server is needed to submit. Under the
names ``mailq`` and ``newaliases`` (argv[0], or ``-bp``/``-bi``) it lists the
queue or rebuilds the alias databases.

Options (Postfix's sendmail(1)):

``-t``            take recipients from To:, Cc:, Bcc: (added to command-line ones; Bcc: is removed)
``-i``, ``-oi``   a line with a single ``.`` does not end the input
``-f sender``, ``-r sender``  envelope sender (default: the login name; ``<>`` for the null sender)
``-F name``       full name for an added From: header (default: ``$NAME``, else the GECOS field)
``-N dsn``        delivery status notification: ``never`` or ``success,delay,failure``
``-R ret``        DSN RET: ``full`` or ``hdrs``; ``-V envid`` DSN envelope id
``-B type``       body type (``7BIT``/``8BITMIME``), accepted and ignored as in Postfix
``-C dir``        configuration directory (Postfix's ``-C``; also ``MAIL_CONFIG``)
``-bm``           read mail from standard input (the default)
``-bp``           list the queue (mailq)
``-bi``, ``-I``   rebuild the alias databases (newaliases)
``-bs``           stand-alone SMTP session on standard input/output (:mod:`mailhorn.cli.sendmail_smtp`)
``-q``            deliver the queued mail now: runs ``postqueue -f``
``-qRsite``       the same for one site: ``postqueue -s site`` (only sites in ``fast_flush_domains``)
``-qIqueueid``    the same for one message: ``postqueue -i queueid``
``-qinterval``    (``-q1h``) accepted for compatibility and ignored: sendmail exits at once
``-oem -oep -oeq -o7 -o8 -oX...``  accepted and ignored, as Postfix does
``-v``            more logging; ``-n -m -c -x -G -U -h N -L tag -O opt -X file`` accepted and ignored
``--``            end of options

Input: CRLF line ends become LF (``sendmail_fix_line_endings = always``),
an initial ``From `` line (mbox envelope) is dropped, and unless ``-i`` the
input ends at a line holding only ``.``. The message is streamed to the
maildrop file; memory stays bounded by one line.

``-q``, ``-qR`` and ``-qI`` work as Postfix's, by running postqueue (its
messages and exit status, 69 when the mail system is down). As Postfix's
sendmail, they refuse recipients (``flush queue mode requires no
recipient``), ``-qR``/``-qI`` need delivery mode (``-qR can be used only in
delivery mode``), ``-t`` needs delivery mode, ``-qR`` and ``-qI`` need their
argument attached (``specify: -qRsitename``) and other ``-q`` letters are
refused (``-qS is not implemented``); each such message is
``sendmail: fatal: TEXT`` with exit status 75, Postfix's.

Exit status (sysexits.h, as Postfix's sendmail): 0 success, 64 EX_USAGE bad
options or no recipients, 75 EX_TEMPFAIL the submission could not be
written or a fatal error (see above), 69 from postqueue for ``-q``.

Parameters read: ``queue_directory``, ``enable_long_queue_ids``,
``alias_database`` (via newaliases).
"""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import DEFAULT_CONFIG_DIR, Config, load
from mailhorn.queue.maildrop import MaildropWriter, wake_pickup
from mailhorn.queue.queuefile import DsnNotify, DsnRet
from mailhorn.queue.store import QueueWriteError

EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75

#: Options that take an argument (attached or as the next word).
_WITH_ARG = frozenset("BCFLNORVXbefhopqr")
_NOTIFY = {"never": DsnNotify.NEVER, "success": DsnNotify.SUCCESS,
           "failure": DsnNotify.FAILURE, "delay": DsnNotify.DELAY}


class UsageError(Exception):
    """A bad command line (EX_USAGE)."""


class FatalError(Exception):
    """A command line Postfix's sendmail refuses with ``fatal:`` and status 75."""


@dataclass
class Options:
    """The parsed command line."""

    mode: str = "m"
    extract: bool = False
    dot_ends: bool = True
    sender: str | None = None
    fullname: str | None = None
    notify: DsnNotify | None = None
    ret: DsnRet | None = None
    envid: str | None = None
    config_dir: str | None = None
    verbose: int = 0
    flush_site: str | None = None
    """``-qRsite``."""
    flush_id: str | None = None
    """``-qIqueueid``."""
    queue_interval: str | None = None
    """``-qinterval`` (ignored, as Postfix ignores it)."""
    recipients: list[str] = field(default_factory=list)


def _notify(value: str) -> DsnNotify:
    bits = DsnNotify(0)
    for word in value.replace(" ", "").lower().split(","):
        flag = _NOTIFY.get(word)
        if flag is None:
            raise UsageError(f"bad -N option value: {value}")
        bits |= flag
    if bits & DsnNotify.NEVER and bits != DsnNotify.NEVER:
        raise UsageError(f"bad -N option value: {value}")
    return bits


def parse_args(argv: list[str]) -> Options:
    """Sendmail-style option parsing (clustered flags, attached or separate values)."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            opts.recipients.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            opts.recipients.append(arg)
            continue
        j = 1
        while j < len(arg):
            flag = arg[j]
            j += 1
            value = ""
            if flag in _WITH_ARG:
                if j < len(arg):
                    value = arg[j:]
                elif flag == "q":
                    value = ""
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise UsageError(f"option requires an argument -- '{flag}'")
                j = len(arg)
            _apply(opts, flag, value)
    return opts


def _apply(opts: Options, flag: str, value: str) -> None:
    if flag == "t":
        opts.extract = True
    elif flag == "i":
        opts.dot_ends = False
    elif flag in ("f", "r"):
        opts.sender = "" if value in ("<>", "") else value.removeprefix("<").removesuffix(">")
    elif flag == "F":
        opts.fullname = value
    elif flag == "N":
        opts.notify = _notify(value)
    elif flag == "R":
        ret = value.lower()
        if ret not in ("full", "hdrs"):
            raise UsageError(f"bad -R option value: {value}")
        opts.ret = DsnRet.FULL if ret == "full" else DsnRet.HDRS
    elif flag == "V":
        opts.envid = value
    elif flag == "C":
        opts.config_dir = value
    elif flag == "b":
        if value not in ("m", "s", "p", "i", "d", "D", "a", "v", "h", "H"):
            raise UsageError(f"unsupported: -b{value}")
        opts.mode = value
    elif flag == "I":
        opts.mode = "i"
    elif flag == "o":
        if value.startswith("i"):
            opts.dot_ends = False
    elif flag == "q":
        _queue_option(opts, value)
    elif flag == "v":
        opts.verbose += 1
    elif flag in "BLOXehpnmcxGU78":
        pass
    else:
        raise UsageError(f"invalid option -- '{flag}'")


def _queue_option(opts: Options, value: str) -> None:
    """``-q``, ``-qRsite``, ``-qIqueueid``, ``-qinterval`` as Postfix's sendmail reads them.

    A plain ``-q`` is a mode like ``-b``: the last one given wins.
    """
    if not value:
        opts.mode = "q"
    elif value[0] == "R":
        if not value[1:]:
            raise FatalError("specify: -qRsitename")
        opts.flush_site = value[1:]
    elif value[0] == "I":
        if not value[1:]:
            raise FatalError("specify: -qIqueueid")
        opts.flush_id = value[1:]
    elif value[0].isdigit():
        opts.queue_interval = value
    else:
        raise FatalError(f"-q{value[0]} is not implemented")


def _login() -> tuple[str, int, str]:
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return f"#{uid}", uid, ""
    return entry.pw_name, uid, entry.pw_gecos.split(",", 1)[0]


def copy_message(source: BinaryIO, writer: MaildropWriter, *, dot_ends: bool) -> None:
    """Stream stdin to the maildrop file with Postfix's line handling."""
    first = True
    pending = bytearray()
    while True:
        line = source.readline(65536)
        if not line:
            break
        complete = line.endswith(b"\n")
        body = line[:-1] if complete else line
        if complete and body.endswith(b"\r"):
            body = body[:-1]
        if first and body.startswith(b"From "):
            first = False
            while not complete:
                more = source.readline(65536)
                if not more:
                    break
                complete = more.endswith(b"\n")
            continue
        first = False
        if dot_ends and complete and body == b"." and not pending:
            break
        pending += body
        if complete:
            pending += b"\n"
            writer.write(bytes(pending))
            pending.clear()
        elif len(pending) >= 65536:
            writer.write(bytes(pending))
            pending.clear()
            # The rest of this line is not a "." line.
            pending_continues = True
            while pending_continues:
                more = source.readline(65536)
                if not more:
                    break
                pending_continues = not more.endswith(b"\n")
                data = more.rstrip(b"\n")
                if not pending_continues and data.endswith(b"\r"):
                    data = data[:-1]
                writer.write(data + (b"" if pending_continues else b"\n"))
    if pending:
        writer.write(bytes(pending) + b"\n")


def _config(opts: Options) -> Config:
    directory = opts.config_dir or os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIR
    return load(directory)


def submit(opts: Options, config: Config, stdin: BinaryIO) -> int:
    """Write one submission into maildrop; returns the exit status."""
    login, uid, gecos = _login()
    if not opts.recipients and not opts.extract:
        log.error("Recipient addresses must be specified on the command line or via the -t option")
        return EX_USAGE
    sender = login if opts.sender is None else opts.sender
    fullname = opts.fullname if opts.fullname is not None else os.environ.get("NAME") or gecos or None
    queue_directory = config.get("queue_directory")
    try:
        writer = MaildropWriter(queue_directory, long_ids=config.bool("enable_long_queue_ids"))
    except QueueWriteError as exc:
        log.error(f"{exc}")
        return EX_TEMPFAIL
    try:
        writer.envelope(sender, opts.recipients, uid=uid, fullname=fullname, extract=opts.extract,
                        notify=opts.notify, ret=opts.ret, envid=opts.envid)
        copy_message(stdin, writer, dot_ends=opts.dot_ends)
        writer.commit()
    except QueueWriteError as exc:
        log.error(f"{exc}")
        return EX_TEMPFAIL
    except ValueError as exc:
        writer.abort()
        log.error(f"{exc}")
        return EX_DATAERR
    except BaseException:
        writer.abort()
        raise
    wake_pickup(queue_directory)
    return 0


#: The modes that submit a message (Postfix's "delivery mode").
DELIVERY_MODES = frozenset("mdDa")


def flush_queue(opts: Options) -> int | None:
    """``-q``, ``-qR``, ``-qI``: run postqueue as Postfix's sendmail does; None for other modes."""
    from mailhorn.cli import postqueue

    config_args = ["-c", opts.config_dir] if opts.config_dir else []
    if opts.flush_site is not None or opts.flush_id is not None:
        which = "R" if opts.flush_site is not None else "I"
        if opts.mode not in DELIVERY_MODES:
            raise FatalError(f"-q{which} can be used only in delivery mode")
        if opts.recipients:
            raise FatalError(f"flush {'site' if which == 'R' else 'queue_id'} requires no recipient")
        if opts.flush_site is not None:
            return postqueue.run([*config_args, "-s", opts.flush_site])
        assert opts.flush_id is not None
        return postqueue.run([*config_args, "-i", opts.flush_id])
    if opts.mode == "q":
        if opts.recipients:
            raise FatalError("flush queue mode requires no recipient")
        if opts.extract:
            raise FatalError("-t can be used only in delivery mode")
        return postqueue.run([*config_args, "-f"])
    return None


def run(argv: list[str], program: str = "sendmail") -> int:
    """Entry point: ``sendmail ARGS`` (``mailq`` and ``newaliases`` by ``program``)."""
    log.setup(program, stderr=True)
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        log.error(str(exc))
        return EX_USAGE
    except FatalError as exc:
        log.fatal(str(exc), EX_TEMPFAIL)
    if program == "mailq":
        opts.mode = "p"
    elif program == "newaliases":
        opts.mode = "i"
    if opts.queue_interval is not None:
        return 0
    try:
        flushed = flush_queue(opts)
        if opts.extract and opts.mode not in DELIVERY_MODES:
            raise FatalError("-t can be used only in delivery mode")
    except FatalError as exc:
        log.fatal(str(exc), EX_TEMPFAIL)
    if flushed is not None:
        return flushed
    if opts.mode == "i":
        from mailhorn.cli import newaliases

        return newaliases.run(["-c", opts.config_dir] if opts.config_dir else [])
    try:
        config = _config(opts)
    except (ConfigError, OSError) as exc:
        log.error(f"{exc}")
        return EX_TEMPFAIL
    if opts.mode == "p":
        from mailhorn.cli.postqueue import show_queue

        return show_queue(config, as_json=False, out=sys.stdout)
    if opts.mode == "s":
        from mailhorn.cli.sendmail_smtp import run_standalone

        try:
            return run_standalone(config)
        except ConfigError as exc:
            log.fatal(str(exc), EX_TEMPFAIL)
    if opts.mode not in ("m", "d", "D", "a"):
        log.error(f"unsupported: -b{opts.mode}")
        return EX_USAGE
    return submit(opts, config, sys.stdin.buffer)
