"""IMAP load: mailhorn's imapd against Dovecot on the same Maildirs, in one run.

Usage (as root, from the repository)::

    .venv/bin/python bench/imap_load.py [--clients 10,50] [--duration 30]
        [--messages 2000] [--users N] [--scheme SHA512-CRYPT] [--workers N]
        [--only mailhorn|dovecot] [--json FILE] [--keep]

What it does:

1. Writes one realistic INBOX of MESSAGES messages with mailhorn's mail store
   (:mod:`imap_corpus`: mixed sizes, flags, ``dovecot-uidlist``), then for
   each server a copy of it and one mailbox per user hard-linked from that
   copy (message files are never changed in place in a Maildir; the control
   files are copied). Both servers start from the same files and UIDs.
2. Starts mailhorn (``mailhorn -c DIR start-fg``, one ``imapd`` entry on a
   free port of 127.0.0.1, ``passdb_maps = passwd-file:…``, ``userdb_maps``
   naming each user's Maildir) and, after it has been measured and stopped,
   Dovecot (``dovecot -c TMP/dovecot.conf``: a private ``base_dir``,
   ``state_dir`` and log, the same passwd-file, a static userdb, ``ssl =
   no``). As root, the mailboxes belong to ``nobody`` and both servers read
   them as ``nobody``: Dovecot through ``mail_uid``/``mail_gid`` of its
   mail processes, mailhorn through its mail processes (its workers run as
   ``mail_owner``; ``--inprocess`` gives the mailboxes to ``mail_owner``
   instead, so sessions stay in the worker). Nothing under /etc is read or
   changed.
3. Warms each server up (one session per user opens its mailbox: Dovecot
   builds its index files here), then for each client count runs the load
   for DURATION seconds: N concurrent clients, client *i* on user *i mod
   USERS*, each looping::

       connect, LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS),
       3 x UID FETCH u BODY.PEEK[] (random messages), UID STORE u,v,w +FLAGS (\\Seen),
       UID STORE x +FLAGS.SILENT (\\Deleted), APPEND (a realistic message), EXPUNGE, LOGOUT

   so each mailbox keeps its size. Each command's latency is recorded; a
   ``NO``/``BAD``, a timeout or a dropped connection counts as a failure and
   the client starts its next cycle on a new connection.
4. While the load runs, a thread samples every 0.25 s the PSS
   (``/proc/PID/smaps_rollup``) of every process of the server: the
   master and everything below it (Dovecot: master, config, log, anvil,
   auth, stats, imap-login, imap; mailhorn: master, workers, spawner, mail
   processes). PSS splits shared pages between their sharers, so the sum
   is the server's real footprint.
5. Prints, per server and client count, commands per second, sessions
   (cycles) per second, latency percentiles per command, failures, and
   peak/mean PSS; then the ratios mailhorn / Dovecot. ``--json`` writes all
   of it as JSON.

The run is bounded: each load phase stops itself after DURATION seconds (the
cycles in flight finish, each command has a 60 s timeout), and the servers
are stopped and the directory removed at the end (``--keep`` keeps it).
Both servers and the load generator share the machine, so only ratios mean
something, and they move with whatever else runs.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(Path(__file__).resolve().parent)) if p not in sys.path]

from imap_corpus import chown_tree, clone_maildir, make_corpus, make_message  # noqa: E402
from postfix_instance import compile_package  # noqa: E402
from mailhorn.auth.crypt import crypt, gensalt  # noqa: E402

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
#: Seconds a single command may take before the client gives up on the connection.
COMMAND_TIMEOUT = 60.0
#: Messages fetched whole (BODY.PEEK[]) per cycle.
BODY_FETCHES = 3
#: Messages marked \Seen per cycle.
SEEN_STORES = 3
#: Seconds between memory samples.
SAMPLE_INTERVAL = 0.25
#: The order of the operations in a cycle (the report's rows).
OPERATIONS = ("CONNECT", "LOGIN", "SELECT", "FETCH FLAGS", "FETCH BODY", "STORE SEEN", "STORE DELETED",
              "APPEND", "EXPUNGE", "LOGOUT")

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
_FETCH_UID = re.compile(rb"^\* \d+ FETCH \(.*UID (\d+)")


# -- the client ---------------------------------------------------------------------------


class ImapError(Exception):
    """A command was refused, or the connection misbehaved."""


class ImapClient:
    """One IMAP connection speaking just enough of RFC 3501 for the load."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.counter = 0
        self.received = 0

    @classmethod
    async def connect(cls, port: int) -> ImapClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client = cls(reader, writer)
        greeting = await reader.readuntil(b"\r\n")
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting: {greeting!r}")
        return client

    async def _line(self) -> bytes:
        """One response line with its literals inlined."""
        line = await self.reader.readuntil(b"\r\n")
        whole = line
        while (match := _LITERAL.search(line)) is not None:
            whole += await self.reader.readexactly(int(match.group(1)))
            line = await self.reader.readuntil(b"\r\n")
            whole += line
        self.received += len(whole)
        return whole

    async def command(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
        """Send one command; the untagged lines before its ``OK`` (else :class:`ImapError`)."""
        self.counter += 1
        tag = b"a%d" % self.counter
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            await self.writer.drain()
            ready = await self._line()
            if not ready.startswith(b"+"):
                raise ImapError(f"{text.split()[0].decode()}: {ready!r}")
            self.writer.write(literal + b"\r\n")
        await self.writer.drain()
        untagged: list[bytes] = []
        while True:
            line = await self._line()
            if line.startswith(tag + b" "):
                if line[len(tag) + 1:].startswith(b"OK"):
                    return untagged
                raise ImapError(f"{text.split()[0].decode()}: {line.strip()!r}")
            untagged.append(line)

    def close(self) -> None:
        self.writer.close()


@dataclass
class LoadStats:
    """What the clients of one load phase did."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    failures: dict[str, int] = field(default_factory=dict)
    failure_samples: list[str] = field(default_factory=list)
    cycles: int = 0
    bytes_received: int = 0
    elapsed: float = 0.0

    def fail(self, text: str) -> None:
        key = text.split(":")[0]
        self.failures[key] = self.failures.get(key, 0) + 1
        if len(self.failure_samples) < 10:
            self.failure_samples.append(text)

    @property
    def commands(self) -> int:
        """IMAP commands answered OK (connections are not counted)."""
        return sum(len(v) for op, v in self.latencies.items() if op != "CONNECT")

    def summary(self) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        for op, values in self.latencies.items():
            if not values:
                continue
            ordered = sorted(values)
            ops[op] = {
                "count": len(ordered),
                "p50_ms": 1000 * _percentile(ordered, 0.50),
                "p90_ms": 1000 * _percentile(ordered, 0.90),
                "p99_ms": 1000 * _percentile(ordered, 0.99),
                "max_ms": 1000 * ordered[-1],
            }
        return {
            "commands": self.commands,
            "commands_per_s": self.commands / self.elapsed if self.elapsed else 0.0,
            "cycles": self.cycles,
            "cycles_per_s": self.cycles / self.elapsed if self.elapsed else 0.0,
            "elapsed_s": self.elapsed,
            "mb_received": self.bytes_received / 1e6,
            "failures": dict(self.failures),
            "failure_samples": list(self.failure_samples),
            "operations": ops,
        }


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _timed(stats: LoadStats, op: str, awaitable: Any) -> Any:
    start = time.perf_counter()
    result = await asyncio.wait_for(awaitable, COMMAND_TIMEOUT)
    stats.latencies[op].append(time.perf_counter() - start)
    return result


async def one_cycle(port: int, user: str, password: str, rng: random.Random, append_pool: list[bytes],
                    stats: LoadStats) -> None:
    """One session: LOGIN … LOGOUT (see the module text); raises on any failure."""
    client: ImapClient = await _timed(stats, "CONNECT", ImapClient.connect(port))
    try:
        await _timed(stats, "LOGIN", client.command(b'LOGIN "%s" "%s"' % (user.encode(), password.encode())))
        selected = await _timed(stats, "SELECT", client.command(b"SELECT INBOX"))
        exists = next((int(m.group(1)) for line in selected if (m := _EXISTS.match(line))), 0)
        listing = await _timed(stats, "FETCH FLAGS", client.command(b"UID FETCH 1:* (FLAGS)"))
        uids = [int(m.group(1)) for line in listing if (m := _FETCH_UID.match(line))]
        if len(uids) != exists:
            raise ImapError(f"FETCH: {len(uids)} UIDs for {exists} messages")
        if uids:
            for uid in rng.sample(uids, min(BODY_FETCHES, len(uids))):
                fetched = await _timed(stats, "FETCH BODY", client.command(b"UID FETCH %d BODY.PEEK[]" % uid))
                if not fetched:
                    raise ImapError(f"FETCH: no BODY[] for UID {uid}")
            seen = b",".join(b"%d" % u for u in rng.sample(uids, min(SEEN_STORES, len(uids))))
            await _timed(stats, "STORE SEEN", client.command(b"UID STORE %s +FLAGS (\\Seen)" % seen))
            await _timed(stats, "STORE DELETED",
                         client.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % rng.choice(uids)))
        await _timed(stats, "APPEND", client.command(b"APPEND INBOX (\\Seen)", rng.choice(append_pool)))
        await _timed(stats, "EXPUNGE", client.command(b"EXPUNGE"))
        await _timed(stats, "LOGOUT", client.command(b"LOGOUT"))
        stats.cycles += 1
    finally:
        stats.bytes_received += client.received
        client.close()


async def run_load(port: int, users: list[tuple[str, str]], clients: int, duration: float,
                   append_pool: list[bytes], seed: int = 1, max_cycles: int = 0) -> LoadStats:
    """``clients`` concurrent clients looping cycles until ``duration`` seconds have passed.

    ``max_cycles`` (0: no limit) bounds the cycles of each client as well.
    """
    stats = LoadStats()
    start = time.monotonic()
    deadline = start + duration

    async def client_task(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        user, password = users[index % len(users)]
        done = 0
        while time.monotonic() < deadline and (not max_cycles or done < max_cycles):
            done += 1
            try:
                await one_cycle(port, user, password, rng, append_pool, stats)
            except (ImapError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError) as exc:
                stats.fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ImapError) else str(exc))
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client_task(i) for i in range(clients)))
    stats.elapsed = time.monotonic() - start
    return stats


def append_messages(count: int = 40, seed: int = 7) -> list[bytes]:
    """Messages for APPEND: the corpus mix, without the very large ones, with CRLF line ends."""
    rng = random.Random(seed)
    out: list[bytes] = []
    index = 0
    while len(out) < count:
        data = make_message(rng, 100000 + index, time.time(), "bench@example.test")
        index += 1
        if len(data) <= 300_000:
            out.append(data.replace(b"\n", b"\r\n"))
    return out


# -- memory -----------------------------------------------------------------------------


def process_tree(root: int) -> dict[int, tuple[int, int, str]]:
    """``pid -> (depth, uid, comm)`` of ``root`` and all its descendants."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        parents[int(entry)] = int(stat[stat.rfind(")") + 2:].split()[1])
        info[int(entry)] = (uid, comm)
    tree: dict[int, tuple[int, int, str]] = {}
    if root in info:
        tree[root] = (0, *info[root])
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if pid not in tree and ppid in tree:
                tree[pid] = (tree[ppid][0] + 1, *info[pid])
                changed = True
    return tree


