"""Logging in Postfix's line format.

Every record reads ``SYSLOG_NAME/PROGRAM[PID]: TEXT`` (e.g.
``mailhorn/smtpd[812]: 4BCD1: client=…``) so that log analysers written for
Postfix work unchanged; with ``syslog_name = postfix`` the lines are Postfix's.
Warnings, errors and fatal errors carry Postfix's ``warning:``, ``error:``,
``fatal:`` and ``panic:`` prefixes.

Where records go (parameters ``syslog_name``, ``syslog_facility``,
``maillog_file``):

* to ``maillog_file`` when it is set, as ``Mon DD HH:MM:SS host`` + record;
* else to syslog through ``/dev/log`` when that socket exists;
* and, for commands run by a person (``stderr=True``), also to standard error
  as ``PROGRAM: TEXT``, as Postfix's commands print their messages.

:func:`fatal` logs and exits with status 1, as Postfix's msg_fatal does.

Several services share one process, so the program name of a record can be
chosen per call (``program="cleanup"``) or per asyncio task
(:func:`set_program`, kept in a context variable that tasks inherit); the
name given to :func:`setup` is the fallback.
"""

from __future__ import annotations

import contextvars
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Final, NoReturn

#: syslog facility codes (RFC 5424 §6.2.1) for ``syslog_facility``.
FACILITIES: Final = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
_SEVERITY: Final = {"panic": 2, "fatal": 2, "error": 3, "warning": 4, "info": 6}


@dataclass
class _State:
    program: str = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "mailhorn"
    syslog_name: str = "mailhorn"
    facility: int = FACILITIES["mail"]
    maillog_file: str | None = None
    stderr: bool = False
    syslog_path: str | None = "/dev/log"
    lock: threading.Lock = field(default_factory=threading.Lock)
    sock: socket.socket | None = None
    hostname: str = field(default_factory=socket.gethostname)
    log_fd: int | None = None
    log_ident: tuple[int, int] | None = None
    log_checked: float = 0.0


_state = _State()
#: This process's ID, kept current across fork(): every record names it.
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)

#: The ``Mon DD HH:MM:SS`` stamp of the current second (made once a second, not per record).
_stamp: tuple[int, str] = (0, "")


def _timestamp() -> str:
    global _stamp
    now = int(time.time())
    if _stamp[0] != now:
        _stamp = (now, time.strftime("%b %e %H:%M:%S", time.localtime(now)))
    return _stamp[1]


_program: contextvars.ContextVar[str | None] = contextvars.ContextVar("mailhorn_log_program", default=None)


def set_program(program: str) -> None:
    """Name the program for records logged from the current task (and tasks it starts)."""
    _program.set(program)


def program() -> str:
    """The program name records get in the current context."""
    return _program.get() or _state.program


def setup(
    program: str,
    *,
    syslog_name: str = "mailhorn",
    facility: str = "mail",
    maillog_file: str | None = None,
    stderr: bool = False,
    syslog_path: str | None = "/dev/log",
) -> None:
    """Configure where records go; call once at program start."""
    _state.program = program
    _state.syslog_name = syslog_name or "mailhorn"
    _state.facility = FACILITIES.get(facility.lower(), FACILITIES["mail"])
    _state.maillog_file = maillog_file or None
    _state.stderr = stderr
    _state.hostname = socket.gethostname()
    _close_maillog()
    _state.syslog_path = syslog_path
    if _state.sock is not None:
        _state.sock.close()
        _state.sock = None


def tag(name: str | None = None) -> str:
    """``SYSLOG_NAME/PROGRAM[PID]``, the prefix of every record."""
    return f"{_state.syslog_name}/{name or program()}[{_pid}]"


def _emit(severity: str, text: str, name: str | None) -> None:
    body = text if severity == "info" else f"{severity}: {text}"
    name = name or program()
    with _state.lock:
        if _state.stderr:
            # sys.stderr at the time of writing: it may have been replaced since setup().
            print(f"{name}: {body}", file=sys.stderr, flush=True)
        if _state.maillog_file:
            _write_file(body, name)
        else:
            _write_syslog(severity, body, name)


#: How often an open maillog_file is checked for rotation (seconds).
_REOPEN_CHECK: Final = 1.0


def _write_file(body: str, name: str) -> None:
    assert _state.maillog_file is not None
    line = f"{_timestamp()} {_state.hostname} {tag(name)}: {body}\n"
    try:
        fd = _maillog_fd(_state.maillog_file)
        os.write(fd, line.encode("utf-8", "backslashreplace"))
    except OSError as exc:
        _close_maillog()
        if not _state.stderr:
            print(f"{_state.program}: warning: open {_state.maillog_file}: {exc.strerror}", file=sys.stderr)


def _maillog_fd(path: str) -> int:
    """An O_APPEND descriptor of ``maillog_file``, reopened when the file was
    rotated (its device/inode changed) so that a log rotator's new file is used."""
    now = time.monotonic()
    if _state.log_fd is not None and now < _state.log_checked + _REOPEN_CHECK:
        return _state.log_fd
    _state.log_checked = now
    try:
        st = os.stat(path)
        ident: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except FileNotFoundError:
        ident = None
    if _state.log_fd is not None and ident == _state.log_ident:
        return _state.log_fd
    _close_maillog()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    st = os.fstat(fd)
    _state.log_fd, _state.log_ident = fd, (st.st_dev, st.st_ino)
    return fd


def _close_maillog() -> None:
    if _state.log_fd is not None:
        try:
            os.close(_state.log_fd)
        except OSError:
            pass
    _state.log_fd = None
    _state.log_ident = None


def _write_syslog(severity: str, body: str, name: str) -> None:
    path = _state.syslog_path
    # Looked for only when there is no connected socket: a stat() per record
    # would cost a system call for every line logged.
    if not path or (_state.sock is None and not os.path.exists(path)):
        return
    priority = _state.facility * 8 + _SEVERITY[severity]
    message = f"<{priority}>{_timestamp()} {tag(name)}: {body}"
    try:
        if _state.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect(path)
            _state.sock = sock
        _state.sock.send(message.encode("utf-8", "backslashreplace"))
    except OSError:
        if _state.sock is not None:
            _state.sock.close()
        _state.sock = None


def info(text: str, *, program: str | None = None) -> None:
    """An ordinary record."""
    _emit("info", text, program)


def warning(text: str, *, program: str | None = None) -> None:
    """Something is wrong but work goes on."""
    _emit("warning", text, program)


def error(text: str, *, program: str | None = None) -> None:
    """Something failed; the program goes on."""
    _emit("error", text, program)


def fatal(text: str, status: int = 1, *, program: str | None = None) -> NoReturn:
    """Log ``fatal: text`` and exit with ``status`` (1, as Postfix)."""
    _emit("fatal", text, program)
    raise SystemExit(status)
