"""pop3d: the POP3 service (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).

What it does
    ``serve(listener, config, runtime, service)`` runs one master.cf entry
    whose command is ``pop3d`` on a socket the master bound, with the same
    contract as :func:`mailhorn.smtpd.server.serve`: it accepts connections
    and runs a session for each until cancelled, then gives open sessions
    ``SHUTDOWN_GRACE`` seconds and cancels the rest (a cancelled session
    never reaches UPDATE, so nothing is deleted).  ``config`` carries the
    entry's ``-o`` overrides.  Typical master.cf lines::

        pop3      inet  n       -       n       -       -       pop3d
        pop3s     inet  n       -       n       -       -       pop3d
          -o pop3_tls_wrappermode=yes

    The protocol is :class:`mailhorn.pop3.session.Pop3Session`; logins go
    through :class:`mailhorn.auth.passdb.Authenticator` (``passdb_maps``)
    and the SASL mechanisms of :mod:`mailhorn.auth.sasl`; the maildrop is
    found with :class:`mailhorn.auth.userdb.UserDB` and opened, locked and
    updated by :mod:`mailhorn.pop3.maildrop`.  RETR and TOP stream the
    message from disk in bounded chunks (design.md §5 rule 7); file reads,
    table lookups and the mailbox work run in worker threads.

    TLS: STLS is offered when a certificate is configured and ``ssl`` is
    not ``no``; ``pop3_tls_wrappermode = yes`` starts TLS at connect
    (pop3s, port 995).  After ``STLS`` every byte the client sent in
    plaintext behind the command is discarded unread (RFC 2595 §4).
    Plaintext logins (USER/PASS, PLAIN, LOGIN) are refused before TLS
    unless the client is secured (on loopback, connecting to the address it
    came from) or ``disable_plaintext_auth = no``; ``ssl = required``
    refuses them before TLS from every client.  These rules are imapd's
    too (:mod:`mailhorn.mailaccess`).

    Logs are Dovecot 2.3's texts under Dovecot's program names,
    ``pop3-login`` before login and ``pop3(USER)`` after, as imapd's are
    ``imap-login`` and ``imap(USER)``, so tools that read Dovecot's log
    find what they know::

        pop3-login: Login: user=<u>, method=PLAIN, rip=1.2.3.4, lip=5.6.7.8, mpid=812, TLS, session=<…>
        pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u>, method=PLAIN, rip=…, lip=…, session=<…>
        pop3(u): Disconnected: Logged out top=0/0, retr=1/123, del=1/3, size=456

    Login and mail processes: a worker running as ``mail_owner`` under a
    root master cannot open a user's Maildir.  After a login of a user
    whose uid is not its own it asks the spawner for a mail process running
    as that user (:func:`mailhorn.privsep.start_mail_process`, Dovecot's
    login/mail split).  The mail process (:func:`run_mail_process`) opens
    and locks the maildrop, says ``+`` (or ``-inuse``/``-error`` and ends),
    and runs the TRANSACTION and UPDATE states with this same
    :class:`Pop3Connection` code; the worker answers ``+OK Logged in.``,
    logs ``Login:`` with the mail process's pid as ``mpid``, and relays
    plaintext between the client (TLS stays in the worker) and the mail
    process, whose log records it writes.  Where the worker can read the
    Maildir the session stays in-process.

Parameters read
    All declared in the parameter registry: ``login_greeting`` (Dovecot;
    default ``mailhorn ready.``), ``auth_mechanisms``,
    ``disable_plaintext_auth``, ``ssl``, ``ssl_cert``, ``ssl_key``,
    ``ssl_min_protocol`` (Dovecot's names, shared with imapd; see
    :mod:`mailhorn.mailaccess`), ``pop3_tls_wrappermode`` (mailhorn),
    ``pop3_lock_session`` (Dovecot; mailhorn defaults to ``yes``),
    ``pop3_uidl_format`` (Dovecot; ``%08Xu%08Xv``), ``pop3_logout_format``
    (Dovecot; ``top=%t/%p, retr=%r/%b, del=%d/%m, size=%s``),
    ``pop3_login_timeout`` (mailhorn; ``3m``, Dovecot's fixed login
    timeout), ``pop3_idle_timeout`` (mailhorn; ``10m``, the RFC 1939 §3
    autologout), ``myhostname``, and those of
    :class:`~mailhorn.auth.passdb.Authenticator` and
    :class:`~mailhorn.auth.userdb.UserDB`.

Errors
    :class:`~mailhorn.config.errors.ConfigError` for unusable parameters,
    before anything is accepted.  At run time every failure becomes a POP3
    answer and a log line; our own faults are logged as errors.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailhorn import log, mailaccess, privsep
from mailhorn.auth import popbeforesmtp, sasl
from mailhorn.auth.passdb import AuthStatus, Authenticator
from mailhorn.auth.userdb import UserDB, UserdbError, UserInfo
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.mastercf import Service
from mailhorn.iopool import offload
from mailhorn.mailaccess import TlsSettings
from mailhorn.mailstore.errors import LockTimeout, MailstoreError, NoSuchMessage
from mailhorn.mailstore.maildir import CHUNK
from mailhorn.netserve import accept_loop
from mailhorn.pop3.codec import TERMINATOR, Command, LineTooLong, MessageEncoder, Pop3Decoder, err
from mailhorn.pop3.maildrop import LOCK_REFRESH, OpenMaildrop, check_uidl_format, open_maildrop
from mailhorn.pop3.session import (
    AUTH_FAILED_TEXT, IN_USE_TEXT, INTERNAL_ERROR_TEXT, TEMPFAIL_TEXT, CheckLogin, Maildrop, Pop3Options,
    Pop3Session, Reply, Retrieve, StartTls, State, Update,
)
from mailhorn.runtime import Runtime
from mailhorn.smtpd.stream import Connection, accept_connection
from mailhorn.tables.base import TableRetry

__all__ = ["LOGIN_PROGRAM", "SHUTDOWN_GRACE", "Pop3Settings", "run_mail_process", "serve"]

#: Seconds open sessions get to finish after the service is told to stop.
SHUTDOWN_GRACE = 10.0
#: Dovecot waits this long for another session's POP3 lock before answering [IN-USE].
LOCK_WAIT = 10.0
#: The program name of log records before login (Dovecot's login process).
LOGIN_PROGRAM = "pop3-login"

_LOGOUT_VAR = re.compile(r"%([tprbdms%])")


def session_program(user: str) -> str:
    """The program name of a logged-in session's log records (Dovecot's ``pop3(user)``)."""
    return f"pop3({user})"


@dataclass(frozen=True)
class Pop3Settings:
    """One pop3d service's configuration, read once when it starts."""

    greeting: str
    mechanisms: tuple[str, ...]
    tls: TlsSettings
    lock_session: bool
    uidl_format: str
    logout_format: str
    login_timeout: float
    idle_timeout: float
    disable_plaintext_auth: bool
    hostname: str

    @classmethod
    def from_config(cls, config: Config) -> Pop3Settings:
        uidl_format = config.get("pop3_uidl_format")
        try:
            check_uidl_format(uidl_format)
        except ValueError as exc:
            file, line = config.where("pop3_uidl_format")
            raise ConfigError(str(exc), file=file, line=line, param="pop3_uidl_format") from None
        return cls(
            greeting=config.get("login_greeting"),
            mechanisms=tuple(sasl.mechanisms_from_config(config)),
            tls=mailaccess.tls_settings(config, "pop3_tls_wrappermode"),
            lock_session=config.bool("pop3_lock_session"),
            uidl_format=uidl_format,
            logout_format=config.get("pop3_logout_format"),
            login_timeout=float(config.time("pop3_login_timeout")),
            idle_timeout=float(config.time("pop3_idle_timeout")),
            disable_plaintext_auth=config.bool("disable_plaintext_auth"),
            hostname=config.get("myhostname") or socket.gethostname(),
        )


