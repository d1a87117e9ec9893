"""Delivery to a command: ``|command`` alias targets and ``mailbox_command``.

What it does
    Runs the command the way Postfix's local(8) does (pipe_command):

    * with ``local_command_shell`` when set (``/usr/bin/smrsh -c``: the
      command is its last argument); otherwise commands with shell
      metacharacters run as ``/bin/sh -c COMMAND`` and simple ones are
      executed directly, split on white space;
    * as the recipient (or ``default_privs``) when mailhorn runs as root,
      or through the spawner when it runs as ``mail_owner`` under a root
      master (:func:`mailhorn.privsep.start_command`): uid, gid and
      supplementary groups are set before exec, umask 077, a new session so
      a time-out kills the whole process group;
    * in ``command_execution_directory`` when set, else the user's home
      directory when it exists, else ``/``;
    * with only this environment: ``PATH=/usr/bin:/bin``, the variables named
      in ``export_environment`` that mailhorn itself has, and ``HOME``,
      ``LOGNAME``, ``USER``, ``SHELL``, ``SENDER``, ``RECIPIENT``, ``LOCAL``,
      ``DOMAIN``, ``EXTENSION``, ``ORIGINAL_RECIPIENT``, ``CLIENT_HOSTNAME``,
      ``CLIENT_ADDRESS``, ``CLIENT_HELO``, ``CLIENT_PROTOCOL``,
      ``SASL_METHOD``, ``SASL_SENDER``, ``SASL_USERNAME`` (each only when
      non-empty, as local(8) documents);
    * with the message on standard input, preceded by the ``From `` line and
      the ``Return-Path:``/``X-Original-To:``/``Delivered-To:`` headers the
      caller chose; standard output and error are collected (the first
      :data:`OUTPUT_LIMIT` bytes) for the status text;
    * for at most ``command_time_limit`` seconds.

    The outcome follows pipe_command(): exit 0 is success; output of the
    form ``X.Y.Z text`` sets the status; a <sysexits.h> code maps through
    :data:`SYS_EXITS` (``EX_TEMPFAIL`` 75 defers, the others bounce); any
    other status bounces with ``Command died with status N: "CMD"``; a signal
    defers; the time limit bounces with ``Command time limit exceeded``.
    Command output is appended as ``. Command output: TEXT``.

Parameters read
    By the caller, passed in :class:`CommandSettings`: ``local_command_shell``,
    ``command_time_limit``, ``command_execution_directory``,
    ``export_environment``.

Errors
    None escape: every failure is a :class:`CommandResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from mailhorn import privsep
from mailhorn.delivery.privs import Identity, switching_needed
from mailhorn.iopool import offload

#: Command output kept for the status text (pipe_command keeps a short log).
OUTPUT_LIMIT = 2000
#: Characters that make local(8) hand a command to /bin/sh (Postfix's SHELL_META).
SHELL_META = set("\"'`\\$;&()|<>*?[]{}~#\n\r")

EX_TEMPFAIL = 75

#: <sysexits.h> codes: (DSN, text, temporary) as Postfix's sys_exits table.
SYS_EXITS: dict[int, tuple[str, str]] = {
    64: ("5.3.0", "command line usage error"),
    65: ("5.6.0", "data format error"),
    66: ("5.3.0", "cannot open input"),
    67: ("5.1.1", "user unknown"),
    68: ("5.1.2", "host name unknown"),
    69: ("5.3.0", "service unavailable"),
    70: ("5.3.0", "internal software error"),
    71: ("5.3.0", "system resource problem"),
    72: ("5.3.0", "critical OS file missing"),
    73: ("5.2.0", "can't create user output file"),
    74: ("5.3.0", "input/output error"),
    75: ("4.3.0", "temporary failure"),
    76: ("5.5.0", "remote error in protocol"),
    77: ("5.7.0", "permission denied"),
    78: ("5.3.5", "local configuration error"),
}

_DSN_TEXT = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$", re.S)


@dataclass(frozen=True)
class CommandSettings:
    """How commands run (from main.cf)."""

    shell: str = ""
    time_limit: float = 1000.0
    directory: str = ""
    export: tuple[str, ...] = ("TZ", "MAIL_CONFIG", "LANG")


@dataclass(frozen=True)
class CommandResult:
    """The outcome: DSN status and the text Postfix would log."""

    dsn: str
    text: str

    @property
    def ok(self) -> bool:
        return self.dsn.startswith("2")

    @property
    def temporary(self) -> bool:
        return self.dsn.startswith("4")


def argv_for(command: str, shell: str) -> list[str]:
    """The argument vector local(8) executes for ``command``."""
    if shell:
        return [*shell.split(), command]
    if any(ch in SHELL_META for ch in command):
        return ["/bin/sh", "-c", command]
    words = command.split()
    return words if words else ["/bin/sh", "-c", command]


def environment(settings: CommandSettings, variables: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: PATH, the exported names, then the delivery's variables."""
    env = {"PATH": "/usr/bin:/bin"}
    for name in settings.export:
        if name in os.environ:
            env[name] = os.environ[name]
    for name, value in variables.items():
        if value:
            env[name] = value
    return env


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " if ch in "\r\n\t" else "_" for ch in text)
    return " ".join(text.split())