def pss_kb(pid: int) -> int:
    """The proportional set size of one process in kB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Samples the summed PSS of a process tree until stopped; keeps the peak and its breakdown."""

    def __init__(self, root: int, label: Any) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.label = label
        self.stop_event = threading.Event()
        self.samples: list[int] = []
        self.peak_kb = 0
        self.peak_breakdown: dict[str, tuple[int, int]] = {}

    def run(self) -> None:
        while not self.stop_event.is_set():
            breakdown: dict[str, tuple[int, int]] = {}
            total = 0
            for pid, (depth, uid, comm) in process_tree(self.root).items():
                kb = pss_kb(pid)
                total += kb
                kind = str(self.label(depth, uid, comm))
                count, size = breakdown.get(kind, (0, 0))
                breakdown[kind] = (count + 1, size + kb)
            self.samples.append(total)
            if total > self.peak_kb:
                self.peak_kb, self.peak_breakdown = total, breakdown
            self.stop_event.wait(SAMPLE_INTERVAL)

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join()
        return {
            "peak_pss_mb": self.peak_kb / 1024,
            "mean_pss_mb": statistics.fmean(self.samples) / 1024 if self.samples else 0.0,
            "peak_breakdown": {k: {"processes": n, "pss_mb": kb / 1024}
                               for k, (n, kb) in sorted(self.peak_breakdown.items())},
        }


