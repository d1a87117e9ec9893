"""Throwaway mail systems for side-by-side benchmarks: a private Postfix and a mailhorn.

What it does
    :class:`PostfixServer` runs a private Postfix instance (``postfix -c
    DIR start`` with its own ``queue_directory`` and ``data_directory``;
    nothing under /etc/postfix is touched) and :class:`MailhornServer` a
    mailhorn instance (``mailhorn -c DIR start``), each under a directory
    of the bench, listening on a free port of 127.0.0.1. The bench scripts
    give both the same main.cf lines and their own master.cf.

    :meth:`Server.processes` lists the running system's processes (the
    master from ``queue_directory/pid/master.pid`` and all its
    descendants), and :func:`pss_kib` adds up their proportional set size
    from ``/proc/PID/smaps_rollup``, so that shared pages count once.

Needs
    root (Postfix's master and its ``mail_owner``) and the Debian package
    ``postfix`` (``/usr/sbin/postfix``, ``/usr/sbin/smtp-source``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX = "/usr/sbin/postfix"

#: The daemons a Postfix instance needs behind its smtpd (master.cf lines).
POSTFIX_DAEMONS_CF = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_main_cf(base: Path, directory: Path) -> str:
    """main.cf lines that only the Postfix instance needs (its private directories and log)."""
    return (f"compatibility_level = 3.6\nqueue_directory = {directory / 'queue'}\n"
            f"data_directory = {directory / 'data'}\nsetgid_group = postdrop\n"
            f"maillog_file = {directory / 'maillog'}\nmaillog_file_prefixes = {base}\n")


def mailhorn_main_cf(directory: Path) -> str:
    """main.cf lines that only the mailhorn instance needs."""
    return f"queue_directory = {directory / 'queue'}\nmaillog_file = {directory / 'maillog'}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> None:
    """Wait for a ``220`` greeting on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def backdate(paths: list[Path]) -> None:
    """Postfix waits for a main.cf changed in the last seconds to settle; these are final."""
    old = time.time() - 60
    for path in paths:
        os.utime(path, (old, old))


def require_postfix() -> None:
    """Exit with a message unless Postfix's programs are here and we are root."""
    for program in (SMTP_SOURCE, POSTFIX):
        if not os.access(program, os.X_OK):
            raise SystemExit(f"{program} is missing (Debian package postfix)")
    if os.geteuid() != 0:
        raise SystemExit("run as root: the Postfix instance needs it")


def _parent_map() -> dict[int, list[int]]:
    """Children of every process, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    return children


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children = _parent_map()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def pss_kib(pids: list[int]) -> int:
    """Total proportional set size of ``pids`` in KiB (processes gone meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Server:
    """One mail system under the bench directory."""

    name: str
    base: Path
    port: int
    main_cf: str
    master_cf: str
    times: dict[int, list[float]] = field(default_factory=dict)

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def queue(self) -> Path:
        return self.base / "queue"

    def write_config(self) -> None:
        self.etc.mkdir(parents=True)
        (self.etc / "main.cf").write_text(self.main_cf)
        (self.etc / "master.cf").write_text(self.master_cf.format(port=self.port))
        backdate([self.etc / "main.cf", self.etc / "master.cf"])

    def command(self, action: str) -> list[str]:
        raise NotImplementedError

    def control(self, action: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        done = subprocess.run(self.command(action), capture_output=True, text=True, env=env, timeout=120)
        if done.returncode != 0 and action == "start":
            raise SystemExit(f"{self.name} {action} failed:\n{done.stdout}{done.stderr}")

    def master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def processes(self) -> list[int]:
        """The master and all its descendants (empty when it is not running)."""
        pid = self.master_pid()
        if pid is None or not os.path.exists(f"/proc/{pid}"):
            return []
        return descendants(pid)

    def held(self) -> list[Path]:
        hold = self.queue / "hold"
        return [p for p in hold.rglob("*") if p.is_file()] if hold.exists() else []

    def clear(self) -> None:
        """Remove every queued message (held or not)."""
        for path in self.held():
            path.unlink()
        for queue in ("incoming", "active", "deferred"):
            for path in (self.queue / queue).rglob("*"):
                if path.is_file():
                    path.unlink()


class PostfixServer(Server):
    def write_config(self) -> None:
        (self.base / "queue").mkdir(parents=True)
        data = self.base / "data"
        data.mkdir()
        shutil.chown(data, "postfix")
        super().write_config()

    def command(self, action: str) -> list[str]:
        return [POSTFIX, "-c", str(self.etc), action]


class MailhornServer(Server):
    def command(self, action: str) -> list[str]:
        return [sys.executable, "-m", "mailhorn", "-c", str(self.etc), action]


def smtp_source(port: int, sessions: int, messages: int, size: int, recipient: str = "rcpt@example.net",
                sender: str = "sender@example.org") -> float:
    """Run smtp-source; the wall time in seconds (exits when smtp-source fails)."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", sender, "-t", recipient, f"127.0.0.1:{port}"]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"smtp-source failed ({done.returncode}): {done.stdout}{done.stderr}")
    return elapsed