def outcome(command: str, status: int | None, signal_number: int | None, output: bytes,
            timed_out: bool) -> CommandResult:
    """Map how the command ended to a status, as Postfix's pipe_command does."""
    log = _printable(output)
    tail = f". Command output: {log}" if log else ""
    if timed_out:
        return CommandResult("5.3.0", f'Command time limit exceeded: "{command}"{tail}')
    if signal_number is not None:
        return CommandResult("4.3.0", f'Command died with signal {signal_number}: "{command}"{tail}')
    if status == 0:
        return CommandResult("2.0.0", f"delivered to command: {command}")
    match = _DSN_TEXT.match(log)
    if match:
        return CommandResult(match.group(1), match.group(2))
    if status in SYS_EXITS:
        dsn, text = SYS_EXITS[status]
        return CommandResult(dsn, f"{text}{tail}")
    return CommandResult("5.3.0", f'Command died with status {status}: "{command}"{tail}')


async def feed_stdin(stdin: asyncio.StreamWriter, pieces: Iterator[bytes]) -> None:
    """Write the message to a command's input and close it; a command that stops
    reading (EPIPE) is not an error: its exit status decides."""
    try:
        while True:
            piece = await offload(next, pieces, None)
            if piece is None:
                break
            stdin.write(piece)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading: its exit status decides
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            stdin.close()
            await stdin.wait_closed()


async def collect_output(stdout: asyncio.StreamReader, limit: int) -> bytes:
    """A command's output, read to its end and kept up to ``limit`` bytes."""
    kept = bytearray()
    while chunk := await stdout.read(65536):
        if len(kept) < limit:
            kept += chunk[:limit - len(kept)]
    return bytes(kept)


async def run_command(command: str, *, identity: Identity, variables: Mapping[str, str],
                      pieces: Callable[[], Iterable[bytes]], settings: CommandSettings) -> CommandResult:
    """Run one delivery command with the message on its input; never raises."""
    argv = argv_for(command, settings.shell)
    switching = switching_needed(identity)
    # A home the worker cannot look into (0700, another user's) is tried by the spawner's child itself.
    home = identity.home if os.path.isdir(identity.home) or (switching and privsep.active()) else "/"
    cwd = settings.directory or home
    try:
        proc = await privsep.start_command(argv, env=environment(settings, variables), cwd=cwd,
                                           target=identity.target() if switching else None)
    except (OSError, privsep.SpawnError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return CommandResult("4.3.0", f"cannot run command {argv[0]}: {text}")
    assert proc.stdin is not None and proc.stdout is not None
    source = iter(pieces())
    timed_out = False
    feeder = asyncio.ensure_future(feed_stdin(proc.stdin, source))
    reader = asyncio.ensure_future(collect_output(proc.stdout, OUTPUT_LIMIT))
    output = b""
    try:
        done = asyncio.gather(feeder, reader, proc.wait())
        try:
            _, output, _ = await asyncio.wait_for(done, settings.time_limit)
        except asyncio.TimeoutError:
            timed_out = True
    except OSError as exc:
        return CommandResult("4.3.0", f"error reading the message for the command: {exc.strerror}")
    finally:
        if proc.returncode is None:
            proc.kill_group(signal.SIGKILL)
            await proc.wait()
        for task in (feeder, reader):
            if not task.done():
                task.cancel()
        if reader.done() and not reader.cancelled() and reader.exception() is None:
            output = reader.result()
    code = proc.returncode
    assert code is not None
    if timed_out:
        return outcome(command, None, None, output, True)
    if code < 0:
        return outcome(command, None, -code, output, False)
    return outcome(command, code, None, output, False)
