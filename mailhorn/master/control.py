"""The master's pid file and control socket.

The pid file is ``queue_directory/process_id_directory/master.pid``
(``process_id_directory`` defaults to ``pid``), written as Postfix's master
writes it: the process ID right-aligned in 32 columns and a newline. The
master holds an exclusive ``flock`` on it while it runs; "is the mail system
running" means "is that file locked", as Postfix's ``master -t`` test, so a
stale file left by a crash never fools ``status``.

The control socket is ``master.control`` in the same directory, a unix
stream socket of mode 0600 (only the master's owner may use it; the
directory is not writable by the services' user). A client sends one command
line and reads reply lines; the last one is ``ok`` or ``error TEXT``:

* ``status`` -- one ``worker INDEX PID`` line per live worker and one
  ``listener ENDPOINT`` line per listening socket;
* ``reload`` -- re-read the configuration; ``error`` with the reason when the
  new one is refused (the running one stays);
* ``stop`` -- stop as on SIGTERM;
* ``flush`` -- ask the queue manager to retry deferred mail now.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass

from mailhorn.config.load import Config

PID_FILE = "master.pid"
CONTROL_SOCKET = "master.control"
#: Width of the process ID in the pid file (Postfix: sizeof(unsigned long) * 4).
PID_WIDTH = 32
CONTROL_TIMEOUT = 60.0


def pid_directory(config: Config) -> str:
    """The directory of the pid file and the control socket."""
    return os.path.join(config.get("queue_directory"), config.get("process_id_directory"))


def pid_path(config: Config) -> str:
    return os.path.join(pid_directory(config), PID_FILE)


def control_path(config: Config) -> str:
    return os.path.join(pid_directory(config), CONTROL_SOCKET)


class AlreadyRunning(Exception):
    """Another master holds the pid file lock."""


@dataclass
class PidFile:
    """The locked pid file of a running master."""

    path: str
    fd: int

    @classmethod
    def acquire(cls, path: str) -> PidFile:
        """Lock and write the pid file; :class:`AlreadyRunning` if another master has it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunning(path) from None
            raise
        return cls(path, fd)

    def write(self, pid: int) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid:>{PID_WIDTH}}\n".encode(), 0)

    def close(self) -> None:
        """Release the lock (the file stays, as Postfix leaves it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def running_pid(config: Config) -> int | None:
    """The running master's process ID, or None when none holds the pid file."""
    path = pid_path(config)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class ControlError(Exception):
    """The master answered ``error`` or could not be reached."""


def request(config: Config, command: str, timeout: float = CONTROL_TIMEOUT) -> list[str]:
    """Send one control command; the reply lines before the final ``ok``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(control_path(config))
            sock.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"{control_path(config)}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines:
        raise ControlError("no reply from the master")
    last = lines[-1]
    if last == "ok":
        return lines[:-1]
    raise ControlError(last[len("error "):] if last.startswith("error ") else last)