@dataclass
class ServiceContext:
    """What every connection of one service shares."""

    settings: Pop3Settings
    authenticator: Authenticator
    userdb: UserDB
    runtime: Runtime | None
    service: str
    lock_wait: float


def logout_text(fmt: str, variables: Mapping[str, str]) -> str:
    """Expand ``pop3_logout_format``."""
    return _LOGOUT_VAR.sub(lambda m: "%" if m.group(1) == "%" else variables[m.group(1)], fmt)


async def serve(listener: socket.socket, config: Config, runtime: Runtime, service: Service, *,
                lock_wait: float = LOCK_WAIT) -> None:
    """Accept POP3 clients on ``listener`` until cancelled."""
    settings = Pop3Settings.from_config(config)
    ctx = ServiceContext(settings, Authenticator(config), UserDB(config), runtime, service.name, lock_wait)
    await accept_loop(listener, lambda sock, peer: Pop3Connection(ctx, sock, peer).run(), SHUTDOWN_GRACE)


class _Close(Exception):
    """End the session; ``reason`` goes into the logout line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Pop3Connection:
    """One client: bytes between the socket and the session."""

    def __init__(self, ctx: ServiceContext, sock: socket.socket, peer: object) -> None:
        self.ctx = ctx
        self.sock = sock
        self.rip = mailaccess.peer_address(peer)
        try:
            self.lip = mailaccess.peer_address(sock.getsockname())
        except OSError:
            self.lip = ""
        self.id = base64.b64encode(os.urandom(12)).decode("ascii")
        self.started = time.monotonic()
        self.conn: Connection | None = None
        self.decoder = Pop3Decoder()
        self.tls = False
        self.drop: OpenMaildrop | None = None
        #: After a login handed to a mail process: the process the session is relayed to.
        self.mail_process: privsep.MailProcess | None = None

    # -- options --------------------------------------------------------------------
    def _options(self) -> Pop3Options:
        s = self.ctx.settings
        plaintext = mailaccess.plaintext_allowed(s.tls, tls_active=self.tls, secured=self._secured(),
                                                 disable_plaintext_auth=s.disable_plaintext_auth)
        return Pop3Options(greeting=s.greeting, mechanisms=s.mechanisms, plaintext_allowed=plaintext,
                           tls_available=s.tls.starttls_offered(self.tls), tls_active=self.tls,
                           hostname=s.hostname)

    def _secured(self) -> bool:
        return self.tls or mailaccess.secured_peer(self.rip, self.lip)

    def _flags(self) -> str:
        return mailaccess.security_flag(self.tls, self._secured())

    # -- I/O --------------------------------------------------------------------------
    async def _send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.write(data)
        try:
            await asyncio.wait_for(self.conn.drain(), self.ctx.settings.idle_timeout)
        except TimeoutError:
            raise _Close("Disconnected for inactivity") from None
        except ConnectionError:
            raise _Close("Connection closed") from None

    async def _next(self, session: Pop3Session) -> Command:
        assert self.conn is not None
        timeout = self.ctx.settings.idle_timeout if session.state is State.TRANSACTION \
            else self.ctx.settings.login_timeout
        while True:
            event = self.decoder.next_event()
            if isinstance(event, LineTooLong):
                await self._send(err("Input line too long."))
                raise _Close("Input buffer full")
            if event is not None:
                return event
            try:
                data = await asyncio.wait_for(self.conn.read(), timeout)
            except TimeoutError:
                if session.state is State.TRANSACTION:
                    await self._send(err("Disconnected for inactivity."))
                raise _Close("Disconnected for inactivity") from None
            if not data:
                raise _Close("Connection closed")
            self.decoder.receive_data(data)

    # -- the session ----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            s = self.ctx.settings
            self.sock.setblocking(False)
            context = s.tls.context if s.tls.wrappermode else None
            if s.tls.wrappermode and context is None:
                log.info(f"Disconnected: Connection closed: no usable server certificate "
                         f"(no auth attempts in 0 secs): user=<>, rip={self.rip}, lip={self.lip}, "
                         f"session=<{self.id}>", program=LOGIN_PROGRAM)
                self.sock.close()
                return
            try:
                self.conn = await accept_connection(self.sock, context, s.login_timeout)
            except (OSError, TimeoutError, ConnectionError) as exc:
                log.info(f"Disconnected: Connection closed: SSL_accept() failed: {exc} "
                         f"(no auth attempts in 0 secs): user=<>, rip={self.rip}, lip={self.lip}, "
                         f"session=<{self.id}>", program=LOGIN_PROGRAM)
                self.sock.close()
                return
        except BaseException:
            self.sock.close()
            raise
        self.tls = context is not None
        await self.serve(Pop3Session(self._options()), greeting=True)

    async def serve(self, session: Pop3Session, greeting: bool = False) -> None:
        """The command loop, in the worker from the greeting on, or in a mail process from the login on."""
        reason = "Connection closed"
        refresher: asyncio.Task[None] | None = None
        if session.state is State.TRANSACTION and self.drop is not None:
            refresher = asyncio.create_task(self._refresh(self.drop))
        try:
            if greeting:
                await self._send(session.greeting())
            while True:
                command = await self._next(session)
                action = session.handle(command)
                if isinstance(action, Reply):
                    await self._send(action.data)
                    if action.close:
                        reason = "Logged out" if command.name == "QUIT" else "Too many bad commands"
                        break
                elif isinstance(action, StartTls):
                    await self._start_tls(session, action)
                elif isinstance(action, CheckLogin):
                    await self._send(await self._login(session, action))
                    if self.mail_process is not None:
                        assert self.conn is not None
                        unread = self.decoder.take_unread()  # what followed the login command
                        await privsep.relay(self.conn, self.mail_process, unread)
                        break
                    if session.state is State.TRANSACTION and self.drop is not None:
                        refresher = asyncio.create_task(self._refresh(self.drop))
                elif isinstance(action, Retrieve):
                    await self._retrieve(session, action)
                elif isinstance(action, Update):
                    await self._update(session, action)
                    reason = "Logged out"
                    break
        except _Close as close:
            reason = close.reason
        except asyncio.CancelledError:
            reason = "Server shutting down."
            raise
        finally:
            if refresher is not None:
                refresher.cancel()
            if self.drop is not None:
                await offload(self.drop.release)
            if self.mail_process is None:  # else the mail process logs the end of the session
                self._log_end(session, reason)
            if self.conn is not None:
                self.conn.close()

    async def _start_tls(self, session: Pop3Session, action: StartTls) -> None:
        context = self.ctx.settings.tls.context
        assert self.conn is not None and context is not None
        # Stop reading before the +OK goes out: what is buffered now was sent
        # before the client saw it and is thrown away (RFC 2595 §4), while the
        # ClientHello that follows the +OK stays in the socket for the handshake.
        if self.conn.transport is not None:
            self.conn.transport.pause_reading()
        self.decoder.start_tls()
        await self._send(action.data)
        try:
            await self.conn.start_tls(context, self.ctx.settings.login_timeout)
        except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
            raise _Close(f"TLS handshaking: {exc}") from None
        self.tls = True
        session.tls_started(self._options())

    async def _refresh(self, drop: OpenMaildrop) -> None:
        while True:
            await asyncio.sleep(LOCK_REFRESH)
            await offload(drop.refresh)

    async def _login(self, session: Pop3Session, action: CheckLogin) -> bytes:
        ctx = self.ctx
        result = await sasl.check(ctx.authenticator, action.credentials, self.rip, "pop3")
        if result.status is AuthStatus.TEMPFAIL:
            return session.login_failed(TEMPFAIL_TEXT)
        if not result.ok or result.user is None:
            return session.login_failed(AUTH_FAILED_TEXT)
        user = result.user
        try:
            info = await ctx.userdb.lookup_async(user)
        except TableRetry as exc:
            log.warning(f"user {user}: userdb lookup failed: {exc}", program=LOGIN_PROGRAM)
            return session.login_failed(TEMPFAIL_TEXT)
        except UserdbError as exc:
            log.error(f"user {user}: {exc}", program=LOGIN_PROGRAM)
            return session.login_failed(INTERNAL_ERROR_TEXT)
        if info is None:
            log.error(f"user {user}: user is in passdb_maps but has no mailbox (userdb)", program=LOGIN_PROGRAM)
            return session.login_failed(AUTH_FAILED_TEXT)
        if privsep.needed(info.uid):
            return await self._hand_off(session, action, user, info)
        try:
            drop = await offload(open_maildrop, info.maildir, lock_session=ctx.settings.lock_session,
                                           lock_wait=ctx.lock_wait, uidl_format=ctx.settings.uidl_format)
        except LockTimeout:
            log.info(f"Disconnected: Couldn't lock POP3 session "
                     f"{logout_text(ctx.settings.logout_format, session.logout_variables())}",
                     program=session_program(user))
            return session.login_failed(IN_USE_TEXT)
        except (MailstoreError, OSError) as exc:
            log.error(f"cannot open the maildrop {info.maildir}: {exc}", program=session_program(user))
            return session.login_failed(INTERNAL_ERROR_TEXT)
        self.drop = drop
        flags = self._flags()
        log.info(f"Login: user=<{user}>, method={action.method}, rip={self.rip}, lip={self.lip}, "
                 f"mpid={os.getpid()}{', ' + flags if flags else ''}, session=<{self.id}>", program=LOGIN_PROGRAM)
        await popbeforesmtp.record_login(ctx.userdb.config, self.rip)
        return session.login_succeeded(user, drop.maildrop)

    async def _hand_off(self, session: Pop3Session, action: CheckLogin, user: str, info: UserInfo) -> bytes:
        """Start the user's mail process; the answer to the login."""
        state: dict[str, Any] = {"service": self.ctx.service, "user": privsep.user_state(info),
                                 "maildir": info.maildir, "rip": self.rip, "lip": self.lip, "tls": self.tls}
        try:
            proc = await privsep.start_mail_process("pop3", privsep.mail_target(info),
                                                    dict(self.ctx.userdb.config.overrides), state)
        except (privsep.SpawnError, OSError) as exc:
            log.error(f"user {user}: cannot start the mail process: {exc}", program=LOGIN_PROGRAM)
            return session.login_failed(INTERNAL_ERROR_TEXT)
        failure = await proc.ready()
        if failure is not None:
            proc.close()
            return session.login_failed(IN_USE_TEXT if failure == "inuse" else INTERNAL_ERROR_TEXT)
        self.mail_process = proc
        flags = self._flags()
        log.info(f"Login: user=<{user}>, method={action.method}, rip={self.rip}, lip={self.lip}, "
                 f"mpid={proc.pid}{', ' + flags if flags else ''}, session=<{self.id}>", program=LOGIN_PROGRAM)
        await popbeforesmtp.record_login(self.ctx.userdb.config, self.rip)
        return session.login_succeeded(user, Maildrop([]))

    async def _retrieve(self, session: Pop3Session, action: Retrieve) -> None:
        assert self.drop is not None
        mailbox = self.drop.mailbox
        try:
            fh = await offload(mailbox.open, action.entry.message)
        except (NoSuchMessage, OSError) as exc:
            log.warning(f"message {action.entry.number}: {exc}", program=session_program(session.login or ""))
            await self._send(err("[SYS/TEMP] Message was expunged."))
            return
        try:
            await self._send(action.first)
            octets = len(action.first)
            encoder = MessageEncoder(action.body_lines)
            while not encoder.done:
                chunk = await offload(fh.read, CHUNK)
                if not chunk:
                    break
                out = encoder.feed(chunk)
                if out:
                    octets += len(out)
                    await self._send(out)
            tail = encoder.finish()
            octets += len(tail)
            await self._send(tail + TERMINATOR)
            session.sent(action.kind, octets)
        finally:
            await offload(fh.close)

    async def _update(self, session: Pop3Session, action: Update) -> None:
        assert self.drop is not None
        drop = self.drop
        try:
            await offload(drop.update)
        except (MailstoreError, OSError) as exc:
            log.error(f"UPDATE failed: {exc}", program=session_program(session.login or ""))
            await self._send(err("[SYS/TEMP] Couldn't delete all messages."))
            return
        finally:
            # The maildrop is free again before the client hears that the session ended.
            await offload(drop.release)
        await self._send(action.data)

    def _log_end(self, session: Pop3Session, reason: str) -> None:
        if session.login is not None:
            stats = logout_text(self.ctx.settings.logout_format, session.logout_variables())
            log.info(f"Disconnected: {reason} {stats}", program=session_program(session.login))
            return
        secs = int(time.monotonic() - self.started)
        flags = self._flags()
        tail = f"rip={self.rip}, lip={self.lip}{', ' + flags if flags else ''}, session=<{self.id}>"
        head = "Disconnected" if reason in ("Connection closed", "Logged out") else f"Disconnected: {reason}"
        if session.auth_attempts:
            log.info(f"{head} (auth failed, {session.auth_attempts} attempts in {secs} secs): "
                     f"user=<{session.last_login}>, method={session.last_method}, {tail}", program=LOGIN_PROGRAM)
        else:
            log.info(f"{head} (no auth attempts in {secs} secs): user=<>, {tail}", program=LOGIN_PROGRAM)


