"""End-to-end delivery: smtp-source to Maildir files, mailhorn against Postfix, in one run.

Usage (as root, from the repository)::

    .venv/bin/python bench/e2e_delivery.py [--messages 2000] [--sessions 10,50]
        [--size 4096] [--rounds 2] [--workers N] [--keep]

What it does:

1. Creates a throwaway directory holding two mail systems configured the
   same way (:data:`COMMON_MAIN_CF`): a private Postfix instance and a
   mailhorn instance (see ``postfix_instance.py``), each with its smtpd on
   a free port of 127.0.0.1 and a virtual(8) delivery agent. The recipient
   domain is a ``virtual_mailbox_domains`` domain; ``virtual_mailbox_maps``
   is a ``texthash:`` map that sends the recipient to a Maildir (trailing
   ``/``) under ``virtual_mailbox_base``; ``virtual_uid_maps`` and
   ``virtual_gid_maps`` are ``static:5000``. Both run as root with
   ``mail_owner = postfix``, so both write the Maildir as uid 5000.
2. For each session count (smallest first), warms both up with an
   unmeasured run of ``--messages`` messages at that count, as the
   acceptance bench does (a warm-up at a higher count would leave Postfix
   with idle smtpd processes that the lower count's memory figure then
   counts), then
   for each session count and each round runs Postfix's ``smtp-source -s S
   -m M -l SIZE`` against one and then the other (the order alternates
   between rounds). A run's time goes from just before smtp-source starts
   (its first connect) until the M-th file is in the Maildir's ``new/``
   (polled every :data:`POLL` seconds); the run counts only when
   smtp-source succeeds, exactly M files arrive, every file holds the whole
   message, and the queue is empty afterwards. Between runs the delivered
   files are moved aside (not deleted: see ``Server.set_aside``).
3. During each run, every :data:`SAMPLE` seconds, the proportional set size
   (``Pss:`` of ``/proc/PID/smaps_rollup``) of all processes of each system
   is added up: for Postfix its master and all its children (smtpd,
   cleanup, qmgr, trivial-rewrite, virtual, anvil, postlogd, ...), for
   mailhorn its master and all its descendants (workers, the spawner, the
   delivery helpers it started). Both systems run during both systems'
   runs, so the idle one is sampled too.
4. Prints, per session count, delivered messages per second (the median of
   the rounds) and the peak total PSS during that system's runs, for each
   system, and the ratios mailhorn / Postfix; then stops both and removes
   the directory (``--keep`` keeps it with both logs and Maildirs).

The numbers depend on the machine (cores, disk, fsync latency); both
servers and the load generator share it, so only the ratios mean something.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from postfix_instance import (  # noqa: E402  (the bench directory is not a package)
    POSTFIX_DAEMONS_CF, SMTP_SOURCE, MailhornServer, PostfixServer, Server, free_port, mailhorn_main_cf,
    bench_arguments, cpu_text, finish, postfix_main_cf, print_cpu_summary, pss_kib, require_postfix, wait_listening,
)

RECIPIENT = "rcpt@example.net"
SENDER = "sender@example.org"
VMAIL_UID = 5000
#: Seconds between two looks at the Maildir.
POLL = 0.01
#: Seconds between two memory samples.
SAMPLE = 0.25

#: main.cf settings both servers get; ``{dir}`` is the server's own directory.
COMMON_MAIN_CF = """\
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.test
mydomain = example.test
mydestination =
smtpd_peername_lookup = no
alias_maps =
alias_database =
virtual_mailbox_domains = example.net
virtual_mailbox_base = {dir}/vmail
virtual_mailbox_maps = texthash:{dir}/vmailbox
virtual_uid_maps = static:5000
virtual_gid_maps = static:5000
"""

#: The map both get: the recipient's Maildir (trailing slash) under the base.
VMAILBOX = f"{RECIPIENT} example.net/rcpt/\n"

VIRTUAL_CF = "virtual   unix  -       n       n       -       -       virtual\n"
POSTFIX_MASTER_CF = "127.0.0.1:{port} inet n - n - - smtpd\n" + POSTFIX_DAEMONS_CF + VIRTUAL_CF
MAILHORN_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
""" + VIRTUAL_CF


@dataclass
class Result:
    """The runs of one system."""

    times: dict[int, list[float]] = field(default_factory=dict)
    pss: dict[int, list[int]] = field(default_factory=dict)


def maildir_new(server: Server) -> Path:
    return server.base / "vmail" / "example.net" / "rcpt" / "new"


def prepare(server: Server) -> None:
    """The map and the mailbox base, owned by the virtual uid as virtual(8) needs."""
    vmail = server.base / "vmail"
    vmail.mkdir(parents=True)
    os.chown(vmail, VMAIL_UID, VMAIL_UID)
    (server.base / "vmailbox").write_text(VMAILBOX)


def count_files(directory: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(directory))
    except FileNotFoundError:
        return 0


def queued(server: Server) -> int:
    """Messages still in the queue (incoming, active, deferred)."""
    total = 0
    for name in ("incoming", "active", "deferred"):
        total += sum(1 for p in (server.queue / name).rglob("*") if p.is_file()) \
            if (server.queue / name).exists() else 0
    return total


class Sampler(threading.Thread):
    """Total PSS of each server's processes, every SAMPLE seconds, until stopped."""

    def __init__(self, servers: list[Server]) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.stop = threading.Event()
        self.peak = {s.name: 0 for s in servers}

    def run(self) -> None:
        while True:
            for server in self.servers:
                self.peak[server.name] = max(self.peak[server.name], pss_kib(server.processes()))
            if self.stop.wait(SAMPLE):
                return


