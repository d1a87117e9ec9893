"""``sendmail -bs``: an SMTP session on standard input and output (stand-alone mode).

sendmail(1): "Stand-alone SMTP server mode. Read SMTP commands from standard
input, and write responses to standard output. In stand-alone SMTP server
mode, mail relaying and other access controls are disabled by default. To
enable them, run the process as the mail_owner user."  Postfix runs its smtpd
with ``-S`` for this; mailhorn runs its own smtpd session code
(:class:`mailhorn.smtpd.session.Session`) the same way, so the dialogue, the
replies and the limits are smtpd's.

What differs from a network session, as in Postfix:

- the client is ``localhost[127.0.0.1]`` (standard input is taken as a local
  channel, whatever kind of file it is);
- unless the process runs as ``mail_owner``, no ``smtpd_*_restrictions`` and
  no ``local_recipient_maps`` check apply;
- no STARTTLS, no AUTH, no ``smtpd_forbid_unauth_pipelining``, no anvil
  limits (a dialogue read from a file is pipelined by nature);
- ETRN is answered ``458 Unable to queue messages`` (with a logged warning);
- each message is written into ``maildrop/`` the way sendmail writes one
  (postdrop's job), so an ordinary user can submit and no running server is
  needed. The ``250 2.0.0 Ok: queued as ID`` reply comes only after the file
  and its directory are fsynced, and ID is the maildrop file's name. The file
  holds the smtpd-style ``Received: from HELO (localhost [127.0.0.1]) by ...
  id ID`` header; pickup later adds its ``Received: by ... (from userid N)``
  line on top, which is what Postfix's smtpd → postdrop → pickup path gives.

Standard input and output are bridged to one end of a socket pair by two
threads, so the asyncio session sees an ordinary stream whatever stdin and
stdout are (pipes, files, a terminal).

Log lines go to syslog or ``maillog_file`` under the program name
``smtpd`` (``connect from localhost[127.0.0.1]``, ``ID: client=...``,
``disconnect from ...``), not to standard error, which would mix with the
dialogue a person types.

Parameters read: those of smtpd (:mod:`mailhorn.smtpd.settings`),
``mail_owner``, ``queue_directory``, ``enable_long_queue_ids``,
``myhostname``, ``mail_name``, ``syslog_name``, ``syslog_facility``,
``maillog_file``.

Errors: a maildrop file that cannot be written gives the client ``451
4.3.0`` (``452 4.3.1`` for a full disk) and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
import threading

from mailhorn import log
from mailhorn.cleanup.received import smtpd_received
from mailhorn.cleanup.request import CleanupRequest, CleanupResult, Outcome
from mailhorn.config.load import Config
from mailhorn.durable import write_all
from mailhorn.dns.resolver import Resolver
from mailhorn.queue.maildrop import MaildropWriter, wake_pickup
from mailhorn.queue.queuefile import DsnNotify, DsnRet
from mailhorn.queue.store import QueueStore
from mailhorn.runtime import Runtime
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd.checks import SmtpdChecks
from mailhorn.smtpd.context import Checks, ServiceContext
from mailhorn.smtpd.session import Session
from mailhorn.smtpd.state import CheckResult, SmtpdState, Stage
from mailhorn.smtpd.stream import accept_connection

__all__ = ["STANDALONE_OVERRIDES", "MaildropCleanup", "StandAloneChecks", "build_context", "run_standalone"]

CLIENT_NAME = "localhost"
CLIENT_ADDR = "127.0.0.1"
#: Postfix's smtpd answers ETRN this way in stand-alone mode.
ETRN_REFUSED = Reply.of(458, None, "Unable to queue messages")
#: What stand-alone mode turns off, whatever main.cf says (see the module doc).
STANDALONE_OVERRIDES = {
    "smtpd_tls_security_level": "none",
    "smtpd_use_tls": "no",
    "smtpd_enforce_tls": "no",
    "smtpd_tls_wrappermode": "no",
    "smtpd_sasl_auth_enable": "no",
    "smtpd_forbid_unauth_pipelining": "no",
    "smtpd_peername_lookup": "yes",
}
_CHUNK = 65536


class StandAloneChecks:
    """The restrictions of a stand-alone session: none, unless run as mail_owner.

    ETRN is refused either way: there is no queue manager to ask from here.
    """

    def __init__(self, inner: Checks | None) -> None:
        self.inner = inner

    async def check(self, stage: Stage, state: SmtpdState) -> CheckResult:
        if stage is Stage.ETRN:
            log.warning('do not use ETRN in "sendmail -bs" mode')
            return CheckResult(ETRN_REFUSED)
        if self.inner is None:
            return CheckResult()
        return await self.inner.check(stage, state)


class _LocalPeer:
    """Names the stand-alone client ``localhost`` (forward-confirmed)."""

    async def reverse_names(self, addr: str) -> list[str]:
        return [CLIENT_NAME] if addr == CLIENT_ADDR else []

    async def addresses(self, name: str) -> list[str]:
        return [CLIENT_ADDR] if name == CLIENT_NAME else []


class _NoAnvil:
    """Stand-alone sessions are not counted (Postfix's smtpd -S skips anvil)."""

    def connect(self, service: str, client_addr: str) -> tuple[int, int]:
        return 0, 0

    def disconnect(self, service: str, client_addr: str) -> None:
        return None

    def event(self, kind: str, service: str, client_addr: str) -> int:
        return 0


def _notify(names: frozenset[str]) -> DsnNotify | None:
    if not names:
        return None
    bits = DsnNotify(0)
    for name in names:
        bits |= DsnNotify[name.upper()]
    return bits


class MaildropSession:
    """One message of the session, written into ``maildrop/`` for pickup."""

    def __init__(self, config: Config, request: CleanupRequest) -> None:
        self.config = config
        self.request = request
        self.writer: MaildropWriter | None = None
        self._header_written = False
        self._cr = False

    async def start(self) -> str:
        """Create the file; its name is the queue ID smtpd logs and replies with."""
        return self._open().queue_id

    def _open(self) -> MaildropWriter:
        if self.writer is not None:
            return self.writer
        req = self.request
        writer = MaildropWriter(self.config.get("queue_directory"),
                                long_ids=self.config.bool("enable_long_queue_ids"))
        try:
            ret = DsnRet[req.dsn_ret.upper()] if req.dsn_ret else None
            writer.envelope(req.sender, (), uid=os.getuid(), ret=ret, envid=req.dsn_envid)
            for rcpt in req.recipients:
                writer.recipient(rcpt.address, orcpt=rcpt.orcpt, notify=_notify(rcpt.notify))
        except BaseException:
            writer.abort()
            raise
        self.writer = writer
        return writer

    def _received(self, writer: MaildropWriter) -> bytes:
        client = self.request.client
        lines = smtpd_received(
            client, myhostname=self.config.get("myhostname"), mail_name=self.config.get("mail_name"),
            queue_id=writer.queue_id, recipients=[r.address for r in self.request.recipients],
            arrival=writer.arrival_time, sasl_header=bool(client.sasl_authenticated_header),
            tls_header=bool(client.tls_received_header))
        return "".join(line + "\n" for line in lines).encode()

    async def write(self, data: bytes) -> None:
        """Content with CRLF or LF ends; stored with LF ends, as sendmail stores it."""
        writer = self._open()
        if not self._header_written:
            self._header_written = True
            writer.write(self._received(writer))
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        writer.write(data.replace(b"\r\n", b"\n"))

    async def finish(self) -> CleanupResult:
        """Commit the file durably; only then is the message queued."""
        if not self._header_written:
            await self.write(b"")
        writer = self._open()
        if self._cr:
            writer.write(b"\r")
            self._cr = False
        try:
            queue_id = writer.commit()
        finally:
            self.writer = None
        wake_pickup(self.config.get("queue_directory"))
        return CleanupResult(Outcome.QUEUED, queue_id)

    async def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class MaildropCleanup:
    """The cleanup service of a stand-alone session: postdrop into ``maildrop/``."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def open(self, request: CleanupRequest) -> MaildropSession:
        return MaildropSession(self.config, request)


def _is_mail_owner(config: Config) -> bool:
    """Whether this process runs as ``mail_owner`` (access controls then apply)."""
    try:
        return pwd.getpwnam(config.get("mail_owner")).pw_uid == os.getuid()
    except KeyError:
        return False


def _pump_in(sock: socket.socket, fd: int) -> None:
    """Standard input to the session, until end of input or the session is gone."""
    try:
        while data := os.read(fd, _CHUNK):
            sock.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def _pump_out(sock: socket.socket, fd: int) -> None:
    """The session's replies to standard output, until the session closes."""
    try:
        while data := sock.recv(_CHUNK):
            write_all(fd, data)
    except OSError:
        pass


def build_context(config: Config) -> ServiceContext:
    """The smtpd service of a stand-alone session (``config`` has the overrides).

    Errors: `ConfigError` for unusable smtpd parameters.
    """
    inner: Checks | None = None
    if _is_mail_owner(config):
        inner = SmtpdChecks(config, Resolver.from_config(config))
    runtime = Runtime(queue=QueueStore.from_config(config), cleanup=MaildropCleanup(config),
                      anvil=_NoAnvil(), wakeup_qmgr=lambda: None)
    return ServiceContext.build(config, runtime, "smtpd", StandAloneChecks(inner), _LocalPeer())


async def _session(ctx: ServiceContext, sock: socket.socket) -> None:
    conn = await accept_connection(sock, None, ctx.settings.starttls_timeout)
    await Session(ctx, conn, CLIENT_ADDR, "0", "", "").run()


def run_standalone(config: Config, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Run one SMTP session on ``stdin_fd``/``stdout_fd``; the exit status.

    Errors: `ConfigError` (before any reply is written).
    """
    config = config.with_overrides(STANDALONE_OVERRIDES)
    ctx = build_context(config)
    log.setup("smtpd", syslog_name=config.get("syslog_name") or "mailhorn",
              facility=config.get("syslog_facility"), maillog_file=config.get("maillog_file"))
    ours, theirs = socket.socketpair()
    reader = threading.Thread(target=_pump_in, args=(theirs, stdin_fd), daemon=True)
    writer = threading.Thread(target=_pump_out, args=(theirs, stdout_fd), daemon=True)
    reader.start()
    writer.start()
    try:
        asyncio.run(_session(ctx, ours))
    finally:
        ours.close()
        writer.join()
    # The input thread may still wait on standard input; it ends with the process.
    return 0