async def run_mail_process(config: Config, sock: socket.socket, state: dict[str, Any]) -> int:
    """TRANSACTION and UPDATE in a process running as the user (started by the spawner).

    The worker relays the client's plaintext on ``sock``; the first line
    written is ``+`` (serving), ``-inuse`` (another session holds the
    maildrop) or ``-error``.
    """
    settings = Pop3Settings.from_config(config)
    ctx = ServiceContext(settings, Authenticator(config), UserDB(config), None,
                         str(state.get("service", "pop3")), LOCK_WAIT)
    info = privsep.user_info(state.get("user"))
    connection = Pop3Connection(ctx, sock, (str(state.get("rip", "")), 0))
    connection.lip = str(state.get("lip", ""))
    connection.tls = bool(state.get("tls"))
    conn = connection.conn = await accept_connection(sock, None, settings.login_timeout)
    session = Pop3Session(connection._options())
    log.set_program(session_program(info.login))
    try:
        drop = await offload(open_maildrop, info.maildir, lock_session=settings.lock_session,
                                       lock_wait=ctx.lock_wait, uidl_format=settings.uidl_format)
    except LockTimeout:
        log.info(f"Disconnected: Couldn't lock POP3 session "
                 f"{logout_text(settings.logout_format, session.logout_variables())}")
        failure = b"-inuse\n"
    except (MailstoreError, OSError) as exc:
        log.error(f"cannot open the maildrop {info.maildir}: {exc}")
        failure = b"-error\n"
    else:
        connection.drop = drop
        session.login_succeeded(info.login, drop.maildrop)
        conn.write(b"+\n")
        await connection.serve(session)
        return 0
    conn.write(failure)
    try:
        await conn.drain()
    except ConnectionError:
        pass
    conn.close()
    return 1
