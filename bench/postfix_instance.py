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

import abc
import argparse
import compileall
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


_aside = itertools.count()

#: cgroup v1's CPU accounting hierarchy, and the cgroup v2 root.
_CPUACCT_V1 = Path("/sys/fs/cgroup/cpuacct")
_CGROUP_V2 = Path("/sys/fs/cgroup")


class CpuAccount:
    """CPU time of everything a server started inside a cgroup of its own.

    The bench process enters the cgroup, starts the server (its master and
    every process it ever forks stay in the cgroup, however short-lived, as
    Postfix's smtpd and cleanup are) and leaves again. cgroup v1's cpuacct
    (``cpuacct.usage_user``/``usage_sys``, nanoseconds) or v2's ``cpu.stat``
    (``user_usec``/``system_usec``); :attr:`available` is False where neither
    can be used (not root, no cgroup file system), and the bench then prints
    no CPU figures.
    """

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        self.v1 = _CPUACCT_V1.is_dir()
        base = _CPUACCT_V1 if self.v1 else _CGROUP_V2
        if os.geteuid() != 0 or not (self.v1 or (base / "cgroup.controllers").exists()):
            return
        path = base / f"mailhorn-bench-{os.getpid()}-{name}"
        try:
            path.mkdir(exist_ok=True)
        except OSError:
            return
        self.path = path

    @property
    def available(self) -> bool:
        return self.path is not None

    def run_inside(self, action: Callable[[], None]) -> None:
        """Run ``action`` (which starts the server) from inside the cgroup."""
        if self.path is None:
            action()
            return
        home = _CPUACCT_V1 if self.v1 else self._own_cgroup()
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        try:
            action()
        finally:
            (home / "cgroup.procs").write_text(str(os.getpid()))

    @staticmethod
    def _own_cgroup() -> Path:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return _CGROUP_V2 / line[3:].lstrip("/")
        return _CGROUP_V2

    def usage(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far."""
        if self.path is None:
            return 0.0, 0.0
        if self.v1:
            user = int((self.path / "cpuacct.usage_user").read_text())
            system = int((self.path / "cpuacct.usage_sys").read_text())
            return user / 1e9, system / 1e9
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["user_usec"]) / 1e6, int(stat["system_usec"]) / 1e6

    def remove(self, timeout: float = 10.0) -> None:
        """Remove the cgroup once the stopped system's last process has left it."""
        if self.path is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # a straggler is still inside: the empty cgroup stays behind
                time.sleep(0.1)


@dataclass
class Server(abc.ABC):
    """One mail system under the bench directory."""

    name: str
    base: Path
    port: int
    main_cf: str
    master_cf: str
    times: dict[int, list[float]] = field(default_factory=dict)
    #: CPU milliseconds per message of each run: (user, system), per session count.
    cpu: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    account: CpuAccount | None = None

    def start(self) -> None:
        """Start the system inside a CPU-accounting cgroup of its own."""
        self.account = CpuAccount(self.name)
        self.account.run_inside(lambda: self.control("start"))

    def cpu_usage(self) -> tuple[float, float]:
        return self.account.usage() if self.account is not None else (0.0, 0.0)

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

    @abc.abstractmethod
    def command(self, action: str) -> list[str]:
        ...

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

    def set_aside(self, path: Path | str) -> None:
        """Move a file the bench is done with out of the way instead of deleting it.

        On ext4 without a journal a freshly freed inode is skipped by the
        inode allocator for up to five minutes (``recently_deleted()``), so
        deleting thousands of files between runs makes every file creation
        of the following runs scan past them, and whichever system ran next
        paid for it. The files are renamed into ``set-aside/`` beside the
        systems' directories (no inode is freed) and go with the bench
        directory at the end.
        """
        aside = self.base.parent / "set-aside"
        aside.mkdir(exist_ok=True)
        os.rename(path, aside / str(next(_aside)))

    def clear(self) -> None:
        """Take every queued message (held or not) out of the queue."""
        for path in self.held():
            self.set_aside(path)
        for queue in ("incoming", "active", "deferred"):
            for path in (self.queue / queue).rglob("*"):
                if path.is_file():
                    self.set_aside(path)


def cpu_text(server: Server, cpu: tuple[float, float]) -> str:
    """``, CPU u+s ms/msg`` for one run, when the system's CPU is accounted."""
    if server.account is None or not server.account.available:
        return ""
    return f", CPU {cpu[0] + cpu[1]:.2f} ms/msg (user {cpu[0]:.2f}, system {cpu[1]:.2f})"


def median_cpu(server: Server, count: int) -> str:
    """The median run's CPU per message, ``TOTAL ms (user U, system S)``."""
    runs = sorted(server.cpu[count], key=sum)
    user, system = runs[len(runs) // 2]
    return f"{user + system:.2f} ms (user {user:.2f}, system {system:.2f})"


def print_cpu_summary(servers: list[Server], sessions: list[int]) -> None:
    """The median run's CPU per message of each system and session count (when accounted)."""
    if not all(server.account is not None and server.account.available for server in servers):
        return
    print("CPU per message (median of the rounds; all of each system's processes): "
          + "; ".join(f"{count} sessions: " + ", ".join(
              f"{server.name} {median_cpu(server, count)}" for server in servers) for count in sessions))


def finish(started: list[Server], base: Path, keep: bool) -> None:
    """Stop the systems, drop their cgroups, and remove the bench directory unless ``keep``."""
    for server in started:
        server.control("stop")
        if server.account is not None:
            server.account.remove()
    if keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


def bench_arguments(doc: str | None, rounds: int, keep_help: str) -> argparse.ArgumentParser:
    """The options both side-by-side benches take (``rounds``: the default round count)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--sessions", default="10,50", help="comma-separated session counts (default 10,50)")
    parser.add_argument("--size", type=int, default=4096, help="message payload bytes (default 4096)")
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"runs per server and session count (default {rounds})")
    parser.add_argument("--workers", type=int, default=0,
                        help="mailhorn master_worker_count (default: the server's default)")
    parser.add_argument("--keep", action="store_true", help=keep_help)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return parser


class PostfixServer(Server):
    def write_config(self) -> None:
        (self.base / "queue").mkdir(parents=True)
        data = self.base / "data"
        data.mkdir()
        shutil.chown(data, "postfix")
        super().write_config()

    def command(self, action: str) -> list[str]:
        return [POSTFIX, "-c", str(self.etc), action]


def compile_package() -> None:
    """Write the bytecode of every mailhorn module that lacks it (or has it stale).

    An installed mailhorn has its bytecode (pip writes it). Run from a
    checkout with ``PYTHONDONTWRITEBYTECODE`` set, or by workers that may
    not write the checkout, every process would compile each module it
    imports at every start: about 5 MiB more memory in all, and start-up
    time, that a deployed system never pays.
    """
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "mailhorn"), quiet=1)


class MailhornServer(Server):
    def start(self) -> None:
        compile_package()
        super().start()

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
