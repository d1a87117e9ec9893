"""Helpers for the queue manager tests: a queue in a temporary directory,
messages written with the real QueueWriter, a controllable clock, the log."""

from __future__ import annotations

import asyncio

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailhorn import log
from mailhorn.config.load import Config, load
from mailhorn.queue.manager import QueueManager
from mailhorn.queue.queuefile import DsnNotify
from mailhorn.queue.store import QueueStore
from mailhorn.runtime import Runtime
from mailhorn.runtime_build import QmgrWakeup, build_runtime

BODY = b"From: a@example.org\nTo: b@example.com\nSubject: test\n\nhello\n"

MASTER_CF = """\
smtp      unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
"""


class Clock:
    """A wall clock that moves only when told (starts at the real time)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Setup:
    config: Config
    store: QueueStore
    runtime: Runtime
    maillog: Path
    root: Path

    def manager(self, clock: Clock | None = None) -> QueueManager:
        return QueueManager(self.config, self.runtime, now=clock or time.time)

    def submit(self, *recipients: str, sender: str = "a@example.org", body: bytes = BODY,
               notify: DsnNotify | None = None, when: float | None = None,
               created: float | None = None) -> str:
        with self.store.writer(arrival=when) as writer:
            stamp = created if created is not None else when
            writer.create_time(int(stamp if stamp is not None else time.time()))
            writer.sender(sender)
            for rcpt in recipients:
                writer.recipient(rcpt, orig_rcpt=rcpt, dsn_notify=notify)
            writer.write(body)
            writer.end_content()
            return writer.commit()

    def log_lines(self) -> list[str]:
        if not self.maillog.exists():
            return []
        return [line.split(": ", 1)[1] if ": " in line else line
                for line in self.maillog.read_text().splitlines()]

    def tagged(self) -> list[str]:
        """Log records as ``program: text`` (program without syslog name and pid)."""
        out = []
        for line in self.maillog.read_text().splitlines() if self.maillog.exists() else []:
            match = re.search(r" mailhorn/([\w-]+)\[\d+\]: (.*)$", line)
            if match:
                out.append(f"{match.group(1)}: {match.group(2)}")
        return out

    def queue(self, name: str) -> list[str]:
        return sorted(self.store.scan(name))


def make_setup(tmp_path: Path, main_cf: str = "", master_cf: str = MASTER_CF) -> Setup:
    conf = tmp_path / "etc"
    conf.mkdir(parents=True, exist_ok=True)
    queue = tmp_path / "queue"
    (conf / "main.cf").write_text(
        f"queue_directory = {queue}\n"
        "myhostname = mail.example.org\nmydomain = example.org\nmydestination = $myhostname, localhost\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        # No test may route mail to the outside world by accident.
        "default_transport = error:5.7.1 default route disabled in tests\n"
        + main_cf)
    (conf / "master.cf").write_text(master_cf)
    config = load(str(conf))
    maillog = tmp_path / "maillog"
    log.setup("qmgr", maillog_file=str(maillog), syslog_path=None)
    runtime = build_runtime(config, wakeup=QmgrWakeup())
    runtime.queue.setup()
    return Setup(config, runtime.queue, runtime, maillog, tmp_path)


def public_dir() -> Iterator[Path]:
    """A directory every user can reach (commands run as another user when root)."""
    base = Path(tempfile.mkdtemp(prefix="mailhorn-qmgr-"))
    os.chmod(base, 0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def command_user() -> str:
    """The ``user=`` for pipe transports in tests: nobody as root, else ourselves."""
    if os.geteuid() == 0:
        return "nobody"
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def run_incoming(qm: QueueManager, *, close_agents: bool = False) -> int:
    """Scan ``incoming`` once and wait for every attempt it started; how many it started.
    ``close_agents``: close the delivery agents afterwards (their connections, helpers)."""

    async def go() -> int:
        started = await qm.scan("incoming")
        await qm.drain()
        if close_agents:
            await qm.agents.close()
        return started

    return asyncio.run(go())
