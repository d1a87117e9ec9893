"""Shared pieces of the SMTP/LMTP client tests: configuration, requests, smtp-sink.

:class:`SmtpSink` runs Postfix's ``smtp-sink`` on 127.0.0.3 (an ephemeral
port), dumping every transaction into a directory, so a test can count what
arrived.  :func:`run_agent` builds the agent and runs its deliveries in one
event loop, closing cached sessions at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from mailhorn import log
from mailhorn.config.load import Config, load
from mailhorn.delivery.request import DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.delivery.smtp import SmtpAgent, make_agent, make_lmtp_agent
from tests.conftest import require
from tests.helpers.ports import reserve_port
from tests.helpers.procs import stop_process

SINK = "/usr/sbin/smtp-sink"
T = TypeVar("T")

MESSAGE = (b"From: a@example.org\nTo: b@example.net\nSubject: test\nMessage-ID: <1@example.org>\n\n"
           b"Hello.\n.leading dot\n")


def make_config(tmp_path: Path, **params: str) -> Config:
    conf = tmp_path / "etc"
    conf.mkdir(exist_ok=True)
    values = {"myhostname": "client.example.test", "maillog_file": str(tmp_path / "maillog"),
              "smtp_connect_timeout": "5s", "smtp_helo_timeout": "10s", "smtp_data_done_timeout": "10s",
              "lmtp_connect_timeout": "5s"}
    values.update(params)
    (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    log.setup("smtp", maillog_file=values["maillog_file"], syslog_path=None)
    return load(str(conf))


def make_request(nexthop: str, recipients: Sequence[str], content: bytes = MESSAGE, *,
                 sender: str = "sender@example.org", transport: str = "smtp", queue_id: str = "4ABCDE1",
                 attributes: dict[str, str] | None = None, notify: Sequence[str] = (),
                 orcpt: str | None = None, envid: str | None = None, ret: str | None = None,
                 chunk: int = 7) -> DeliveryRequest:
    """A request whose content comes in ``chunk``-byte pieces (small: line ends split)."""

    def open_content() -> Iterator[bytes]:
        for i in range(0, len(content), chunk):
            yield content[i:i + chunk]

    rcpts = tuple(DeliveryRecipient(r, offset=100 + i, dsn_notify=frozenset(notify), dsn_orcpt=orcpt)
                  for i, r in enumerate(recipients))
    return DeliveryRequest(queue_id, "active", transport, nexthop, sender, rcpts, open_content, len(content),
                           time.time(), attributes or {}, envid, ret)


def run_agent(config: Config, requests: Sequence[DeliveryRequest], *, service: str = "smtp",
              lmtp: bool = False, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
              ) -> list[list[RecipientStatus]]:
    """Deliver the requests one after another with one agent; the statuses of each.

    ``loop_factory`` picks the event loop (the workers use uvloop when installed).
    """

    async def main() -> list[list[RecipientStatus]]:
        agent: SmtpAgent = make_lmtp_agent(config, service) if lmtp else make_agent(config, service)
        out = []
        try:
            for request in requests:
                out.append(list(await agent.deliver(request)))
        finally:
            await agent.close()
        return out

    if loop_factory is None:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def run(coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro()
    return asyncio.run(main())



def wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SmtpSink:
    """Postfix's smtp-sink on ``host``, with options; dumps go to ``dump_dir``."""

    def __init__(self, tmp_path: Path, *options: str, host: str = "127.0.0.3", port: int | None = None,
                 pipelining: bool = True) -> None:
        require(os.path.exists(SINK) and shutil.which("smtp-sink") is not None or os.path.exists(SINK),
                "Postfix's smtp-sink (Debian package postfix)")
        self.host = host
        self.port = port or reserve_port()
        # smtp-sink writes as nobody: pytest's tmp_path (mode 0700) is out of its reach.
        self.dump_dir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
        os.chmod(self.dump_dir, 0o777)
        args = [SINK]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        args += ["-d", str(self.dump_dir) + "/m.", *([] if pipelining else ["-p"]), *options,
                 f"{host}:{self.port}", "64"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        #: What :meth:`stop` removes.
        self.workdir = self.dump_dir
        wait_listening(host, self.port)
        # The probe connection above is a transaction-less session: no dump.

    @property
    def nexthop(self) -> str:
        return f"[{self.host}]:{self.port}"

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dump_dir.iterdir())]

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """At least ``count`` dumps, each written out: smtp-sink creates a dump
        file before it flushes the transaction into it (even after its 250), so
        a dump counts once it is non-empty and unchanged over two looks."""
        deadline = time.monotonic() + timeout
        previous: list[bytes] = []
        while True:
            found = self.messages()
            settled = found == previous and all(found)
            if (len(found) >= count and settled) or time.monotonic() > deadline:
                return found
            previous = found
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


class LmtpSink(SmtpSink):
    """smtp-sink speaking LMTP on a UNIX-domain socket (``self.socket``); one dump per message."""

    def __init__(self, *options: str) -> None:  # not super().__init__: that one listens on TCP
        require(os.path.exists(SINK), "Postfix's smtp-sink (Debian package postfix)")
        self.workdir = Path(tempfile.mkdtemp(prefix="lmtp-sink-"))
        os.chmod(self.workdir, 0o777)
        self.socket = self.workdir / "lmtp"
        self.dump_dir = self.workdir / "dumps"
        self.dump_dir.mkdir(mode=0o777)
        os.chmod(self.dump_dir, 0o777)
        self.proc = subprocess.Popen([SINK, "-L", "-u", "nobody", "-d", f"{self.dump_dir}/m.", *options,
                                      f"unix:{self.socket}", "16"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert time.monotonic() < deadline, "smtp-sink did not create its socket"
            time.sleep(0.02)
