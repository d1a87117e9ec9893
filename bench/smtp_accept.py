"""SMTP acceptance rate: mailhorn against Postfix, side by side, in one run.

Usage (as root, from the repository)::

    .venv/bin/python bench/smtp_accept.py [--messages 2000] [--sessions 10,50]
        [--size 4096] [--rounds 3] [--workers N] [--keep]

What it does:

1. Creates a throwaway directory holding two mail systems: a private Postfix
   instance (``postfix -c DIR start`` with its own ``queue_directory`` and
   ``data_directory``; nothing under /etc/postfix is touched) and a mailhorn
   instance (``mailhorn -c DIR start``). Each listens on a free port of
   127.0.0.1.
2. Configures both the same way: the same main.cf settings (listed in
   :data:`COMMON_MAIN_CF`), the same limits (the defaults of both), no
   client name lookup (so no DNS query leaves the machine), and
   ``smtpd_data_restrictions = check_client_access static:HOLD``: every
   accepted message is written to the queue, made durable, and parked in
   ``hold``, where no queue manager delivers it. Postfix's queue manager
   still runs (without it, cleanup waits a second per message for a trigger
   that nobody answers). Postfix fsyncs every queue file before its 250;
   mailhorn fsyncs the file and the directory (group commit).
3. Warms both up (one run of each at the highest session count), then for
   each session count and each round runs Postfix's ``smtp-source -s S -m M
   -l SIZE`` against one and then the other (the order alternates between
   rounds), timing each run. Before each run the held messages of the
   previous one are removed. A run counts only when smtp-source succeeds and
   exactly M messages are in the queue afterwards.
4. Prints messages per second (the median of the rounds) for each server and
   the ratio mailhorn / Postfix, then stops both and removes the directory
   (``--keep`` keeps it, with both logs).

The numbers depend on the machine (cores, disk, fsync latency); both servers
and the load generator share it, so only the ratio is meaningful.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX = "/usr/sbin/postfix"

#: main.cf settings both servers get.
COMMON_MAIN_CF = """\
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.test
mydomain = example.test
mydestination =
smtpd_peername_lookup = no
smtpd_data_restrictions = check_client_access static:HOLD
alias_maps =
alias_database =
"""

#: Postfix's master.cf: the smtpd listener and the daemons it talks to.
POSTFIX_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
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

MAILHORN_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> None:
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

    def held(self) -> list[Path]:
        hold = self.queue / "hold"
        return [p for p in hold.rglob("*") if p.is_file()] if hold.exists() else []

    def clear(self) -> None:
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


def smtp_source(port: int, sessions: int, messages: int, size: int) -> float:
    """Run smtp-source; the wall time in seconds."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", "sender@example.org", "-t", "rcpt@example.net", f"127.0.0.1:{port}"]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"smtp-source failed ({done.returncode}): {done.stdout}{done.stderr}")
    return elapsed


def wait_held(server: Server, count: int, timeout: float = 30.0) -> None:
    """Postfix's cleanup moves a message to hold just after its 250: wait for the last ones."""
    deadline = time.monotonic() + timeout
    while len(server.held()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    found = len(server.held())
    if found != count:
        raise SystemExit(f"{server.name}: {found} messages held, expected {count}")


def run(args: argparse.Namespace) -> int:
    for program in (SMTP_SOURCE, POSTFIX):
        if not os.access(program, os.X_OK):
            raise SystemExit(f"{program} is missing (Debian package postfix)")
    if os.geteuid() != 0:
        raise SystemExit("run as root: the Postfix instance needs it")
    sessions = [int(s) for s in args.sessions.split(",")]
    base = Path(tempfile.mkdtemp(prefix="mailhorn-bench-"))
    os.chmod(base, 0o755)
    pf_dir, mh_dir = base / "postfix", base / "mailhorn"
    postfix = PostfixServer(
        "postfix", pf_dir, free_port(),
        COMMON_MAIN_CF + f"compatibility_level = 3.6\nqueue_directory = {pf_dir / 'queue'}\n"
        f"data_directory = {pf_dir / 'data'}\nsetgid_group = postdrop\n"
        f"maillog_file = {pf_dir / 'maillog'}\nmaillog_file_prefixes = {base}\n",
        POSTFIX_MASTER_CF)
    mailhorn = MailhornServer(
        "mailhorn", mh_dir, free_port(),
        COMMON_MAIN_CF + f"queue_directory = {mh_dir / 'queue'}\nmaillog_file = {mh_dir / 'maillog'}\n"
        + (f"master_worker_count = {args.workers}\n" if args.workers else ""),
        MAILHORN_MASTER_CF)
    servers: list[Server] = [postfix, mailhorn]
    started: list[Server] = []
    try:
        for server in servers:
            server.base.mkdir()
            server.write_config()
            server.control("start")
            started.append(server)
            wait_listening(server.port)
        for server in servers:
            smtp_source(server.port, max(sessions), max(sessions) * 4, args.size)
            wait_held(server, max(sessions) * 4)
            server.clear()
        for count in sessions:
            for round_number in range(args.rounds):
                order = servers if round_number % 2 == 0 else servers[::-1]
                for server in order:
                    os.sync()
                    elapsed = smtp_source(server.port, count, args.messages, args.size)
                    wait_held(server, args.messages)
                    server.times.setdefault(count, []).append(elapsed)
                    print(f"  {server.name:8} sessions={count:3} round={round_number + 1}: "
                          f"{args.messages / elapsed:8.1f} msgs/s", flush=True)
                    server.clear()
        print()
        print(f"smtp-source -s SESSIONS -m {args.messages} -l {args.size}; median of {args.rounds} round(s); "
              f"{os.cpu_count()} CPUs")
        print(f"{'sessions':>8} {'postfix msgs/s':>15} {'mailhorn msgs/s':>16} {'mailhorn/postfix':>17}")
        for count in sessions:
            pf = args.messages / statistics.median(postfix.times[count])
            mh = args.messages / statistics.median(mailhorn.times[count])
            print(f"{count:>8} {pf:>15.1f} {mh:>16.1f} {mh / pf:>17.2f}")
    finally:
        for server in started:
            server.control("stop")
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--sessions", default="10,50", help="comma-separated session counts (default 10,50)")
    parser.add_argument("--size", type=int, default=4096, help="message payload bytes (default 4096)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server and session count (default 3)")
    parser.add_argument("--workers", type=int, default=0,
                        help="mailhorn master_worker_count (default: the server's default)")
    parser.add_argument("--keep", action="store_true", help="keep the directory with both queues and logs")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
