"""imapd: the IMAP4rev1 service (RFC 3501) on a listener the master bound.

``serve(listener, config, runtime, service)`` runs one master.cf entry whose
command is ``imapd``, with the same contract as
:func:`mailhorn.smtpd.server.serve`: it accepts connections until the task
is cancelled, runs one :class:`ImapSession` per client, and on shutdown
gives open sessions :data:`SHUTDOWN_GRACE` seconds before cancelling them.
master.cf lines::

    imap   inet  n  -  n  -  -  imapd
    imaps  inet  n  -  n  -  -  imapd -o imap_tls_wrappermode=yes

A session feeds the sans-I/O :class:`~mailhorn.imap.codec.ImapCodec` and
dispatches each command through :data:`mailhorn.imap.handlers.HANDLERS`
after checking the RFC 3501 §3 state (:mod:`mailhorn.imap.state`). At each
command boundary of a selected session the mailbox is rescanned
(:mod:`mailhorn.imap.mailbox`) and the untagged EXISTS/EXPUNGE/FETCH
updates go out before the tagged answer.

Greeting: ``* OK [CAPABILITY …] mailhorn ready.`` (``login_greeting``).
Capabilities before login: ``IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+``,
``STARTTLS`` while TLS is possible (``ssl``), ``AUTH=…`` for the mechanisms
that may be used, ``LOGINDISABLED`` where plaintext logins are refused
(``disable_plaintext_auth``: TLS and loopback clients connecting to the
address they came from are secured, as in Dovecot; ``ssl = required``:
everyone before STARTTLS). The TLS and secured-connection rules are
pop3d's too (:mod:`mailhorn.mailaccess`). After login: also ``NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN
LIST-EXTENDED SPECIAL-USE QUOTA`` and ``APPENDLIMIT=n``.

Logs, in Dovecot's words (program ``imap-login`` before login and
``imap(USER)`` after)::

    imap-login: Login: user=<u>, method=PLAIN, rip=…, lip=…, mpid=…, TLS
    imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u>, method=PLAIN, rip=…, lip=…
    imap(u): Disconnected: Logged out in=… out=…

Timeouts: ``imap_login_timeout`` before login, ``imap_idle_timeout``
after (RFC 3501 §5.4: at least 30 minutes), then ``* BYE``.

Login and mail processes: a worker running as ``mail_owner`` under a root
master cannot open a user's Maildir.  After a successful login of a user
whose uid is not its own, it asks the spawner for a mail process running as
that user (:func:`mailhorn.privsep.start_mail_process`, Dovecot's
login/mail process split): the mail process (:func:`run_mail_process`)
creates the Maildir if needed, says ``+`` (or ``-`` and ends), and runs the
rest of the session with this very :class:`ImapSession` code; the worker
sends the tagged ``OK``, logs the ``Login:`` line with the mail process's
pid as ``mpid``, and from then on relays plaintext between the client
(TLS stays in the worker, so no key and no client socket ever reach the
user's process) and the mail process, whose log records it writes
(``imap(user)``).  Where the worker can read the Maildir (unprivileged, or
a virtual user with the worker's own uid), the session goes on in-process.

Parameters read: those of :class:`mailhorn.imap.state.ImapSettings`, of
:class:`mailhorn.auth.passdb.Authenticator` and of
:class:`mailhorn.auth.userdb.UserDB`.

Errors: ``ConfigError`` for unusable parameters, before anything is
accepted. In a session, mail store errors become Dovecot's ``NO``
answers; anything unexpected is logged with a traceback and answered
``NO [SERVERBUG]``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailhorn import log, mailaccess, privsep
from mailhorn.auth import popbeforesmtp, sasl
from mailhorn.auth.passdb import AuthResult, AuthStatus, Authenticator
from mailhorn.auth.userdb import UserDB, UserdbError, UserInfo
from mailhorn.config.load import Config
from mailhorn.config.mastercf import Service
from mailhorn.imap import handlers, listing
from mailhorn.imap.codec import (
    AppendData,
    AppendEnd,
    AppendStart,
    CommandError,
    CommandEvent,
    Continue,
    ContinuationLine,
    ImapCodec,
    store_error,
    tagged,
)
from mailhorn.imap.state import ImapSettings, Phase, SessionClosed, SessionState, allowed, refusal
from mailhorn.iopool import offload
from mailhorn.mailstore.errors import MailstoreError
from mailhorn.mailstore.folders import make_maildir
from mailhorn.netserve import accept_loop
from mailhorn.runtime import Runtime
from mailhorn.smtpd.stream import Connection, accept_connection
from mailhorn.tables.base import TableRetry

__all__ = ["SHUTDOWN_GRACE", "ImapService", "ImapSession", "run_mail_process", "serve"]

#: Seconds open sessions get to finish after the service is told to stop.
SHUTDOWN_GRACE = 10.0
#: Seconds between cheap checks for new mail while IDLE.
IDLE_TICK = 1.0
#: Commands during which EXPUNGE must not be sent (RFC 3501 §7.4.1).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})


@dataclass
class ImapService:
    """What every session of one service shares."""

    config: Config
    settings: ImapSettings
    authenticator: Authenticator
    userdb: UserDB
    service_name: str

    @classmethod
    def build(cls, config: Config, service_name: str = "imap") -> ImapService:
        listing.special_use_table(config)  # a bad mailbox_special_use stops the service at start
        return cls(config, ImapSettings.from_config(config), Authenticator(config), UserDB(config),
                   service_name)


async def serve(listener: socket.socket, config: Config, runtime: Runtime, service: Service) -> None:
    """Accept IMAP clients on ``listener`` until cancelled (master.cf command ``imapd``)."""
    shared = ImapService.build(config, service.name)
    await accept_loop(listener, lambda sock, peer: _connection(shared, sock, peer), SHUTDOWN_GRACE)


async def _connection(shared: ImapService, sock: socket.socket, peer: object) -> None:
    log.set_program("imap-login")
    rip = mailaccess.peer_address(peer)
    try:
        lip = mailaccess.peer_address(sock.getsockname())
    except OSError:
        lip = ""
    sock.setblocking(False)
    tls = shared.settings.tls
    context = tls.context if tls.wrappermode else None
    if tls.wrappermode and context is None:
        log.info(f"Disconnected (no auth attempts in 0 secs): user=<>, rip={rip}, lip={lip}, "
                 "TLS handshaking: no usable server certificate")
        sock.close()
        return
    try:
        conn = await accept_connection(sock, context, shared.settings.login_timeout)
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.info(f"Disconnected (no auth attempts in 0 secs): user=<>, rip={rip}, lip={lip}, "
                 f"TLS handshaking: {exc}")
        sock.close()
        return
    session = ImapSession(shared, conn, rip, lip, tls=context is not None)
    await session.run()


class ImapSession:
    """One client: reading, dispatch, state, and the helpers handlers use."""

    def __init__(self, shared: ImapService, conn: Connection, rip: str, lip: str, *, tls: bool) -> None:
        self.shared = shared
        self.settings = shared.settings
        self.config = shared.config
        self.conn = conn
        self.rip = rip
        self.lip = lip
        self.state = SessionState(tls=tls)
        self.codec = ImapCodec(max_line_length=self.settings.max_line_length,
                               append_limit=self.settings.append_limit)
        self.started = time.monotonic()
        self.last_input = time.monotonic()
        self.login_user = ""
        self.end_reason = ""
        self.append: handlers.AppendJob | None = None
        self._read_task: asyncio.Future[bytes] | None = None
        #: After a login handed to a mail process: the process the session is relayed to.
        self.mail_process: privsep.MailProcess | None = None

    # -- facts handlers use ------------------------------------------------------------------

    @property
    def secured(self) -> bool:
        """TLS, or a loopback client connecting to the address it came from (Dovecot's ``secured``)."""
        return self.state.tls or mailaccess.secured_peer(self.rip, self.lip)

    @property
    def plaintext_allowed(self) -> bool:
        return mailaccess.plaintext_allowed(self.settings.tls, tls_active=self.state.tls,
                                            secured=self.secured,
                                            disable_plaintext_auth=self.settings.disable_plaintext_auth)

    @property
    def starttls_offered(self) -> bool:
        return self.settings.tls.starttls_offered(self.state.tls)

    @property
    def user(self) -> UserInfo:
        assert self.state.user is not None
        return self.state.user

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "SASL-IR", "ID", "ENABLE", "IDLE", "LITERAL+"]
        if self.state.phase is Phase.NOT_AUTHENTICATED:
            if self.starttls_offered:
                caps.append("STARTTLS")
            mechs = sasl.offered_mechanisms(sasl.mechanisms_from_config(self.config),
                                            self.plaintext_allowed)
            caps += [f"AUTH={m}" for m in mechs]
            if not self.plaintext_allowed:
                caps.append("LOGINDISABLED")
            return " ".join(caps)
        caps += ["NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "LIST-EXTENDED",
                 "SPECIAL-USE", "QUOTA"]
        if self.settings.append_limit:
            caps.append(f"APPENDLIMIT={self.settings.append_limit}")
        return " ".join(caps)

    # -- output --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data:
            self.state.bytes_out += len(data)
            self.conn.write(data)

    async def drain(self) -> None:
        try:
            await self.conn.drain()
        except ConnectionError as exc:
            raise SessionClosed("Connection closed") from exc

    # -- input ---------------------------------------------------------------------------------

    def timeout(self) -> float:
        if self.state.phase is Phase.NOT_AUTHENTICATED:
            return self.settings.login_timeout
        return self.settings.autologout

    async def receive(self, timeout: float, wake: asyncio.Event | None = None) -> str:
        """Wait for input (fed to the codec), a wake-up, or the timeout: ``data``/``wake``/``timeout``.

        A read still pending when a wake-up or timeout ends the wait is kept
        for the next call, so no input is ever lost.
        """
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(self.conn.read())
        waits: set[asyncio.Future[Any]] = {self._read_task}
        wake_task: asyncio.Future[Any] | None = None
        if wake is not None:
            wake_task = asyncio.ensure_future(wake.wait())
            waits.add(wake_task)
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if wake_task is not None and not wake_task.done():
                wake_task.cancel()
        if self._read_task in done:
            data = self._read_task.result()
            self._read_task = None
            if not data:
                self.end_reason = "Connection closed"
                raise SessionClosed("Connection closed")
            self.last_input = time.monotonic()
            self.state.bytes_in += len(data)
            self.codec.receive_data(data)
            return "data"
        if wake_task is not None and wake_task in done:
            return "wake"
        return "timeout"

    async def _wait_input(self) -> None:
        """Wait for more input within the session's timeout, else log out with BYE."""
        limit = self.timeout()
        while True:
            left = limit - (time.monotonic() - self.last_input)
            if left <= 0:
                self.end_reason = f"Inactivity - no input for {int(limit)} secs"
                self.write(b"* BYE Disconnected for inactivity.\r\n")
                raise SessionClosed(self.end_reason)
            if await self.receive(left) == "data":
                return

    async def read_continuation(self) -> ContinuationLine:
        """The next raw line (AUTHENTICATE responses)."""
        self.codec.want_line()
        while True:
            event = self.codec.next_event()
            if isinstance(event, ContinuationLine):
                return event
            if event is not None:
                raise SessionClosed("protocol error")
            await self.drain()
            await self._wait_input()

    # -- TLS -----------------------------------------------------------------------------------

    async def start_tls(self) -> None:
        """After ``OK Begin TLS negotiation now.``: drop what came after the command, handshake."""
        context = self.settings.tls.context
        assert context is not None
        await self.drain()
        self.codec.start_tls()
        try:
            await self.conn.start_tls(context, self.settings.login_timeout)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.end_reason = f"TLS handshaking: {exc}"
            raise SessionClosed(self.end_reason) from exc
        self.state.tls = True

    # -- login ---------------------------------------------------------------------------------

    async def finish_login(self, tag: bytes, login: str, method: str, result: AuthResult) -> bytes:
        """Answer a LOGIN/AUTHENTICATE outcome and, on success, enter the authenticated state."""
        self.state.auth_attempts += 1
        self.state.method = method
        self.login_user = login
        if result.status is AuthStatus.TEMPFAIL:
            return tagged(tag, "NO", result.text, "UNAVAILABLE")
        if result.status is AuthStatus.LIMITED:
            return tagged(tag, "NO", result.text, "UNAVAILABLE")
        if not result.ok or result.user is None:
            return tagged(tag, "NO", "Authentication failed.", "AUTHENTICATIONFAILED")
        try:
            info = await self.shared.userdb.lookup_async(result.user)
        except (UserdbError, TableRetry, OSError) as exc:
            log.error(f"user {result.user}: userdb lookup failed: {exc}")
            return tagged(tag, "NO", "Temporary authentication failure.", "UNAVAILABLE")
        if info is None:
            log.info(f"auth: imap({result.user},{self.rip}): user not found in the user database")
            return tagged(tag, "NO", "Authentication failed.", "AUTHENTICATIONFAILED")
        mpid = os.getpid()
        if privsep.needed(info.uid):
            started = await self._start_mail_process(info, method)
            if started is None:
                return tagged(tag, "NO", "Internal error occurred. Refer to server log for more "
                              "information.", "SERVERBUG")
            mpid = started
        else:
            try:
                await offload(_ensure_maildir, info)
            except OSError as exc:
                log.error(f"user {info.login}: cannot create the Maildir {info.maildir}: {exc}")
                return tagged(tag, "NO", "Internal error occurred. Refer to server log for more "
                              "information.", "SERVERBUG")
        self.state.user = info
        self.state.phase = Phase.AUTHENTICATED
        self.login_user = info.login
        flag = mailaccess.security_flag(self.state.tls, self.secured)
        extra = f", {flag}" if flag else ""
        log.info(f"Login: user=<{info.login}>, method={method}, rip={self.rip}, lip={self.lip}, "
                 f"mpid={mpid}{extra}")
        await popbeforesmtp.record_login(self.config, self.rip)
        log.set_program(f"imap({info.login})")
        return tagged(tag, "OK", "Logged in", "CAPABILITY " + self.capabilities())

    async def _start_mail_process(self, info: UserInfo, method: str) -> int | None:
        """Start the user's mail process; its pid, or None (logged) when it cannot serve."""
        state = {"service": self.shared.service_name, "user": privsep.user_state(info), "maildir": info.maildir,
                 "rip": self.rip, "lip": self.lip, "tls": self.state.tls, "method": method}
        try:
            proc = await privsep.start_mail_process("imap", privsep.mail_target(info), dict(self.config.overrides), state)
        except (privsep.SpawnError, OSError) as exc:
            log.error(f"user {info.login}: cannot start the mail process: {exc}")
            return None
        failure = await proc.ready()
        if failure is not None:
            proc.close()
            return None
        self.mail_process = proc
        return proc.pid

    def _unread_input(self) -> bytes:
        """What the client sent after the login command, for the mail process."""
        pending = self.codec.take_unread()  # the codec stands at a command boundary after a login
        if self._read_task is not None:
            if self._read_task.done() and not self._read_task.cancelled():
                pending += self._read_task.result()
            else:
                self._read_task.cancel()
            self._read_task = None
        return pending

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, greeting: bool = True) -> None:
        """Serve the client; ``greeting`` False resumes a session logged in elsewhere (a mail process)."""
        if greeting:
            self.write(b"* OK [CAPABILITY " + self.capabilities().encode() + b"] "
                       + self.settings.greeting.encode("utf-8") + b"\r\n")
        try:
            while self.state.phase is not Phase.LOGOUT:
                if self.mail_process is not None:
                    await self.drain()
                    await privsep.relay(self.conn, self.mail_process, self._unread_input())
                    return
                event = self.codec.next_event()
                if event is None:
                    if self.codec.closed:
                        break
                    await self.drain()
                    await self._wait_input()
                    continue
                await self._event(event)
            await self.drain()
        except SessionClosed as exc:
            if not self.end_reason:
                self.end_reason = str(exc)
        except asyncio.CancelledError:
            self.write(b"* BYE Server shutting down.\r\n")
            self.end_reason = "Server shutting down"
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
        if self.append is not None:
            self.append.discard()
        if self.state.selected is not None:
            self.state.selected.close()
        if self.mail_process is None:  # else the mail process logs the end of the session
            self._log_disconnect()
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - the transport may already be gone
            pass

    def _log_disconnect(self) -> None:
        if self.state.user is not None:
            reason = "Logged out" if self.state.phase is Phase.LOGOUT else (self.end_reason or
                                                                            "Connection closed")
            log.info(f"Disconnected: {reason} in={self.state.bytes_in} out={self.state.bytes_out}")
            return
        secs = int(time.monotonic() - self.started)
        flag = mailaccess.security_flag(self.state.tls, self.secured)
        tls = f", {flag}" if flag else ""
        if self.state.auth_attempts:
            log.info(f"Disconnected (auth failed, {self.state.auth_attempts} attempts in {secs} secs): "
                     f"user=<{self.login_user}>, method={self.state.method}, rip={self.rip}, "
                     f"lip={self.lip}{tls}")
        else:
            log.info(f"Disconnected (no auth attempts in {secs} secs): user=<>, rip={self.rip}, "
                     f"lip={self.lip}{tls}")

    async def _event(self, event: object) -> None:
        if isinstance(event, CommandError):
            self.write(event.response)
            if event.close:
                self.end_reason = "Literal size too large"
                raise SessionClosed(self.end_reason)
        elif isinstance(event, Continue):
            self.write(event.data)
        elif isinstance(event, CommandEvent):
            await self._command(event)
        elif isinstance(event, AppendStart):
            self.append = await self._guard(event.tag, "APPEND",
                                            lambda: handlers.append_start(self, event))
        elif isinstance(event, AppendData):
            if self.append is not None:
                await self.append.write(event.data)
        elif isinstance(event, AppendEnd):
            job, self.append = self.append, None
            if job is not None:
                await self._finish_command(job.tag, "APPEND", False,
                                           lambda: handlers.append_end(self, job, event))

    async def _guard(self, tag: bytes, name: str, call: Callable[[], object]) -> handlers.AppendJob | None:
        try:
            job = await call()  # type: ignore[misc]
        except MailstoreError as exc:
            self.codec.reject_append()
            self.write(store_error(tag, exc))
            return None
        assert job is None or isinstance(job, handlers.AppendJob)
        return job

    async def _command(self, event: CommandEvent) -> None:
        if not allowed(event.spec.states, self.state.phase):
            self.write(tagged(event.tag, "BAD", refusal(event.spec, self.state.phase)))
            return
        handler = handlers.HANDLERS[event.name]
        await self._finish_command(event.tag, event.name, event.uid,
                                   lambda: handler(self, event.tag, event.command, event.uid))

    async def _finish_command(self, tag: bytes, name: str, uid: bool,
                              call: Callable[[], object]) -> None:
        view_before = self.state.selected
        try:
            reply = await call()  # type: ignore[misc]
            assert isinstance(reply, bytes)
        except SessionClosed:
            raise
        except MailstoreError as exc:
            reply = store_error(tag, exc)
        except Exception:  # noqa: BLE001 - one command's failure must not end the session quietly
            log.error(f"{name} failed: {traceback.format_exc()}")
            reply = tagged(tag, "NO", "Internal error occurred. Refer to server log for more "
                           "information.", "SERVERBUG")
        view = self.state.selected
        if view is not None and view is view_before and self.state.phase is Phase.SELECTED:
            await self.send_updates(allow_expunge=uid or name not in _NO_EXPUNGE)
        self.write(reply)

    async def send_updates(self, allow_expunge: bool = True) -> None:
        """Rescan the selected mailbox when it may have changed and send the untagged updates."""
        view = self.state.selected
        if view is None or not view.looks_changed():
            return
        try:
            lines = await offload(view.refresh, allow_expunge)
        except MailstoreError as exc:
            if not view.store.path.exists():
                self.write(b"* BYE Mailbox was deleted.\r\n")
                self.end_reason = "Mailbox deleted"
                raise SessionClosed(self.end_reason) from exc
            raise
        view.wake.clear()
        for line in lines:
            self.write(line)


