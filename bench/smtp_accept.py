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
3. For each session count (smallest first), warms both up with one
   unmeasured run of ``--messages`` messages at that count (on a fresh
   instance the first runs of both systems are slower than the later ones),
   then for each round runs Postfix's ``smtp-source -s S -m M
   -l SIZE`` against one and then the other (the order alternates between
   rounds), timing each run. Before each run the held messages of the
   previous one are moved aside (not deleted: see ``Server.set_aside``). A run counts only when smtp-source succeeds and
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
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from postfix_instance import (  # noqa: E402  (the bench directory is not a package)
    POSTFIX_DAEMONS_CF, MailhornServer, PostfixServer, Server, free_port, mailhorn_main_cf,
    bench_arguments, cpu_text, finish, postfix_main_cf, print_cpu_summary, require_postfix, smtp_source, wait_listening,
)

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
POSTFIX_MASTER_CF = "127.0.0.1:{port} inet n - n - - smtpd\n" + POSTFIX_DAEMONS_CF

MAILHORN_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
"""


def wait_held(server: Server, count: int, timeout: float = 30.0) -> None:
    """Postfix's cleanup moves a message to hold just after its 250: wait for the last ones."""
    deadline = time.monotonic() + timeout
    while len(server.held()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    found = len(server.held())
    if found != count:
        raise SystemExit(f"{server.name}: {found} messages held, expected {count}")


def run(args: argparse.Namespace) -> int:
    require_postfix()
    sessions = sorted({int(s) for s in args.sessions.split(",")})
    base = Path(tempfile.mkdtemp(prefix="mailhorn-bench-"))
    os.chmod(base, 0o755)
    pf_dir, mh_dir = base / "postfix", base / "mailhorn"
    postfix = PostfixServer(
        "postfix", pf_dir, free_port(),
        COMMON_MAIN_CF + postfix_main_cf(base, pf_dir),
        POSTFIX_MASTER_CF)
    mailhorn = MailhornServer(
        "mailhorn", mh_dir, free_port(),
        COMMON_MAIN_CF + mailhorn_main_cf(mh_dir)
        + (f"master_worker_count = {args.workers}\n" if args.workers else ""),
        MAILHORN_MASTER_CF)
    servers: list[Server] = [postfix, mailhorn]
    started: list[Server] = []
    try:
        for server in servers:
            server.base.mkdir()
            server.write_config()
            server.start()
            started.append(server)
            wait_listening(server.port)
        for count in sessions:
            for server in servers:
                smtp_source(server.port, count, args.messages, args.size)
                wait_held(server, args.messages)
                server.clear()
            for round_number in range(args.rounds):
                order = servers if round_number % 2 == 0 else servers[::-1]
                for server in order:
                    os.sync()
                    user0, sys0 = server.cpu_usage()
                    elapsed = smtp_source(server.port, count, args.messages, args.size)
                    wait_held(server, args.messages)
                    user1, sys1 = server.cpu_usage()
                    server.times.setdefault(count, []).append(elapsed)
                    cpu = ((user1 - user0) * 1e3 / args.messages, (sys1 - sys0) * 1e3 / args.messages)
                    server.cpu.setdefault(count, []).append(cpu)
                    print(f"  {server.name:8} sessions={count:3} round={round_number + 1}: "
                          f"{args.messages / elapsed:8.1f} msgs/s" + cpu_text(server, cpu), flush=True)
                    server.clear()
        print()
        print(f"smtp-source -s SESSIONS -m {args.messages} -l {args.size}; median of {args.rounds} round(s); "
              f"{os.cpu_count()} CPUs")
        print(f"{'sessions':>8} {'postfix msgs/s':>15} {'mailhorn msgs/s':>16} {'mailhorn/postfix':>17}")
        for count in sessions:
            pf = args.messages / statistics.median(postfix.times[count])
            mh = args.messages / statistics.median(mailhorn.times[count])
            print(f"{count:>8} {pf:>15.1f} {mh:>16.1f} {mh / pf:>17.2f}")
        print_cpu_summary(servers, sessions)
    finally:
        finish(started, base, args.keep)
    return 0


def main() -> int:
    return run(bench_arguments(__doc__, 3, "keep the directory with both queues and logs").parse_args())


if __name__ == "__main__":
    sys.exit(main())
