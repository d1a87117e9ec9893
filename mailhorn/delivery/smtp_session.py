"""The SMTP/LMTP client dialogue with one server (smtp(8), lmtp(8)).

:func:`open_session` connects to a :class:`~mailhorn.delivery.mx.Server`,
reads the greeting, says EHLO (LHLO for LMTP, RFC 2033 §4.1; HELO when
EHLO is refused or ``smtp_never_send_ehlo``), starts TLS as the policy
says (:mod:`mailhorn.delivery.smtp_tls`) and authenticates
(:mod:`mailhorn.delivery.smtp_sasl`).  :meth:`Session.transaction` sends one
message to some recipients: MAIL FROM, RCPT TO (pipelined when the server
offers PIPELINING, RFC 2920), then DATA or BDAT (CHUNKING, RFC 3030), and
gives one :class:`Outcome` per recipient: the server's 2xx, 4xx or 5xx
reply in Postfix's words, or a session failure applied to all.

Failures that end the session raise :class:`SessionFailure`: connection
refused (``4.4.1``), lost connection or timeout (``4.4.2``), a greeting or
HELO refusal, TLS required but not offered (``4.7.4``), a failed handshake
or certificate check (``4.7.5``), SASL failures (``4.7.x``; 5xx answers are
softened as ``smtp_sasl_auth_soft_bounce`` asks).  A session is reusable
(connection cache) after a completed transaction or a successful RSET.

A connection lost, or timed out, after the end of the message and before
the server's answer is deferred with "message may be sent more than once":
delivery is at least once (design.md §5 rule 6), and the caller logs a
warning naming the queue ID.

Parameters: see :class:`ClientSettings`.  Errors: :class:`SessionFailure`,
:class:`PlaintextRetry` (TLS at level ``may`` failed: reconnect without it).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.delivery import smtp_proto as proto
from mailhorn.delivery.mx import Nexthop, Server
from mailhorn.delivery.request import Action, DeliveryRecipient, DeliveryRequest
from mailhorn.delivery.smtp_8bit import NotConvertible, check_convertible, downgrade
from mailhorn.delivery.smtp_conn import Connection, ConnectionLost, ConnectionTimeout, connect
from mailhorn.delivery.smtp_sasl import Credentials, SaslError, SaslExchange, choose_mechanism
from mailhorn.delivery.smtp_tls import Level, TlsPolicy, peer_names_match
from mailhorn.smtp.client import ReplyParser, ReplySyntaxError
from mailhorn.smtp.reply import Reply

__all__ = ["ClientSettings", "Outcome", "PlaintextRetry", "Session", "SessionFailure", "open_session"]

_CHUNK = 65536


@dataclass
class ClientSettings:
    """The client's parameters, read once per agent (``smtp_*`` or ``lmtp_*``)."""

    lmtp: bool = False
    helo_name: str = "localhost"
    connect_timeout: float = 30
    helo_timeout: float = 300
    starttls_timeout: float = 300
    mail_timeout: float = 300
    rcpt_timeout: float = 300
    data_init_timeout: float = 120
    data_xfer_timeout: float = 180
    data_done_timeout: float = 600
    rset_timeout: float = 20
    quit_timeout: float = 300
    xforward_timeout: float = 300
    bind_address: str = ""
    bind_address6: str = ""
    always_send_ehlo: bool = True
    never_send_ehlo: bool = False
    discard_ehlo_keywords: list[str] = field(default_factory=list)
    skip_5xx_greeting: bool = True
    quote_rfc821_envelope: bool = True
    send_xforward: bool = False
    line_length_limit: int = 990
    header_size_limit: int = 102400
    mime_output_conversion: bool = True
    sasl_enable: bool = False
    sasl_security_options: str = "noplaintext, noanonymous"
    sasl_tls_security_options: str = "noplaintext, noanonymous"
    sasl_mechanism_filter: list[str] = field(default_factory=list)
    sasl_soft_bounce: bool = True