# -- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_greeting(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} before it answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(512).startswith(b"* OK"):
                    s.sendall(b"z LOGOUT\r\n")
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers IMAP on 127.0.0.1:{port}")


@dataclass
class Layout:
    """Users, passwords and where a server's copy of the mailboxes lives."""

    users: list[tuple[str, str]]
    passwd_lines: list[str]
    uid: int
    gid: int


class Server(abc.ABC):
    """One IMAP server under the bench directory."""

    name = ""

    def __init__(self, base: Path, layout: Layout) -> None:
        self.base = base
        self.layout = layout
        self.port = free_port()
        self.pid = 0

    def maildir(self, user: str) -> Path:
        return self.base / "users" / user / "Maildir"

    def populate(self, corpus: Path) -> None:
        """This server's copy of the corpus, and each user's mailbox hard-linked from it."""
        own = self.base / "corpus"
        shutil.copytree(corpus, own)
        chown_tree(self.base / "corpus", self.layout.uid, self.layout.gid)
        (self.base / "users").mkdir(mode=0o755)
        for user, _password in self.layout.users:
            home = self.base / "users" / user
            home.mkdir(mode=0o700)
            os.chown(home, self.layout.uid, self.layout.gid)
            clone_maildir(own, self.maildir(user), self.layout.uid, self.layout.gid)
        (self.base / "passwd").write_text("\n".join(self.layout.passwd_lines) + "\n")
        os.chmod(self.base / "passwd", 0o644)

    @abc.abstractmethod
    def start(self) -> None:
        ...

    @abc.abstractmethod
    def stop(self) -> None:
        ...

    @abc.abstractmethod
    def label(self, depth: int, uid: int, comm: str) -> str:
        ...