async def run_mail_process(config: Config, sock: socket.socket, state: dict[str, Any]) -> int:
    """The post-login session in a process running as the user (started by the spawner).

    The worker relays the client's plaintext on ``sock``; the first line
    written is ``+`` (serving) or ``-error`` (then the process ends).
    """
    shared = ImapService.build(config, str(state.get("service", "imap")))
    info = privsep.user_info(state.get("user"))
    conn = await accept_connection(sock, None, shared.settings.login_timeout)
    session = ImapSession(shared, conn, str(state.get("rip", "")), str(state.get("lip", "")),
                          tls=bool(state.get("tls")))
    log.set_program(f"imap({info.login})")
    try:
        await offload(_ensure_maildir, info)
    except OSError as exc:
        log.error(f"cannot create the Maildir {info.maildir}: {exc}")
        conn.write(b"-error\n")
        await conn.drain()
        conn.close()
        return 1
    conn.write(b"+\n")
    session.state.user = info
    session.state.phase = Phase.AUTHENTICATED
    session.state.method = str(state.get("method", ""))
    session.login_user = info.login
    await session.run(greeting=False)
    return 0


def _ensure_maildir(info: UserInfo) -> None:
    """Create the user's Maildir on first login, as Dovecot creates INBOX; owned by the user."""
    from pathlib import Path

    path = Path(info.maildir)
    if (path / "cur").is_dir():
        return
    make_maildir(path)
    if os.geteuid() == 0:
        for sub in ("", "cur", "new", "tmp"):
            os.chown(path / sub, info.uid, info.gid)
