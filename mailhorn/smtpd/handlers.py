"""smtpd's commands: an explicit table from command type to handler and flags.

Each handler gets the session and the parsed command (the SMTP engine has
already checked syntax and session order) and returns the reply, after
running the restrictions of its stage (:mod:`mailhorn.smtpd.checks` through
``Session.check``).  Texts are Postfix 3.7's:

- HELO ``250 HOST``; EHLO the keyword list of Postfix 3.7 in its order
  (PIPELINING, SIZE n, VRFY, ETRN, STARTTLS, AUTH, XCLIENT, XFORWARD,
  ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING) less
  ``smtpd_discard_ehlo_keywords``, or for the client address what
  ``smtpd_discard_ehlo_keyword_address_maps`` says instead (logged
  ``discarding EHLO keywords: ...`` unless ``silent-discard`` is listed);
- MAIL: ``555 5.5.4 Unsupported option: SMTPUTF8`` when ``smtputf8_enable
  = no``; ``AUTH=`` (RFC 4954 §5) is kept as the ``sasl_sender`` when SASL
  is enabled (``<>`` means none), ignored otherwise, as Postfix does; ``452 4.3.1 Insufficient system storage`` below ``queue_minfree``
  (``QueueStore.has_space``); ``450 4.7.1 Error: too much mail from ADDR``
  over ``smtpd_client_message_rate_limit``;
- RCPT: ``450 4.7.1 Error: too many recipients from ADDR`` over
  ``smtpd_client_recipient_rate_limit``;
- DATA ``354``, then at the end ``250 2.0.0 Ok: queued as ID``;
  ``552 5.3.4 Error: message file too big`` past ``message_size_limit``
  (the content is read to its end and the session goes on);
- BDAT ``250 2.0.0 Ok: N bytes`` per chunk, ``250 2.0.0 Ok: N bytes queued
  as ID`` at LAST;
- VRFY ``252 2.0.0 ARG`` or ``502 5.5.1 VRFY command is disabled``; ETRN
  ``250 Queuing started`` (and the queue manager is woken); AUTH
  (:mod:`mailhorn.smtpd.auth`: ``334`` challenges, ``235``, ``535``, ``503
  5.5.1 Error: authentication not enabled`` without
  ``smtpd_sasl_auth_enable``); STARTTLS ``220 2.0.0 Ready to start TLS``, ``502 5.5.1 Error: command not
  implemented`` when TLS is not offered, ``554 5.5.1 Error: TLS already
  active``; HELP and unknown commands ``500 5.5.2 Error: command not
  recognized``; ``smtpd_forbidden_commands`` and lines that look like a
  message header ``221 2.7.0 Error: I can break rules, too. Goodbye.``;
- XFORWARD (:mod:`mailhorn.smtpd.xforward`) and XCLIENT for the hosts in
  ``smtpd_authorized_xforward_hosts`` / ``smtpd_authorized_xclient_hosts``,
  else ``550 5.7.0 Error: insufficient authorization``.

Parameters read: through the session's settings.  Errors: none escape.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TYPE_CHECKING

from mailhorn import log
from mailhorn.address.quote import unquote_local
from mailhorn.cleanup.request import RecipientRequest
from mailhorn.queue.store import DISK_FULL
from mailhorn.smtp import reply as R
from mailhorn.smtp.codec import AuthResponse, BodyEnd, CommandEvent
from mailhorn.smtp.commands import (
    Auth,
    Bdat,
    Command,
    Data,
    Etrn,
    Hello,
    Help,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Unknown,
    Vrfy,
    Xclient,
    Xforward,
    looks_like_header,
)
from mailhorn.smtp.reply import Reply, SmtpReplyError, printable
from mailhorn.smtpd import auth
from mailhorn.smtpd.smtpd_log import reply_text
from mailhorn.smtpd.state import Stage
from mailhorn.smtpd.transaction import Transaction
from mailhorn.smtpd.xforward import EHLO_XFORWARD, apply_xforward
from mailhorn.tables.base import TableRetry

if TYPE_CHECKING:
    from mailhorn.smtpd.session import Session

__all__ = ["COMMANDS", "handle_auth_response", "handle_body_end", "handle_command"]

EHLO_XCLIENT: Final = "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"
TLS_ALREADY_ACTIVE: Final = Reply.of(554, "5.5.1", "Error: TLS already active")
SMTPUTF8_UNSUPPORTED: Final = R.unsupported_option("SMTPUTF8")


class Flag(enum.Flag):
    NONE = 0
    PRE_TLS = enum.auto()  # allowed before STARTTLS at level encrypt
    JUNK = enum.auto()  # counted against smtpd_junk_command_limit
    LAST = enum.auto()  # must end a pipelined group (RFC 2920 §3.1)


Handler = Callable[["Session", Any], Awaitable[Reply | None]]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    flags: Flag


# --- HELO / EHLO ----------------------------------------------------------------


def ehlo_keywords(session: Session) -> list[str]:
    s = session.settings
    discard = session.discard_ehlo
    words: list[str] = []
    dropped: list[str] = []

    def offer(keyword: str, line: str, enabled: bool = True) -> None:
        if not enabled:
            return
        if keyword in discard:
            dropped.append(keyword.upper())
        else:
            words.append(line)

    offer("pipelining", "PIPELINING")
    offer("size", f"SIZE {s.message_size_limit}" if s.message_size_limit > 0 else "SIZE")
    offer("vrfy", "VRFY", not s.disable_vrfy)
    offer("etrn", "ETRN")
    offer("starttls", "STARTTLS", session.ctx.tls.offered and session.tls is None)
    for line in auth.ehlo_lines(session):
        offer("auth", line)
    offer("xclient", EHLO_XCLIENT, _authorized(session, "xclient"))
    offer("xforward", EHLO_XFORWARD, _authorized(session, "xforward"))
    offer("enhancedstatuscodes", "ENHANCEDSTATUSCODES")
    offer("8bitmime", "8BITMIME")
    offer("dsn", "DSN")
    offer("smtputf8", "SMTPUTF8", s.smtputf8)
    offer("chunking", "CHUNKING")
    if dropped and "silent-discard" not in discard:
        log.info(f"discarding EHLO keywords: {' '.join(dropped)}")
    return words


def _authorized(session: Session, kind: str) -> bool:
    s, st = session.settings, session.state
    hosts = s.xforward_hosts if kind == "xforward" else s.xclient_hosts
    try:
        return hosts.match(st.client_name, st.client_addr)
    except TableRetry:
        return False


async def do_hello(session: Session, cmd: Hello) -> Reply:
    st = session.state
    previous = st.helo_name
    st.helo_name = cmd.hostname
    refusal = await session.check(Stage.EHLO if cmd.extended else Stage.HELO)
    if refusal is not None:
        st.helo_name = previous
        return refusal
    await session.end_transaction()
    session.extended = cmd.extended
    session.update_protocol()
    host = session.settings.myhostname
    return R.ehlo_ok(host, ehlo_keywords(session)) if cmd.extended else R.helo_ok(host)


# --- MAIL / RCPT ------------------------------------------------------------------


async def do_mail(session: Session, cmd: Mail) -> Reply:
    s, st = session.settings, session.state
    params = cmd.params
    if params.smtputf8 and not s.smtputf8:
        return SMTPUTF8_UNSUPPORTED
    sender = unquote_local(cmd.path.address)
    session.instance_count += 1
    # The policy protocol's "instance": one value per mail transaction.
    st.instance = f"{id(session) & 0xFFFFF:x}.{session.instance_count}"
    st.sender = sender
    st.recipient = None
    st.size = params.size or 0
    st.dsn_envid = params.envid or ""
    st.dsn_ret = params.ret or ""
    if params.auth is not None and session.ctx.sasl.enabled:
        st.sasl_sender = "" if params.auth == "<>" else printable(params.auth)
    session.txn = Transaction(sender, params, params.smtputf8)
    session.update_protocol()
    reply = await _mail_checks(session)
    if reply is not None:
        session.txn = None
        st.sender = None
        st.sasl_sender = ""
        session.update_protocol()
        return reply
    return R.MAIL_OK


async def _mail_checks(session: Session) -> Reply | None:
    s, st = session.settings, session.state
    if s.message_rate_limit > 0 and session.limits_apply():
        rate = session.ctx.runtime.anvil.event("message", s.service, st.client_addr)
        if rate > s.message_rate_limit:
            log.warning(f"Message delivery request rate limit exceeded: {rate} from {session.client}"
                        f" for service {s.service}")
            return Reply.of(450, "4.7.1", f"Error: too much mail from {st.client_addr}")
    refusal = await session.check(Stage.MAIL)
    if refusal is not None:
        return refusal
    if not session.ctx.runtime.queue.has_space(st.size):
        session.log_event("reject", Stage.MAIL, reply_text(DISK_FULL))
        return DISK_FULL
    return None


async def do_rcpt(session: Session, cmd: Rcpt) -> Reply:
    s, st = session.settings, session.state
    txn = session.txn
    assert txn is not None
    recipient = unquote_local(cmd.path.address)
    st.recipient = recipient
    params = cmd.params
    st.dsn_notify = ",".join(params.notify) if params.notify else ""
    st.dsn_orcpt = f"{params.orcpt[0]};{params.orcpt[1]}" if params.orcpt else ""
    if s.recipient_rate_limit > 0 and session.limits_apply():
        rate = session.ctx.runtime.anvil.event("rcpt", s.service, st.client_addr)
        if rate > s.recipient_rate_limit:
            log.warning(f"Recipient address rate limit exceeded: {rate} from {session.client}"
                        f" for service {s.service}")
            return Reply.of(450, "4.7.1", f"Error: too many recipients from {st.client_addr}")
    refusal = await session.check(Stage.RCPT)
    if refusal is not None:
        return refusal
    txn.recipients.append(RecipientRequest(recipient, st.dsn_orcpt or None,
                                           frozenset(params.notify or ())))
    st.recipient_count = len(txn.recipients)
    return R.RCPT_OK


# --- DATA / BDAT ------------------------------------------------------------------


async def _open_cleanup(session: Session) -> Reply | None:
    txn = session.txn
    assert txn is not None
    st = session.state
    request = txn.request(session.client_info(), session.session_actions, session.ctx.config)
    refusal = await txn.open(session.ctx.runtime.cleanup, request)
    if refusal is None and txn.queue_id:
        _log_client(session, txn.queue_id)
    st.queue_id = txn.queue_id
    return refusal


def _log_client(session: Session, queue_id: str) -> None:
    fw = session.forwarded
    st = session.state
    text = f"{queue_id}: client={session.client}"
    if st.sasl_method:
        text += f", sasl_method={st.sasl_method}"
    if st.sasl_username:
        text += f", sasl_username={st.sasl_username}"
    if st.sasl_sender:
        text += f", sasl_sender={st.sasl_sender}"
    if fw.active:
        info = session.client_info()
        ident = fw.get("IDENT")
        if ident:
            text += f", orig_queue_id={ident}"
        text += f", orig_client={info.name}[{info.addr}]"
    log.info(text)


async def do_data(session: Session, cmd: Data) -> Reply:
    refusal = await session.check(Stage.DATA)
    if refusal is not None:
        return refusal
    refusal = await _open_cleanup(session)
    if refusal is not None:
        return refusal
    return R.START_MAIL_INPUT


async def do_bdat(session: Session, cmd: Bdat) -> Reply | None:
    """The first chunk opens the queue file, then runs smtpd_data_restrictions.

    Postfix 3.7 applies the DATA restrictions to BDAT too, after it opened the
    queue file (so the refusal is logged ``QUEUEID: reject: BDAT ...``); the
    refused chunk gets the refusal, later chunks ``551 5.0.0 Discarded N
    bytes after earlier error``, and the transaction ends at LAST.
    """
    txn = session.txn
    assert txn is not None
    if txn.cleanup is None and txn.error is None and not txn.receiving:
        refusal = await _open_cleanup(session)
        if refusal is None:
            refusal = await session.check(Stage.DATA, verb="BDAT")
            if refusal is not None:
                await txn.abort()
        if refusal is not None:
            txn.error = refusal
        txn.receiving = True
    return None  # answered at the end of the chunk


async def handle_body_end(session: Session, ev: BodyEnd) -> None:
    """The end of DATA content or of one BDAT chunk."""
    txn = session.txn
    assert txn is not None
    name = "bdat" if ev.bdat else "data"
    session.where = "BDAT" if ev.bdat else "END-OF-MESSAGE"
    reply: Reply
    queued = False
    if ev.bdat and txn.error is not None:
        # The refusal once, then Postfix's "Discarded" for each later chunk.
        reply = R.bdat_discarded(ev.chunk_octets) if txn.error_told else txn.error
        txn.error_told = True
        await txn.abort()
    elif ev.too_big:
        await txn.abort()
        reply = R.CHUNK_TOO_BIG if ev.bdat else R.MESSAGE_TOO_BIG
        if ev.bdat:
            txn.error, txn.error_told = reply, True
    elif not ev.last:
        reply = R.bdat_chunk_ok(ev.chunk_octets)
    else:
        session.state.size = ev.octets
        refusal = None if txn.error is not None else await session.check(Stage.END_OF_MESSAGE)
        if refusal is not None:
            await txn.abort()
            reply = refusal
        else:
            reply, _result = await txn.finish()
            queued = reply.code == 250
            if queued and txn.queue_id and not session.state.queue_id:
                _log_client(session, txn.queue_id)
            if queued and ev.bdat and txn.queue_id:
                reply = R.bdat_queued_as(ev.octets, txn.queue_id)
    if ev.bdat:
        session.counters.count(name, reply.code < 400)
    elif reply.code < 400:
        session.counters.succeed(name)  # counted as tried at its 354
    if reply.code >= 400:
        session.error_count += 1
    await session.answer(reply)
    if ev.last:
        await session.end_transaction()
    if queued:
        session.message_count += 1
        session.error_count = 0
        session.junk_count = 0


# --- the rest -----------------------------------------------------------------------


async def do_rset(session: Session, cmd: Rset) -> Reply:
    await session.end_transaction()
    return R.OK


async def do_noop(session: Session, cmd: Noop) -> Reply:
    return R.OK


async def do_quit(session: Session, cmd: Quit) -> Reply:
    return R.BYE


async def do_vrfy(session: Session, cmd: Vrfy) -> Reply:
    if session.settings.disable_vrfy:
        return R.VRFY_DISABLED
    st = session.state
    arg = cmd.argument.strip()
    address = arg[1:-1] if arg.startswith("<") and arg.endswith(">") else arg
    saved = st.recipient
    st.recipient = unquote_local(address)
    try:
        refusal = await session.check(Stage.VRFY)
    finally:
        st.recipient = saved
    if refusal is not None:
        return refusal
    return Reply.of(252, "2.0.0", printable(cmd.argument))


async def do_etrn(session: Session, cmd: Etrn) -> Reply:
    if session.txn is not None:
        return R.MAIL_TRANSACTION_IN_PROGRESS
    domain = cmd.argument.strip()
    bare = domain.lstrip("@#")
    if not bare or not bare[0].isalnum():
        return Reply.of(501, None, "Error: invalid parameter syntax")
    session.state.etrn_domain = domain
    refusal = await session.check(Stage.ETRN)
    if refusal is not None:
        return refusal
    session.ctx.runtime.wakeup_qmgr()
    return Reply.of(250, None, "Queuing started")


async def do_help(session: Session, cmd: Help) -> Reply:
    return R.COMMAND_NOT_RECOGNIZED


async def do_starttls(session: Session, cmd: StartTls) -> Reply:
    if session.tls is not None:
        return TLS_ALREADY_ACTIVE
    if not session.ctx.tls.offered:
        return R.COMMAND_NOT_IMPLEMENTED
    return R.READY_TO_START_TLS


async def do_auth(session: Session, cmd: Auth) -> Reply:
    return await auth.start(session, cmd)


async def do_xforward(session: Session, cmd: Xforward) -> Reply:
    if not _authorized(session, "xforward"):
        return R.INSUFFICIENT_AUTHORIZATION
    if session.txn is not None:
        return R.MAIL_TRANSACTION_IN_PROGRESS
    try:
        apply_xforward(session.forwarded, cmd.attributes)
    except SmtpReplyError as err:
        return err.reply
    session.state.xforward = dict(session.forwarded.attrs)
    return R.OK


_XCLIENT_NAMES: Final = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO", "REVERSE_NAME", "LOGIN",
                            "DESTADDR", "DESTPORT"})


async def do_xclient(session: Session, cmd: Xclient) -> Reply:
    """XCLIENT (XCLIENT_README): an authorized proxy replaces the client's
    identity for everything that follows, restrictions included; the
    session restarts with a new greeting."""
    if not _authorized(session, "xclient"):
        return R.INSUFFICIENT_AUTHORIZATION
    if session.txn is not None:
        return R.MAIL_TRANSACTION_IN_PROGRESS
    st = session.state
    for name, value in cmd.attributes:
        if name not in _XCLIENT_NAMES:
            return Reply.of(501, "5.5.4", f"Bad XCLIENT attribute name: {printable(name)}")
    for name, value in cmd.attributes:
        unknown = value in ("[UNAVAILABLE]", "[TEMPUNAVAIL]", "")
        if name == "NAME":
            st.client_name = "unknown" if unknown else value
            st.client_name_status = 4 if value == "[TEMPUNAVAIL]" else (5 if unknown else 0)
        elif name == "REVERSE_NAME":
            st.reverse_client_name = "unknown" if unknown else value
        elif name == "ADDR":
            st.client_addr = value[5:] if value[:5].upper() == "IPV6:" else value
        elif name == "PORT":
            st.client_port = "" if unknown else value
        elif name == "HELO":
            st.helo_name = None if unknown else value
        elif name == "LOGIN":
            st.sasl_username = "" if unknown else value
            session.authenticated = bool(st.sasl_username)
    session.extended = False
    session.update_protocol()
    return R.greeting(session.settings.banner)


async def handle_auth_response(session: Session, ev: AuthResponse) -> None:
    """A client line of an AUTH exchange; the AUTH command is counted at its end."""
    session.where = "AUTH"
    reply = await auth.respond(session, ev)
    if reply.code != 334:
        session.counters.count("auth", reply.code < 400)
        if reply.code >= 400:
            session.error_count += 1
    await session.answer(reply)


async def do_unknown(session: Session, cmd: Unknown) -> Reply:
    return R.COMMAND_NOT_RECOGNIZED


COMMANDS: Final[dict[type[Command], CommandSpec]] = {
    Hello: CommandSpec("ehlo", do_hello, Flag.PRE_TLS | Flag.LAST),
    Xclient: CommandSpec("xclient", do_xclient, Flag.NONE),
    Xforward: CommandSpec("xforward", do_xforward, Flag.NONE),
    StartTls: CommandSpec("starttls", do_starttls, Flag.PRE_TLS),
    Auth: CommandSpec("auth", do_auth, Flag.NONE),
    Mail: CommandSpec("mail", do_mail, Flag.NONE),
    Rcpt: CommandSpec("rcpt", do_rcpt, Flag.NONE),
    Data: CommandSpec("data", do_data, Flag.LAST),
    Bdat: CommandSpec("bdat", do_bdat, Flag.NONE),
    Rset: CommandSpec("rset", do_rset, Flag.JUNK),
    Noop: CommandSpec("noop", do_noop, Flag.PRE_TLS | Flag.JUNK | Flag.LAST),
    Vrfy: CommandSpec("vrfy", do_vrfy, Flag.JUNK | Flag.LAST),
    Etrn: CommandSpec("etrn", do_etrn, Flag.JUNK),
    Quit: CommandSpec("quit", do_quit, Flag.PRE_TLS),
    Help: CommandSpec("help", do_help, Flag.NONE),
    Unknown: CommandSpec("unknown", do_unknown, Flag.NONE),
}


def _forbidden(session: Session, cmd: Command, line: str) -> bool:
    if not isinstance(cmd, Unknown):
        return False
    try:
        if session.ctx.forbidden_commands.match(cmd.verb):
            return True
    except TableRetry:
        pass
    return looks_like_header(line)


async def handle_command(session: Session, ev: CommandEvent) -> None:
    """Answer one command event (BDAT is answered at its chunk's end)."""
    cmd = ev.command
    spec = COMMANDS[type(cmd)]
    name = spec.name
    if isinstance(cmd, Hello):
        name = "ehlo" if cmd.extended else "helo"
    session.where = name.upper() if not isinstance(cmd, (Unknown, Help)) else "UNKNOWN"
    if _forbidden(session, cmd, ev.line):
        log.warning(f"non-SMTP command from {session.client}: {printable(ev.line[:100])}")
        session.counters.count("unknown", False)
        await session.answer(R.I_CAN_BREAK_RULES)
        session.engine.close()
        return
    if ev.pipelined and not isinstance(cmd, Bdat) and (Flag.LAST in spec.flags or not session.pipelining_offered):
        log.info(f"improper command pipelining after {session.where} from {session.client}:"
                 f" {session.pending_input()}")
        session.ill_pipelining = True
        session.state.pipelined = True
        if session.settings.forbid_unauth_pipelining:
            session.counters.count(name, False)
            await session.answer(R.Reply.of(554, "5.5.0", "Error: SMTP protocol synchronization"))
            session.engine.close()
            return
    reply: Reply | None
    if session.access_denied is not None and not isinstance(cmd, Quit):
        reply = Reply.of(503, "5.7.0", f"Error: access denied for {session.client}")
    elif session.ctx.tls.required and session.tls is None and Flag.PRE_TLS not in spec.flags \
            and not isinstance(cmd, Bdat):
        reply = R.Reply.of(530, "5.7.0", "Must issue a STARTTLS command first")
    else:
        if Flag.JUNK in spec.flags:
            if session.junk_count >= session.settings.junk_command_limit:
                session.error_count += 1
            session.junk_count += 1
        reply = await spec.handler(session, cmd)
    if reply is None:
        return
    if reply.code == 334:
        # AUTH goes on; it is counted when the exchange ends (auth_response).
        await session.answer(reply)
        return
    # DATA counts as a success only once its content is queued.
    session.counters.count(name, reply.code < 400 and not isinstance(cmd, Data))
    if reply.code >= 400:
        session.error_count += 1
    await session.answer(reply)
