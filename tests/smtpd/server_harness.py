"""A real smtpd service on 127.0.0.1 for tests, with a real queue.

:class:`SmtpdServer` writes a main.cf into a temporary directory, builds the
queue (``QueueStore.from_config`` + ``setup``), a cleanup service, an
anvil table and the Runtime, and runs ``mailhorn.smtpd.server.serve`` as a
:class:`tests.helpers.service.ThreadedService` (a listener on 127.0.0.1, an
event loop of its own thread), so blocking clients (smtplib, raw sockets,
swaks) can talk to it.  Logs go to ``maillog_file`` in the temporary
directory; :meth:`SmtpdServer.wait_log` polls it, so no test depends on
timing.

The restrictions are those of the checks object given; :class:`PermitAll`
refuses nothing, for tests of the dialogue itself.
"""

from __future__ import annotations

from pathlib import Path

from mailhorn import log
from mailhorn.anvil import Anvil
from mailhorn.cleanup.cleanup import Cleanup
from mailhorn.cleanup.request import CleanupRequest, CleanupResult, Outcome
from mailhorn.config.load import load
from mailhorn.config.mastercf import MasterWarning, parse_entry
from mailhorn.queue.queuefile import DsnNotify, DsnRet, QueueFile
from mailhorn.queue.store import QueueStore, QueueWriter
from mailhorn.runtime import CleanupService, CleanupSession, Runtime
from mailhorn.smtpd.context import Checks
from mailhorn.smtpd.server import serve
from mailhorn.smtpd.state import CheckResult, SmtpdState, Stage
from tests.helpers.service import LineClient, ThreadedService, log_records, wait_until

HOST = "mx.example.test"


class PermitAll:
    """Restrictions that refuse nothing."""

    def __init__(self) -> None:
        self.stages: list[Stage] = []

    async def check(self, stage: Stage, state: SmtpdState) -> CheckResult:
        self.stages.append(stage)
        return CheckResult()


class QueueCleanup:
    """A minimal cleanup service: the envelope and the content, as they came.

    Stands in for cleanup(8) where a test wants the queue file to hold
    exactly what smtpd handed over.
    """

    def __init__(self, store: QueueStore) -> None:
        self.store = store

    def open(self, request: CleanupRequest) -> CleanupSession:
        return _QueueCleanupSession(self.store, request)


_NOTIFY = {"SUCCESS": DsnNotify.SUCCESS, "FAILURE": DsnNotify.FAILURE, "DELAY": DsnNotify.DELAY,
           "NEVER": DsnNotify.NEVER}


class _QueueCleanupSession:
    def __init__(self, store: QueueStore, request: CleanupRequest) -> None:
        self.store = store
        self.request = request
        self.writer: QueueWriter | None = None
        self.cr = False

    async def _start(self) -> QueueWriter:
        if self.writer is None:
            req = self.request
            w = await self.store.awriter()
            w.sender(req.sender)
            w.attribute("client_name", req.client.name)
            w.attribute("client_address", req.client.addr)
            w.attribute("helo_name", req.client.helo)
            w.attribute("protocol_name", req.client.protocol)
            if req.body_type:
                w.attribute("encoding", req.body_type)
            if req.smtputf8:
                w.attribute("smtputf8", "1")
            w.dsn(req.dsn_envid, DsnRet[req.dsn_ret] if req.dsn_ret else None)
            for r in req.recipients:
                notify = DsnNotify(0)
                for word in r.notify:
                    notify |= _NOTIFY[word]
                w.recipient(r.address, dsn_orcpt=r.orcpt, dsn_notify=notify if r.notify else None)
            self.writer = w
        return self.writer

    async def write(self, data: bytes) -> None:
        w = await self._start()
        if self.cr:
            data = b"\r" + data
        self.cr = data.endswith(b"\r")
        if self.cr:
            data = data[:-1]
        await w.awrite(data.replace(b"\r\n", b"\n"))

    async def finish(self) -> CleanupResult:
        w = await self._start()
        if self.cr:
            w.write(b"\r")
        w.end_content()
        return CleanupResult(Outcome.QUEUED, await w.acommit())

    async def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class SmtpdServer(ThreadedService):
    """One smtpd service running in a background thread."""

    def __init__(self, tmp_path: Path, main_cf: dict[str, str] | None = None, *,
                 checks: Checks | None = None, real_checks: bool = False, real_cleanup: bool = True,
                 service: str = "smtp inet n - n - - smtpd") -> None:
        self.dir = tmp_path
        conf = tmp_path / "etc"
        conf.mkdir(exist_ok=True)
        self.maillog = tmp_path / "maillog"
        values = {
            "myhostname": HOST,
            "mydomain": "example.test",
            "queue_directory": str(tmp_path / "queue"),
            "maillog_file": str(self.maillog),
            "smtpd_error_sleep_time": "0",
            "smtpd_client_event_limit_exceptions": "",
            # No DNS unless a test brings its stub (dns_servers): clients are "unknown".
            "smtpd_peername_lookup": "no",
        }
        values.update(main_cf or {})
        (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
        self.config = load(str(conf))
        self.store = QueueStore.from_config(self.config)
        self.store.setup()
        log.setup("smtpd", maillog_file=str(self.maillog), syslog_path=None)
        self.wakeups = 0
        cleanup: CleanupService = Cleanup(self.config, self.store) if real_cleanup else QueueCleanup(self.store)
        self.runtime = Runtime(self.store, cleanup, Anvil.create(60), self._wakeup)
        warnings: list[MasterWarning] = []
        self.service = parse_entry(service, "master.cf", 1, warnings)
        # real_checks: the service's own restriction engine (mailhorn.smtpd.checks).
        self.checks: Checks | None = None if real_checks else (checks if checks is not None else PermitAll())
        self.start(lambda listener: serve(listener, self.config, self.runtime, self.service, checks=self.checks))

    def client(self, source: str = "127.0.0.1", timeout: float = 15.0) -> Client:
        """A raw client connected to the service, closed by :meth:`stop`."""
        return self.track(Client(self.port, source, timeout))

    def _wakeup(self) -> None:
        self.wakeups += 1

    # -- looking at the results ---------------------------------------------
    def logs(self) -> list[str]:
        """The text of each smtpd record."""
        return [text for program, text in log_records(self.maillog) if program.rsplit("/", 1)[-1] == "smtpd"]

    def wait_log(self, pattern: str, timeout: float = 15.0) -> str:
        """The first log line matching the regular expression, waiting for it."""
        return wait_until(self.logs, str, pattern, timeout)

    def queued(self) -> list[str]:
        return sorted(self.store.scan("incoming"))

    def read(self, queue_id: str) -> QueueFile:
        return self.store.read("incoming", queue_id)

    def content(self, queue_id: str) -> bytes:
        qf = self.read(queue_id)
        return b"".join(self.store.content("incoming", queue_id, qf))


class Client(LineClient):
    """A raw-socket SMTP client that reads whole replies."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 15.0) -> None:
        super().__init__(port, source, timeout)

    def send(self, data: bytes | str) -> None:
        super().send(data.encode() if isinstance(data, str) else data)

    def _line(self) -> str:
        return self.read_line().decode("utf-8", "surrogateescape")

    def reply(self) -> list[str]:
        """One (possibly multi-line) reply, as its lines."""
        lines = [self._line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self._line())
        return lines

    def cmd(self, line: str) -> list[str]:
        self.send(line + "\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection (waits for it)."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        self.buf += data
        return data == b""