class SessionFailure(Exception):
    """The session cannot go on; applies to every recipient still pending.

    ``permanent`` failures bounce; others move on to the next server and
    finally defer.  ``duplicate`` marks a loss after the end of data.
    """

    def __init__(self, dsn: str, text: str, *, remote_reply: str | None = None, duplicate: bool = False,
                 connected: bool = True) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text
        self.remote_reply = remote_reply
        self.duplicate = duplicate
        self.connected = connected
        """False when no connection was made (refused, unreachable, timed out)."""

    @property
    def permanent(self) -> bool:
        return self.dsn.startswith("5")


class PlaintextRetry(Exception):
    """TLS at level ``may`` failed in the handshake: try this server again in plaintext."""


@dataclass(frozen=True)
class Outcome:
    """What one recipient got from the server."""

    action: Action
    dsn: str
    text: str
    remote_reply: str | None = None

    @property
    def soft(self) -> bool:
        return self.action is Action.DEFERRED


def _soften(dsn: str) -> str:
    return "4" + dsn[1:] if dsn.startswith("5") else dsn


class Session:
    """An open, greeted session with one server."""

    def __init__(self, conn: Connection, settings: ClientSettings) -> None:
        self.conn = conn
        self.settings = settings
        self.server = conn.server
        self.parser = ReplyParser(line_length_limit=max(settings.line_length_limit, 512) * 4)
        self.features = proto.Features()
        self.created = time.monotonic()
        self.transactions = 0
        self.usable = True

    # -- replies -----------------------------------------------------------
    @property
    def label(self) -> str:
        return self.server.label

    async def reply(self, timeout: float, stage: str) -> Reply:
        """The next reply; SessionFailure when the connection ends or times out."""
        while True:
            try:
                reply = self.parser.next_reply()
            except ReplySyntaxError:
                self.usable = False
                raise SessionFailure("4.4.0", f"host {self.label} sent a malformed reply while {stage}") from None
            if reply is not None:
                return reply
            try:
                data = await self.conn.receive(timeout)
            except ConnectionLost:
                self.usable = False
                raise SessionFailure("4.4.2", proto.lost_text(self.label, stage),
                                     duplicate=stage == proto.STAGE_DOT) from None
            except ConnectionTimeout:
                self.usable = False
                raise SessionFailure("4.4.2", proto.timeout_text(self.label, stage),
                                     duplicate=stage == proto.STAGE_DOT) from None
            self.parser.feed(data)

    async def send(self, data: bytes, timeout: float, stage: str) -> None:
        try:
            await self.conn.send(data, timeout)
        except ConnectionLost:
            self.usable = False
            raise SessionFailure("4.4.2", proto.lost_text(self.label, stage)) from None
        except ConnectionTimeout:
            self.usable = False
            raise SessionFailure("4.4.2", proto.timeout_text(self.label, stage)) from None

    async def command(self, line: str, timeout: float, stage: str) -> Reply:
        await self.send(line.encode("utf-8", "surrogateescape") + b"\r\n", timeout, stage)
        return await self.reply(timeout, stage)

    # -- opening -------------------------------------------------------------
    async def greet(self) -> None:
        s = self.settings
        stage = proto.STAGE_GREETING
        greeting = await self.reply(s.helo_timeout, stage)
        if greeting.code != 220 and not 200 <= greeting.code < 300:
            await self.quit()
            text = f"host {self.label} refused to talk to me: {proto.reply_text(greeting)}"
            dsn = proto.dsn_of(greeting)
            if greeting.is_permanent and s.skip_5xx_greeting:
                dsn = _soften(dsn)
            raise SessionFailure(dsn, text, remote_reply=str(greeting))
        await self.hello(esmtp_greeting="ESMTP" in greeting.text.upper())

    async def hello(self, esmtp_greeting: bool = True) -> None:
        s = self.settings
        if s.lmtp:
            reply = await self.command(f"LHLO {s.helo_name}", s.helo_timeout, proto.STAGE_LHLO)
            if reply.code != 250:
                await self._refused(reply, "LHLO")
            self.features = proto.parse_ehlo(reply, s.discard_ehlo_keywords)
            return
        use_ehlo = not s.never_send_ehlo and (s.always_send_ehlo or esmtp_greeting)
        if use_ehlo:
            reply = await self.command(f"EHLO {s.helo_name}", s.helo_timeout, proto.STAGE_HELO)
            if reply.code == 250:
                self.features = proto.parse_ehlo(reply, s.discard_ehlo_keywords)
                return
            if reply.is_transient:
                await self._refused(reply, "EHLO")
        reply = await self.command(f"HELO {s.helo_name}", s.helo_timeout, proto.STAGE_HELO)
        if reply.code != 250:
            await self._refused(reply, "HELO")
        self.features = proto.Features()

    async def _refused(self, reply: Reply, command: str) -> None:
        await self.quit()
        raise SessionFailure(proto.dsn_of(reply), proto.said_text(self.label, reply, command),
                             remote_reply=str(reply))

    async def starttls(self, policy: TlsPolicy, hop: Nexthop) -> None:
        """STARTTLS as ``policy`` says (RFC 3207); EHLO again afterwards."""
        s = self.settings
        if policy.level == Level.NONE or self.server.unix and not self.features.starttls:
            return
        if not self.features.starttls:
            if policy.mandatory:
                await self.quit()
                raise SessionFailure("4.7.4", f"TLS is required, but was not offered by host {self.label}")
            return
        reply = await self.command("STARTTLS", s.helo_timeout, proto.STAGE_STARTTLS)
        if reply.code != 220:
            if policy.mandatory:
                await self.quit()
                raise SessionFailure("4.7.4", f"TLS is required, but host {self.label} refused to start TLS: "
                                     f"{proto.reply_text(reply)}", remote_reply=str(reply))
            return
        # Whatever the server sent after its 220 is dropped, unread (CVE-2011-0411 class).
        self.parser = ReplyParser(line_length_limit=max(s.line_length_limit, 512) * 4)
        try:
            context = policy.context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.usable = False
            self.conn.abort()
            raise SessionFailure("4.7.5", f"Cannot start TLS: client configuration error: {exc}") from None
        sni = policy.servername or None
        if sni == "hostname":
            sni = self.server.name
        elif sni == "nexthop":
            sni = hop.host
        try:
            await self.conn.starttls(context, sni, s.starttls_timeout)
        except ssl.SSLCertVerificationError:
            self.usable = False
            self.conn.abort()
            raise SessionFailure("4.7.5", "Server certificate not trusted") from None
        except (ssl.SSLError, OSError, ConnectionLost, ConnectionTimeout, TimeoutError) as exc:
            self.usable = False
            self.conn.abort()
            if policy.mandatory:
                raise SessionFailure("4.7.5", "Cannot start TLS: handshake failure") from None
            raise PlaintextRetry(str(exc)) from None
        obj = self.conn.tls
        trust = "Untrusted"
        if policy.verifies and obj is not None:
            cert = obj.getpeercert()
            if not cert or not peer_names_match(policy, dict(cert), self.server.name, hop):
                await self.quit()
                raise SessionFailure("4.7.5", "Server certificate not verified")
            trust = "Verified"
        if policy.loglevel >= 1 and obj is not None:
            cipher = obj.cipher()
            name, _, bits = cipher if cipher is not None else ("unknown", "", 0)
            log.info(f"{trust} TLS connection established to {self.server.relay}: {obj.version()} with cipher "
                     f"{name} ({bits or 0}/{bits or 0} bits)")
        await self.hello()

    async def authenticate(self, credentials: Credentials | None) -> None:
        """AUTH with ``credentials`` when the server offers it (RFC 4954)."""
        s = self.settings
        if not s.sasl_enable or credentials is None or not self.features.auth:
            return
        options = s.sasl_tls_security_options if self.conn.tls is not None else s.sasl_security_options
        mech = choose_mechanism(self.features.auth, s.sasl_mechanism_filter, options)
        if mech is None:
            await self.quit()
            raise SessionFailure("4.7.0", f"SASL authentication failed; cannot authenticate to server "
                                 f"{self.label}: no mechanism available")
        exchange = SaslExchange(mech, credentials)
        reply = await self.command(exchange.initial(), s.helo_timeout, proto.STAGE_AUTH)
        steps = 0
        while reply.code == 334 and steps < 10:
            steps += 1
            try:
                answer = exchange.respond(reply.lines[0] if reply.lines else "")
            except SaslError as exc:
                answer = "*"
                log.warning(f"{self.label}: {exc.text}")
            reply = await self.command(answer, s.helo_timeout, proto.STAGE_AUTH)
        if reply.code != 235:
            await self.quit()
            dsn = proto.dsn_of(reply)
            if s.sasl_soft_bounce:
                dsn = _soften(dsn)
            raise SessionFailure(dsn, f"SASL authentication failed; server {self.label} said: "
                                 f"{proto.reply_text(reply)}", remote_reply=str(reply))

    # -- closing and reuse -------------------------------------------------
    async def rset(self) -> bool:
        """RSET; True when the session may carry another transaction."""
        try:
            reply = await self.command("RSET", self.settings.rset_timeout, proto.STAGE_RSET)
        except SessionFailure:
            self.usable = False
            return False
        self.usable = reply.code == 250
        return self.usable

    async def quit(self) -> None:
        """QUIT without waiting long for the answer, then close."""
        if not self.conn.closed:
            try:
                await self.conn.send(b"QUIT\r\n", 5)
                if not self.parser.partial:
                    await self.conn.receive(min(self.settings.quit_timeout, 5))
            except (ConnectionLost, ConnectionTimeout, OSError):
                pass
        self.usable = False
        await self.conn.wait_closed()

    async def close(self) -> None:
        """Drop the connection without QUIT (after a failure)."""
        self.usable = False
        self.conn.abort()
        await self.conn.wait_closed()

    # -- a mail transaction ----------------------------------------------------
    def _precheck(self, request: DeliveryRequest) -> SessionFailure | None:
        """Refusals decided before MAIL FROM: SIZE, SMTPUTF8, 8BITMIME."""
        f = self.features
        if f.size and f.size_limit and request.content_size > f.size_limit:
            return SessionFailure("5.3.4", f"message size {request.content_size} exceeds size limit "
                                  f"{f.size_limit} of server {self.label}")
        if _needs_smtputf8(request) and not f.smtputf8:
            return SessionFailure("5.6.7", f"SMTPUTF8 is required, but was not offered by host {self.label}")
        if self._downgrade(request):
            try:
                check_convertible(request.open_content(), self.settings.header_size_limit)
            except NotConvertible as exc:
                return SessionFailure("5.6.3", str(exc))
        return None

    def _downgrade(self, request: DeliveryRequest) -> bool:
        return (_is_8bit(request) and not self.features.eightbitmime and self.settings.mime_output_conversion)

    async def transaction(self, request: DeliveryRequest,
                          recipients: Sequence[DeliveryRecipient]) -> list[Outcome]:
        """Send the message to ``recipients``; one outcome per recipient, in order.

        SessionFailure escapes only for what happens before MAIL FROM is
        answered; later failures become outcomes for the recipients concerned.
        """
        self.transactions += 1
        early = self._precheck(request)
        if early is not None:
            raise early
        s = self.settings
        f = self.features
        mail_line = proto.mail_from(request.sender, f, size=request.content_size, body_8bit=_is_8bit(request),
                                    smtputf8=_needs_smtputf8(request), ret=request.dsn_ret,
                                    envid=request.dsn_envid, quote=s.quote_rfc821_envelope)
        rcpt_lines = [proto.rcpt_to(r.address, f, notify=r.dsn_notify, orcpt=r.dsn_orcpt,
                                    quote=s.quote_rfc821_envelope) for r in recipients]
        xforward = self._xforward_lines(request)
        use_bdat = f.chunking and not s.lmtp
        outcomes: list[Outcome | None] = [None] * len(recipients)
        try:
            return await self._dialogue(request, recipients, mail_line, rcpt_lines, xforward, use_bdat, outcomes)
        except SessionFailure as exc:
            self.usable = False
            self.conn.abort()
            filled: list[Outcome] = []
            for outcome in outcomes:
                filled.append(outcome if outcome is not None else
                              Outcome(Action.DEFERRED, exc.dsn, exc.text, exc.remote_reply))
            if exc.duplicate:
                log.warning(f"{request.queue_id}: {exc.text}")
            return filled

    def _xforward_lines(self, request: DeliveryRequest) -> list[str]:
        """XFORWARD (Postfix XFORWARD_README) when asked for and offered."""
        offered = self.features.keywords.get("XFORWARD")
        if not self.settings.send_xforward or offered is None:
            return []
        names = set(offered.upper().split())
        a = request.attributes
        pairs = [("NAME", a.get("client_name")), ("ADDR", a.get("client_address")),
                 ("PORT", a.get("client_port")), ("PROTO", a.get("protocol_name")),
                 ("HELO", a.get("helo_name")), ("IDENT", request.queue_id),
                 ("SOURCE", "LOCAL" if a.get("rewrite_context") == "local" else "REMOTE")]
        words = [f"{k}={proto.xtext(v) if v else '[UNAVAILABLE]'}" for k, v in pairs if k in names]
        lines: list[str] = []
        current = "XFORWARD"
        for word in words:
            if len(current) + 1 + len(word) > 500 and current != "XFORWARD":
                lines.append(current)
                current = "XFORWARD"
            current += " " + word
        if current != "XFORWARD":
            lines.append(current)
        return lines

    async def _dialogue(self, request: DeliveryRequest, recipients: Sequence[DeliveryRecipient], mail_line: str,
                        rcpt_lines: list[str], xforward: list[str], use_bdat: bool,
                        outcomes: list[Outcome | None]) -> list[Outcome]:
        s = self.settings
        for line in xforward:
            reply = await self.command(line, s.xforward_timeout, "sending XFORWARD")
            if reply.code != 250:
                raise SessionFailure(proto.dsn_of(reply), proto.said_text(self.label, reply, "XFORWARD"),
                                     remote_reply=str(reply))
        pipelined = self.features.pipelining
        commands = [mail_line, *rcpt_lines] + ([] if use_bdat else ["DATA"])
        if pipelined:
            await self.send("".join(c + "\r\n" for c in commands).encode("utf-8", "surrogateescape"),
                            s.mail_timeout, proto.STAGE_MAIL)
        # MAIL FROM
        if not pipelined:
            await self.send(mail_line.encode("utf-8", "surrogateescape") + b"\r\n", s.mail_timeout, proto.STAGE_MAIL)
        mail_reply = await self.reply(s.mail_timeout, proto.STAGE_MAIL)
        if mail_reply.code != 250:
            fail = self._refusal(mail_reply, "MAIL FROM")
            for i in range(len(recipients)):
                outcomes[i] = fail
            if pipelined:
                await self._drain_pipeline(len(rcpt_lines) + (0 if use_bdat else 1))
            else:
                await self.rset()
            return [o for o in outcomes if o is not None]
        # RCPT TO
        accepted: list[int] = []
        for i, line in enumerate(rcpt_lines):
            if not pipelined:
                await self.send(line.encode("utf-8", "surrogateescape") + b"\r\n", s.rcpt_timeout, proto.STAGE_RCPT)
            reply = await self.reply(s.rcpt_timeout, proto.STAGE_RCPT)
            if 200 <= reply.code < 300:
                accepted.append(i)
            else:
                outcomes[i] = self._refusal(reply, "RCPT TO")
        # DATA
        if not use_bdat:
            if not pipelined and accepted:
                await self.send(b"DATA\r\n", s.data_init_timeout, proto.STAGE_DATA)
            if pipelined or accepted:
                data_reply = await self.reply(s.data_init_timeout, proto.STAGE_DATA)
                if data_reply.code == 354 and not accepted:
                    # Nothing to send: a server that wants the message anyway gets none.
                    self.usable = False
                    self.conn.abort()
                    return [o for o in outcomes if o is not None]
                if data_reply.code != 354 and accepted:
                    fail = self._refusal(data_reply, "DATA")
                    for i in accepted:
                        outcomes[i] = fail
                    await self.rset()
                    return [o for o in outcomes if o is not None]
        if not accepted:
            await self.rset()
            return [o for o in outcomes if o is not None]
        await self._send_content(request, use_bdat)
        # The answers to the end of data: one, or one per accepted recipient (LMTP).
        command = "end of DATA"
        for n, i in enumerate(accepted):
            if n == 0 or s.lmtp:
                reply = await self.reply(s.data_done_timeout, proto.STAGE_DOT)
            if 200 <= reply.code < 300:
                rcpt = recipients[i]
                relayed = not self.features.dsn and "SUCCESS" in rcpt.dsn_notify
                outcomes[i] = Outcome(Action.RELAYED if relayed else Action.DELIVERED, proto.dsn_of(reply),
                                      proto.reply_text(reply), str(reply))
            else:
                outcomes[i] = self._refusal(reply, command)
        return [o for o in outcomes if o is not None]

    def _refusal(self, reply: Reply, command: str) -> Outcome:
        action = Action.BOUNCED if reply.is_permanent else Action.DEFERRED
        return Outcome(action, proto.dsn_of(reply), proto.said_text(self.label, reply, command), str(reply))

    async def _drain_pipeline(self, count: int) -> None:
        """Read the answers to pipelined commands after MAIL FROM failed, then RSET."""
        saw_354 = False
        for _ in range(count):
            reply = await self.reply(self.settings.rcpt_timeout, proto.STAGE_RCPT)
            saw_354 = reply.code == 354
        if saw_354:
            self.usable = False
            self.conn.abort()
            return
        await self.rset()

    def _content(self, request: DeliveryRequest) -> Iterator[bytes]:
        chunks: Iterable[bytes] = request.open_content()
        if self._downgrade(request):
            chunks = downgrade(chunks, self.settings.header_size_limit)
        return iter(chunks)

    async def _send_content(self, request: DeliveryRequest, use_bdat: bool) -> None:
        s = self.settings
        stuffer = proto.DotStuffer(stuff=not use_bdat)
        pending = bytearray()
        for chunk in self._content(request):
            pending += stuffer.feed(chunk)
            if len(pending) >= _CHUNK:
                if use_bdat:
                    await self._bdat(bytes(pending), last=False)
                else:
                    await self.send(bytes(pending), s.data_xfer_timeout, proto.STAGE_BODY)
                pending.clear()
        pending += stuffer.end()
        if use_bdat:
            await self._bdat(bytes(pending), last=True)
        else:
            await self.send(bytes(pending), s.data_xfer_timeout, proto.STAGE_BODY)

    async def _bdat(self, data: bytes, *, last: bool) -> None:
        s = self.settings
        head = f"BDAT {len(data)}{' LAST' if last else ''}\r\n".encode()
        await self.send(head + data, s.data_xfer_timeout, proto.STAGE_DOT if last else proto.STAGE_BODY)
        if not last:
            reply = await self.reply(s.data_xfer_timeout, proto.STAGE_BODY)
            if reply.code != 250:
                raise SessionFailure(_soften(proto.dsn_of(reply)) if reply.is_transient else proto.dsn_of(reply),
                                     proto.said_text(self.label, reply, "BDAT"), remote_reply=str(reply))