class MailhornServer(Server):
    name = "mailhorn"

    def __init__(self, base: Path, layout: Layout, workers: int) -> None:
        super().__init__(base, layout)
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def populate(self, corpus: Path) -> None:
        super().populate(corpus)
        etc = self.base / "etc"
        etc.mkdir()
        userdb = [f"{user} uid={self.layout.uid} gid={self.layout.gid} home={self.base / 'users' / user} "
                  f"mail=maildir:{self.maildir(user)}" for user, _ in self.layout.users]
        (etc / "userdb").write_text("\n".join(userdb) + "\n")
        (etc / "main.cf").write_text(
            f"queue_directory = {self.base / 'queue'}\nmaillog_file = {self.base / 'maillog'}\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "myhostname = mail.example.test\nmydestination =\nalias_maps =\nalias_database =\n"
            f"passdb_maps = passwd-file:{self.base / 'passwd'}\nuserdb_maps = texthash:{etc / 'userdb'}\n"
            "ssl = no\n"
            + (f"master_worker_count = {self.workers}\n" if self.workers else ""))
        (etc / "master.cf").write_text(f"127.0.0.1:{self.port} inet n - n - - imapd\n")

    def start(self) -> None:
        compile_package()
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen([sys.executable, "-m", "mailhorn", "-c", str(self.base / "etc"), "start-fg"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                     cwd=str(self.base))
        self.pid = self.proc.pid
        wait_greeting(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def label(self, depth: int, uid: int, comm: str) -> str:
        if depth == 0:
            return "master"
        if depth == 1:
            return "spawner" if uid == 0 and os.geteuid() == 0 else "worker"
        return "mail process"


class DovecotServer(Server):
    name = "dovecot"

    @property
    def conf(self) -> Path:
        return self.base / "dovecot.conf"

    def populate(self, corpus: Path) -> None:
        super().populate(corpus)
        for sub in ("run", "state"):
            (self.base / sub).mkdir(mode=0o755)
        root = os.geteuid() == 0
        self.conf.write_text(
            f"base_dir = {self.base / 'run'}\nstate_dir = {self.base / 'state'}\n"
            f"log_path = {self.base / 'dovecot.log'}\n"
            "protocols = imap\nlisten = 127.0.0.1\n"
            "service imap-login {\n"
            f"  inet_listener imap {{\n    address = 127.0.0.1\n    port = {self.port}\n  }}\n"
            "  inet_listener imaps {\n    port = 0\n  }\n}\n"
            "ssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain\n"
            f"passdb {{\n  driver = passwd-file\n  args = {self.base / 'passwd'}\n}}\n"
            f"userdb {{\n  driver = static\n  args = uid={self.layout.uid} gid={self.layout.gid} "
            f"home={self.base / 'users'}/%u\n}}\n"
            "mail_location = maildir:~/Maildir\n"
            "first_valid_uid = 1\nfirst_valid_gid = 1\n"
            + (f"mail_uid = {self.layout.uid}\nmail_gid = {self.layout.gid}\n" if root else
               f"default_internal_user = {pwd.getpwuid(os.getuid()).pw_name}\n"
               f"default_login_user = {pwd.getpwuid(os.getuid()).pw_name}\n"))

    def start(self) -> None:
        # The daemon keeps the standard streams it inherited: give it a file, not a pipe.
        with open(self.base / "dovecot.start", "w+") as out:
            done = subprocess.run([DOVECOT, "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=60)
            if done.returncode != 0:
                out.seek(0)
                raise SystemExit(f"dovecot failed to start:\n{out.read()}")
        pid_file = self.base / "run" / "master.pid"
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid = int(pid_file.read_text().split()[0])
        wait_greeting(self.port)

    def stop(self) -> None:
        if not self.pid:
            return
        subprocess.run([DOVEADM, "-c", str(self.conf), "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{self.pid}").exists():
            os.kill(self.pid, signal.SIGKILL)

    def label(self, depth: int, uid: int, comm: str) -> str:
        return "master" if depth == 0 else comm


# -- the run ----------------------------------------------------------------------------------


def make_layout(count: int, scheme: str, uid: int, gid: int) -> Layout:
    users, lines = [], []
    for n in range(1, count + 1):
        user, password = f"bench{n:02d}@example.test", f"bench-pw-{n:02d}"
        if scheme == "PLAIN":
            stored = "{PLAIN}" + password
        else:
            stored = "{SHA512-CRYPT}" + crypt(password.encode(), gensalt("$6$"))
        users.append((user, password))
        lines.append(f"{user}:{stored}::::::")
    return Layout(users, lines, uid, gid)


def measure(server: Server, clients: list[int], duration: float, append_pool: list[bytes],
            seed: int) -> dict[int, dict[str, Any]]:
    """Warm up, then one load phase per client count with memory sampling."""
    results: dict[int, dict[str, Any]] = {}
    users = server.layout.users
    for _attempt in range(3):  # one session per mailbox; a pass with a failure is run again
        warm = asyncio.run(run_load(server.port, users, len(users), 600.0, append_pool, seed, max_cycles=1))
        if warm.cycles == len(users):
            break
    else:
        raise SystemExit(f"{server.name}: warm-up failed: {warm.failure_samples}")
    for count in clients:
        sampler = MemorySampler(server.pid, server.label)
        sampler.start()
        stats = asyncio.run(run_load(server.port, users, count, duration, append_pool, seed + count))
        memory = sampler.finish()
        results[count] = {**stats.summary(), **memory}
        summary = results[count]
        print(f"  {server.name:8} clients={count:3}: {summary['commands_per_s']:8.1f} commands/s "
              f"{summary['cycles_per_s']:7.1f} sessions/s  peak PSS {memory['peak_pss_mb']:7.1f} MB  "
              f"failures {sum(stats.failures.values())}", flush=True)
    return results


def report(results: dict[str, dict[int, dict[str, Any]]], clients: list[int]) -> None:
    for name, by_count in results.items():
        for count in clients:
            res = by_count[count]
            print(f"\n{name}, {count} clients: {res['commands']} commands in {res['elapsed_s']:.1f}s, "
                  f"{res['cycles']} sessions, {res['mb_received']:.0f} MB received, "
                  f"failures {res['failures'] or 0}")
            print(f"  {'operation':14} {'count':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for op in OPERATIONS:
                if op in res["operations"]:
                    o = res["operations"][op]
                    print(f"  {op:14} {o['count']:>7} {o['p50_ms']:>8.1f} {o['p90_ms']:>8.1f} "
                          f"{o['p99_ms']:>8.1f} {o['max_ms']:>8.1f}")
            parts = ", ".join(f"{k} {v['processes']}x {v['pss_mb']:.1f} MB" for k, v in res["peak_breakdown"].items())
            print(f"  PSS peak {res['peak_pss_mb']:.1f} MB, mean {res['mean_pss_mb']:.1f} MB; at peak: {parts}")
            for sample in res["failure_samples"][:3]:
                print(f"  failure: {sample}")
    if "mailhorn" in results and "dovecot" in results:
        mh, dc = results["mailhorn"], results["dovecot"]
        print(f"\n{'clients':>7} {'mailhorn cmd/s':>15} {'dovecot cmd/s':>14} {'ratio':>6}   "
              f"{'mailhorn PSS MB':>15} {'dovecot PSS MB':>14} {'ratio':>6}")
        for count in clients:
            a, b = mh[count], dc[count]
            print(f"{count:>7} {a['commands_per_s']:>15.1f} {b['commands_per_s']:>14.1f} "
                  f"{a['commands_per_s'] / b['commands_per_s']:>6.2f}   "
                  f"{a['peak_pss_mb']:>15.1f} {b['peak_pss_mb']:>14.1f} {a['peak_pss_mb'] / b['peak_pss_mb']:>6.2f}")


def run(args: argparse.Namespace) -> int:
    clients = [int(c) for c in args.clients.split(",")]
    servers_wanted = ["mailhorn", "dovecot"] if args.only is None else [args.only]
    root = os.geteuid() == 0
    if "dovecot" in servers_wanted:
        if not (os.access(DOVECOT, os.X_OK) and os.path.exists("/usr/lib/dovecot/imap")):
            raise SystemExit("Dovecot is missing (Debian package dovecot-imapd)")
        if not root:
            raise SystemExit("run as root: Dovecot's mail processes need mail_uid (or use --only mailhorn)")
    user_count = args.users or max(clients)
    if root:
        owner = pwd.getpwnam("nobody")
        uid, gid = owner.pw_uid, owner.pw_gid
    else:
        uid, gid = os.getuid(), os.getgid()
    base = Path(tempfile.mkdtemp(prefix="mailhorn-imap-bench-"))
    os.chmod(base, 0o755)
    started: list[Server] = []
    results: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        t0 = time.monotonic()
        total = make_corpus(base / "corpus" / "Maildir", args.messages, args.seed)
        print(f"corpus: {args.messages} messages, {total / 1e6:.1f} MB, {user_count} users "
              f"({time.monotonic() - t0:.1f}s)", flush=True)
        layout = make_layout(user_count, args.scheme, uid, gid)
        servers: list[Server] = []
        for name in servers_wanted:
            if name == "mailhorn":
                mh_layout = layout
                if root and args.inprocess:
                    owner_entry = pwd.getpwnam("postfix")
                    mh_layout = Layout(layout.users, layout.passwd_lines, owner_entry.pw_uid, owner_entry.pw_gid)
                servers.append(MailhornServer(base / "mailhorn", mh_layout, args.workers))
            else:
                servers.append(DovecotServer(base / "dovecot", layout))
        for server in servers:
            server.base.mkdir()
            os.chmod(server.base, 0o755)
            server.populate(base / "corpus" / "Maildir")
        append_pool = append_messages()
        for server in servers:
            server.start()
            started.append(server)
            print(f"{server.name}: pid {server.pid}, port {server.port}", flush=True)
            results[server.name] = measure(server, clients, args.duration, append_pool, args.seed)
            server.stop()
            started.remove(server)
        print(f"\n{args.duration:g}s per phase; {args.messages} messages per mailbox; {user_count} users; "
              f"{args.scheme} passwords; {os.cpu_count()} CPUs")
        report(results, clients)
        if args.json:
            Path(args.json).write_text(json.dumps({"clients": clients, "duration": args.duration,
                                                   "messages": args.messages, "users": user_count,
                                                   "results": {k: {str(c): v for c, v in r.items()}
                                                               for k, r in results.items()}}, indent=1))
    finally:
        for server in started:
            server.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", default="10,50", help="comma-separated client counts (default 10,50)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per load phase (default 30)")
    parser.add_argument("--messages", type=int, default=2000, help="messages per mailbox (default 2000)")
    parser.add_argument("--users", type=int, default=0, help="mailboxes (default: the largest client count)")
    parser.add_argument("--scheme", choices=("PLAIN", "SHA512-CRYPT"), default="SHA512-CRYPT",
                        help="password scheme in the passwd-file (default SHA512-CRYPT)")
    parser.add_argument("--workers", type=int, default=0, help="mailhorn master_worker_count (default: its default)")
    parser.add_argument("--inprocess", action="store_true",
                        help="as root, give mailhorn's mailboxes to mail_owner so sessions stay in the worker")
    parser.add_argument("--only", choices=("mailhorn", "dovecot"), help="measure one server only")
    parser.add_argument("--seed", type=int, default=1, help="corpus and client random seed (default 1)")
    parser.add_argument("--json", help="also write the results to this file as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the directory (mailboxes, configs, logs)")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
