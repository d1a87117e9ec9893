"""One SMTP session: moves bytes between the socket and the SMTP engine.

The session greets, then loops: take the next event from the sans-I/O
:class:`~mailhorn.smtp.codec.ServerEngine`, answer it (commands through
:mod:`mailhorn.smtpd.handlers`, content into the cleanup session), and when
the engine needs input, flush the replies gathered so far and read.  Replies
therefore go out when the client's input is drained, which is what
PIPELINING (RFC 2920 §3.2) asks and what Postfix does.

Limits and their replies (postconf(5)):

- ``smtpd_timeout``: a deadline per record, i.e. per command line and per
  content line (Postfix's ``smtpd_per_record_deadline`` behaviour, always
  on, so a client trickling one byte a second is cut off too):
  ``421 4.4.2 HOST Error: timeout exceeded``, logged ``timeout after CMD
  from CLIENT``;
- ``smtpd_error_sleep_time`` once ``smtpd_soft_error_limit`` errors were made
  (every reply is delayed), ``smtpd_hard_error_limit``: ``421 4.7.0 HOST
  Error: too many errors``; ``smtpd_junk_command_limit``: NOOP, VRFY, ETRN
  and RSET beyond it count as errors; both counts restart after a message
  is queued;
- connection count and rate (``smtpd_client_connection_count_limit``,
  ``smtpd_client_connection_rate_limit``) through ``runtime.anvil``, except
  for ``smtpd_client_event_limit_exceptions``: ``421 4.7.0 HOST Error: too
  many connections from ADDR`` instead of the greeting;
- ``smtpd_forbid_unauth_pipelining``: a command sent ahead of time where
  RFC 2920 forbids it (after HELO, or behind EHLO, DATA, VRFY, NOOP) gets
  ``554 5.5.0 Error: SMTP protocol synchronization`` and the session ends;
  either way it is logged ``improper command pipelining after CMD from
  CLIENT: TEXT``;
- ``smtpd_tls_security_level = encrypt``: ``530 5.7.0 Must issue a STARTTLS
  command first`` for any command but HELO, EHLO, STARTTLS, NOOP and QUIT.

AUTH exchanges (:mod:`mailhorn.smtpd.auth`): the client lines after a
``334`` come as ``AuthResponse`` events; the exchange in progress is kept in
``sasl_exchange``.  STARTTLS: reading stops before the ``220`` goes out, so
the ClientHello stays in the socket while earlier plaintext is dropped.

A client refused at CONNECT (``smtpd_delay_reject = no``) gets the refusal
instead of the greeting and ``503 5.7.0 Error: access denied for CLIENT``
for everything but QUIT (RFC 5321 §3.1).

Logs: ``connect from``, ``lost connection after``, ``timeout after``,
``too many errors after``, ``disconnect from ... commands=``, the reject
lines of :mod:`mailhorn.smtpd.smtpd_log`.

Errors: none escape :meth:`Session.run`; a local failure is logged with its
traceback and the client is disconnected.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Final

from mailhorn import log
from mailhorn.cleanup.request import ClientInfo
from mailhorn.smtp import reply as R
from mailhorn.smtp.codec import AuthResponse, BodyChunk, BodyEnd, CommandEvent, Event, Rejected, ServerEngine
from mailhorn.smtp.reply import Reply, printable
from mailhorn.smtpd.context import ServiceContext
from mailhorn.smtpd import auth
from mailhorn.smtpd.handlers import handle_auth_response, handle_body_end, handle_command
from mailhorn.smtpd.peer import PeerName, lookup_peer
from mailhorn.smtpd.smtpd_log import CommandCounters, namaddr, reply_text, whatsup
from mailhorn.smtpd.state import Action, CheckResult, SmtpdState, Stage
from mailhorn.smtpd.stream import Connection
from mailhorn.smtpd.tls import TlsInfo, tls_info, tls_summary
from mailhorn.smtpd.transaction import Transaction
from mailhorn.smtpd.xforward import Forwarded
from mailhorn.config.maincf import split_list
from mailhorn.tables.base import TableConfigError, TableRetry, lookup_async
from mailhorn.tables.registry import open_table

__all__ = ["Session"]

SYNC_ERROR: Final = Reply.of(554, "5.5.0", "Error: SMTP protocol synchronization")
MUST_STARTTLS: Final = Reply.of(530, "5.7.0", "Must issue a STARTTLS command first")


def protocol_name(extended: bool, tls: bool, auth: bool, utf8: bool) -> str:
    """The RFC 3848 / RFC 6531 protocol name Postfix logs and writes in Received:."""
    if not extended:
        return "SMTP"
    name = "UTF8SMTP" if utf8 else "ESMTP"
    return name + ("S" if tls else "") + ("A" if auth else "")


class Session:
    """The dialogue with one client."""

    def __init__(self, ctx: ServiceContext, conn: Connection, client_addr: str, client_port: str,
                 server_addr: str, server_port: str) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.settings = s
        self.conn = conn
        self.engine = ServerEngine(
            line_length_limit=s.line_length_limit,
            message_size_limit=s.message_size_limit,
            recipient_limit=s.recipient_limit,
            helo_required=s.helo_required,
            bare_newline=s.bare_newline,
            hostname=s.myhostname,
        )
        self.state = SmtpdState(service=s.service, client_addr=client_addr, client_port=client_port,
                                server_addr=server_addr, server_port=server_port)
        self.counters = CommandCounters()
        self.error_count = 0
        self.junk_count = 0
        self.out = bytearray()
        self.where = "CONNECT"
        self.tls: TlsInfo | None = None
        self.access_denied: Reply | None = None
        self.forwarded = Forwarded({})
        self.session_actions: list[Action] = []
        self.txn: Transaction | None = None
        self.extended = False
        self.authenticated = False
        self.sasl_exchange: auth.Exchange | None = None
        self._loop = asyncio.get_running_loop()
        self.ill_pipelining = False
        self.anvil_counted = False
        self.message_count = 0
        self.instance_count = 0
        self._deadline = 0.0
        self._last_feed = b""
        self.discard_ehlo = s.discard_ehlo
        """EHLO keywords hidden from this client (smtpd_discard_ehlo_keyword_address_maps)."""

    # -- naming ----------------------------------------------------------
    @property
    def client(self) -> str:
        """``name[addr]`` of the connected client, for logs."""
        st = self.state
        return namaddr(st.client_name, st.client_addr, st.client_port,
                       with_port=self.settings.client_port_logging)

    @property
    def pipelining_offered(self) -> bool:
        return self.extended and "pipelining" not in self.discard_ehlo

    def update_protocol(self) -> None:
        utf8 = self.txn is not None and self.txn.smtputf8
        self.state.protocol = protocol_name(self.extended, self.tls is not None, self.authenticated, utf8)

    def client_info(self) -> ClientInfo:
        """What cleanup writes into Received: and the queue file (XFORWARD values win)."""
        st, fw = self.state, self.forwarded
        name = fw.get("NAME") or st.client_name
        addr = fw.get("ADDR") or st.client_addr
        return ClientInfo(
            name=name if fw.get("NAME") != "[TEMPUNAVAIL]" else "unknown",
            addr=addr,
            port=fw.get("PORT") or st.client_port,
            helo=fw.get("HELO") or st.helo_name or "",
            protocol=fw.get("PROTO") or st.protocol,
            reverse_name=st.reverse_client_name,
            sasl_method=st.sasl_method,
            sasl_username=st.sasl_username,
            sasl_sender=st.sasl_sender,
            tls=f"using {tls_summary(self.tls)}" if self.tls is not None else "",
            sasl_authenticated_header=self.settings.sasl_authenticated_header,
            tls_received_header=self.settings.tls_received_header,
        )

    # -- checks ------------------------------------------------------------
    async def check(self, stage: Stage, verb: str | None = None) -> Reply | None:
        """Run the restrictions of ``stage``; log and return a refusal.

        ``verb`` names the command in the log when it is not the stage's own
        (``BDAT`` runs the DATA restrictions; Postfix logs ``reject: BDAT``).
        """
        self.state.stage = stage
        try:
            result = await self.ctx.checks.check(stage, self.state)
        except TableRetry as exc:
            log.warning(f"{stage.value} restriction lookup failed: {exc}")
            result = CheckResult(Reply.of(451, "4.3.0", "Server configuration error"))
        for action in result.actions:
            self.log_event(action.kind.lower(), stage, action.text, verb)
            if stage in (Stage.CONNECT, Stage.EHLO, Stage.HELO):
                self.session_actions.append(action)
            elif self.txn is not None:
                self.txn.actions.append(action)
        if result.reply is not None:
            self.log_event("reject", stage, reply_text(result.reply), verb)
        return result.reply

    def log_event(self, action: str, stage: Stage, text: str, verb: str | None = None) -> None:
        """Postfix's log_whatsup line; at DATA and END-OF-MESSAGE ``to=<>`` only
        names the recipient of a single-recipient message, as Postfix's."""
        st = self.state
        txn = self.txn
        if stage in (Stage.RCPT, Stage.VRFY):
            recipient = st.recipient
        elif stage in (Stage.DATA, Stage.END_OF_MESSAGE) and txn is not None and len(txn.recipients) == 1:
            recipient = txn.recipients[0].address
        else:
            recipient = None
        whatsup(txn.queue_id if txn is not None else "", action, verb or stage.value, self.client, text,
                sender=st.sender, recipient=recipient, protocol=st.protocol, helo=st.helo_name)

    # -- output ------------------------------------------------------------
    async def answer(self, reply: Reply) -> None:
        """Queue the reply to the pending event, slowed down after many errors."""
        s = self.settings
        if self.error_count >= s.soft_error_limit and s.error_sleep_time > 0:
            await self.flush()
            await asyncio.sleep(s.error_sleep_time)
        self.out += self.engine.reply(reply)

    def send(self, reply: Reply) -> None:
        """A reply that answers no command (greeting, 421)."""
        self.out += self.engine.send(reply)

    async def flush(self) -> None:
        if not self.out:
            return
        data = bytes(self.out)
        self.out.clear()
        self.conn.write(data)
        if self.conn.write_blocked:
            async with asyncio.timeout(self.settings.timeout):
                await self.conn.drain()
        elif self.conn.lost:
            raise ConnectionResetError("connection lost")

    # -- the session -------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except (ConnectionError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                log.info(f"timeout after {self._where_text()} from {self.client}")
            else:
                log.info(f"lost connection after {self._where_text()} from {self.client}")
        except Exception:
            log.error(f"smtpd session with {self.client} failed: "
                      + traceback.format_exc().strip().replace("\n", " | "))
        finally:
            await self._end()

    async def _run(self) -> None:
        st = self.state
        peer = PeerName()
        if self.settings.peername_lookup:
            peer = await lookup_peer(self.ctx.resolver, st.client_addr)
        st.client_name, st.client_name_status = peer.name, peer.status
        st.reverse_client_name, st.reverse_client_name_status = peer.reverse_name, peer.reverse_status
        if st.client_addr and self._bare_newline_excluded():
            self.engine.bare_newline = "normalize" if self.settings.bare_newline == "reject" else self.engine.bare_newline
        log.info(f"connect from {self.client}")
        if self.settings.discard_ehlo_maps:
            self.discard_ehlo = await self._client_ehlo_discards()
        ssl_object = self.conn.ssl_object()
        if ssl_object is not None:
            self.tls_established(tls_info(ssl_object))
        if not self._anvil_connect():
            await self.flush()
            return
        refusal = await self.check(Stage.CONNECT)
        if refusal is not None:
            self.access_denied = refusal
            self.send(refusal)
        else:
            self.send(R.greeting(self.settings.banner))
        self._reset_deadline()
        while True:
            if self.error_count >= self.settings.hard_error_limit:
                log.info(f"too many errors after {self._where_text()} from {self.client}")
                self.send(Reply.of(421, "4.7.0", f"{self.settings.myhostname} Error: too many errors"))
                await self.flush()
                return
            event = self.engine.next_event()
            if event is None:
                if self.engine.tls_pending:
                    # Stop reading before the 220 goes out: what was received
                    # until now came before the client saw it and is dropped
                    # (CVE-2011-0411), while the ClientHello the client sends
                    # after the 220 stays in the socket for the handshake.
                    if self.conn.transport is not None:
                        self.conn.transport.pause_reading()
                    await self.flush()
                    if not await self._start_tls():
                        return
                    continue
                await self.flush()
                if self.engine.closed:
                    return
                if not await self._read():
                    return
                continue
            if isinstance(event, BodyChunk):
                if b"\n" in event.data or len(event.data) >= self.settings.line_length_limit:
                    self._reset_deadline()
                if self.txn is not None:
                    await self.txn.write(event.data)
                continue
            self._reset_deadline()
            await self._dispatch(event)

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, BodyEnd):
            await handle_body_end(self, event)
        elif isinstance(event, Rejected):
            verb = event.verb.lower() or "unknown"
            self.where = event.verb.upper() or "UNKNOWN"
            self.counters.count(verb, False)
            await self.answer(event.reply)
            self.error_count += 1
        elif isinstance(event, CommandEvent):
            await handle_command(self, event)
        elif isinstance(event, AuthResponse):
            await handle_auth_response(self, event)

    async def _read(self) -> bool:
        try:
            data = await self.conn.read(self._deadline)
        except TimeoutError:
            log.info(f"timeout after {self._where_text()} from {self.client}")
            self.send(R.timeout_exceeded(self.settings.myhostname))
            try:
                await self.flush()
            except (ConnectionError, TimeoutError):
                pass
            return False
        if not data:
            log.info(f"lost connection after {self._where_text()} from {self.client}")
            return False
        self._last_feed = data
        self.engine.feed(data)
        return True

    def pending_input(self) -> str:
        """The start of the unread input, for the improper-pipelining log line."""
        n = self.engine.buffered
        tail = self._last_feed[-n:] if 0 < n <= len(self._last_feed) else b""
        return printable(tail[:100].decode("utf-8", "replace").split("\n")[0].rstrip("\r"))

    def _reset_deadline(self) -> None:
        self._deadline = self._loop.time() + self.settings.timeout

    def _where_text(self) -> str:
        txn = self.txn
        if txn is not None and txn.receiving and self.where in ("DATA", "BDAT"):
            return f"{self.where} ({txn.octets} bytes)"
        return self.where

    def _bare_newline_excluded(self) -> bool:
        try:
            return self.settings.bare_newline_exclusions.match(self.state.client_name, self.state.client_addr)
        except TableRetry:
            return False

    async def _client_ehlo_discards(self) -> frozenset[str]:
        """smtpd_discard_ehlo_keyword_address_maps (postconf(5)): the first table that
        knows the client address gives the keywords, replacing smtpd_discard_ehlo_keywords;
        the tables are not searched by hostname. A failed lookup keeps the main list."""
        addr = self.state.client_addr
        try:
            for spec in split_list(self.settings.discard_ehlo_maps):
                value = await lookup_async(open_table(spec, self.ctx.config), addr)
                if value is not None:
                    return frozenset(k.lower() for k in split_list(value))
        except (TableRetry, TableConfigError) as exc:
            log.warning(f"smtpd_discard_ehlo_keyword_address_maps lookup error for {addr}: {exc}")
        return self.settings.discard_ehlo

    # -- anvil ---------------------------------------------------------------
    def limits_apply(self) -> bool:
        """Whether this client is subject to the anvil limits."""
        try:
            return not self.settings.event_limit_exceptions.match(self.state.client_name, self.state.client_addr)
        except TableRetry:
            return True

    def _anvil_connect(self) -> bool:
        s = self.settings
        if not self.limits_apply():
            return True
        count, rate = self.ctx.runtime.anvil.connect(s.service, self.state.client_addr)
        self.anvil_counted = True
        refusal = Reply.of(421, "4.7.0", f"{s.myhostname} Error: too many connections from {self.state.client_addr}")
        if s.connection_count_limit > 0 and count > s.connection_count_limit:
            log.warning(f"Connection concurrency limit exceeded: {count} from {self.client} for service {s.service}")
            self.send(refusal)
            return False
        if s.connection_rate_limit > 0 and rate > s.connection_rate_limit:
            log.warning(f"Connection rate limit exceeded: {rate} from {self.client} for service {s.service}")
            self.send(refusal)
            return False
        return True

    # -- TLS -------------------------------------------------------------------
    def tls_established(self, info: TlsInfo) -> None:
        self.tls = info
        st = self.state
        st.tls_protocol, st.tls_cipher, st.tls_cipher_bits = info.protocol, info.cipher, info.bits
        st.encryption_keysize = info.bits
        self.update_protocol()
        if self.ctx.tls.loglevel >= 1:
            log.info(f"Anonymous TLS connection established from {self.client}: {tls_summary(info)}")

    async def _start_tls(self) -> bool:
        """The handshake after ``220 2.0.0 Ready to start TLS``; input sent
        after STARTTLS in plaintext is dropped by the engine and the stream.
        A login made before STARTTLS is forgotten (RFC 3207 §4.2)."""
        context = self.ctx.tls.context
        assert context is not None
        self.engine.start_tls()
        try:
            await self.conn.start_tls(context, self.settings.starttls_timeout)
        except (OSError, ConnectionError, TimeoutError, Exception) as exc:
            log.info(f"SSL_accept error from {self.client}: {exc or type(exc).__name__}")
            log.info(f"lost connection after STARTTLS from {self.client}")
            return False
        ssl_object = self.conn.ssl_object()
        if ssl_object is not None:
            self.tls_established(tls_info(ssl_object))
        self.extended = False
        self.state.helo_name = None
        auth.forget(self)
        self.forwarded.attrs.clear()
        self.update_protocol()
        self._reset_deadline()
        return True

    # -- the end ---------------------------------------------------------------
    async def end_transaction(self) -> None:
        """Forget the envelope (RSET, HELO/EHLO, end of message)."""
        txn, self.txn = self.txn, None
        if txn is not None:
            await txn.abort()
        st = self.state
        st.sender = None
        st.recipient = None
        st.recipient_count = 0
        st.size = 0
        st.queue_id = ""
        st.dsn_envid = st.dsn_ret = st.dsn_notify = st.dsn_orcpt = ""
        st.sasl_sender = ""
        self.forwarded.attrs.clear()
        st.xforward = {}
        self.update_protocol()

    async def _end(self) -> None:
        try:
            await self.end_transaction()
        finally:
            if self.anvil_counted:
                self.ctx.runtime.anvil.disconnect(self.settings.service, self.state.client_addr)
            log.info(f"disconnect from {self.client} {self.counters.summary()}")
            self.conn.close()