def deliver_run(server: Server, sessions: int, messages: int, size: int, timeout: float = 600.0) -> float:
    """One smtp-source run; seconds from its start until the last Maildir file is there."""
    new = maildir_new(server)
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{server.port}"]
    start = time.monotonic()
    source = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = start + timeout
    while count_files(new) < messages:
        if time.monotonic() > deadline:
            source.kill()
            raise SystemExit(f"{server.name}: {count_files(new)} of {messages} delivered after {timeout}s")
        if source.poll() not in (None, 0):
            raise SystemExit(f"smtp-source failed against {server.name}: {source.stdout.read()!r}")  # type: ignore[union-attr]
        time.sleep(POLL)
    elapsed = time.monotonic() - start
    out, _ = source.communicate(timeout=60)
    if source.returncode != 0:
        raise SystemExit(f"smtp-source failed against {server.name}: {out!r}")
    return elapsed


def check_and_clear(server: Server, messages: int, size: int) -> None:
    """Exactly ``messages`` complete files arrived and nothing stays queued; then remove them."""
    new = maildir_new(server)
    files = list(os.scandir(new))
    if len(files) != messages:
        raise SystemExit(f"{server.name}: {len(files)} files in {new}, expected {messages}")
    for entry in files:
        if entry.stat().st_size < size:
            raise SystemExit(f"{server.name}: {entry.path} is {entry.stat().st_size} bytes")
    deadline = time.monotonic() + 30
    while queued(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    if queued(server):
        raise SystemExit(f"{server.name}: {queued(server)} messages still queued")
    for entry in files:
        server.set_aside(entry.path)


def run(args: argparse.Namespace) -> int:
    require_postfix()
    sessions = sorted({int(s) for s in args.sessions.split(",")})
    base = Path(tempfile.mkdtemp(prefix="mailhorn-e2e-"))
    os.chmod(base, 0o755)
    pf_dir, mh_dir = base / "postfix", base / "mailhorn"
    postfix = PostfixServer(
        "postfix", pf_dir, free_port(),
        COMMON_MAIN_CF.format(dir=pf_dir) + postfix_main_cf(base, pf_dir), POSTFIX_MASTER_CF)
    mailhorn = MailhornServer(
        "mailhorn", mh_dir, free_port(),
        COMMON_MAIN_CF.format(dir=mh_dir) + mailhorn_main_cf(mh_dir)
        + (f"master_worker_count = {args.workers}\n" if args.workers else ""),
        MAILHORN_MASTER_CF)
    servers: list[Server] = [postfix, mailhorn]
    results = {s.name: Result() for s in servers}
    started: list[Server] = []
    try:
        for server in servers:
            server.base.mkdir()
            prepare(server)
            server.write_config()
            server.start()
            started.append(server)
            wait_listening(server.port)
        for count in sessions:
            for server in servers:
                deliver_run(server, count, args.messages, args.size)
                check_and_clear(server, args.messages, args.size)
            for round_number in range(args.rounds):
                order = servers if round_number % 2 == 0 else servers[::-1]
                for server in order:
                    os.sync()
                    sampler = Sampler(servers)
                    sampler.start()
                    user0, sys0 = server.cpu_usage()
                    try:
                        elapsed = deliver_run(server, count, args.messages, args.size)
                    finally:
                        sampler.stop.set()
                        sampler.join()
                    user1, sys1 = server.cpu_usage()
                    cpu = ((user1 - user0) * 1e3 / args.messages, (sys1 - sys0) * 1e3 / args.messages)
                    server.cpu.setdefault(count, []).append(cpu)
                    check_and_clear(server, args.messages, args.size)
                    result = results[server.name]
                    result.times.setdefault(count, []).append(elapsed)
                    result.pss.setdefault(count, []).append(sampler.peak[server.name])
                    print(f"  {server.name:8} sessions={count:3} round={round_number + 1}: "
                          f"{args.messages / elapsed:8.1f} msgs/s, peak PSS "
                          f"{sampler.peak[server.name] / 1024:6.1f} MiB" + cpu_text(server, cpu), flush=True)
        print()
        print(f"smtp-source -s SESSIONS -m {args.messages} -l {args.size} -> virtual(8) Maildir; "
              f"median of {args.rounds} round(s); peak PSS of all processes; {os.cpu_count()} CPUs")
        print(f"{'sessions':>8} {'postfix msgs/s':>15} {'mailhorn msgs/s':>16} {'ratio':>6}"
              f" {'postfix PSS MiB':>16} {'mailhorn PSS MiB':>17} {'ratio':>6}")
        pf, mh = results["postfix"], results["mailhorn"]
        for count in sessions:
            pf_rate = args.messages / statistics.median(pf.times[count])
            mh_rate = args.messages / statistics.median(mh.times[count])
            pf_pss = max(pf.pss[count]) / 1024
            mh_pss = max(mh.pss[count]) / 1024
            print(f"{count:>8} {pf_rate:>15.1f} {mh_rate:>16.1f} {mh_rate / pf_rate:>6.2f}"
                  f" {pf_pss:>16.1f} {mh_pss:>17.1f} {mh_pss / pf_pss:>6.2f}")
        print_cpu_summary(servers, sessions)
    finally:
        finish(started, base, args.keep)
    return 0


def main() -> int:
    return run(bench_arguments(__doc__, 2, "keep the directory with both queues, logs and Maildirs").parse_args())


if __name__ == "__main__":
    sys.exit(main())