def _is_8bit(request: DeliveryRequest) -> bool:
    return request.attributes.get("encoding", "").lower() == "8bit"


def _needs_smtputf8(request: DeliveryRequest) -> bool:
    """SMTPUTF8 was asked for and the envelope needs it (RFC 6531 §3.4)."""
    if request.attributes.get("smtputf8", "0") in ("", "0"):
        return False
    return not request.sender.isascii() or any(not r.address.isascii() for r in request.recipients)


async def open_session(server: Server, settings: ClientSettings, *, policy: TlsPolicy, hop: Nexthop,
                       credentials: Callable[[str], Awaitable[Credentials | None]] | None = None,
                       plaintext: bool = False) -> Session:
    """Connect, greet, TLS, AUTH: a session ready for MAIL FROM.

    ``await credentials(hostname)`` gives the SASL credentials for the server;
    ``plaintext`` skips STARTTLS (the retry after a failed ``may`` handshake).
    """
    try:
        conn = await connect(server, timeout=settings.connect_timeout, bind4=settings.bind_address,
                             bind6=settings.bind_address6)
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, OSError) and exc.errno:
            reason = os.strerror(exc.errno)
        else:
            reason = str(exc) or "Connection timed out"
        where = server.relay
        raise SessionFailure("4.4.1", f"connect to {where}: {reason}", connected=False) from None
    session = Session(conn, settings)
    try:
        await session.greet()
        if not plaintext:
            await session.starttls(policy, hop)
        await session.authenticate(await credentials(server.name) if credentials is not None else None)
    except (SessionFailure, PlaintextRetry):
        await session.close()
        raise
    except BaseException:
        session.conn.abort()
        raise
    return session
