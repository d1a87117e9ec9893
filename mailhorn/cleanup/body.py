"""The line-by-line content state of one cleanup session.

:class:`ContentState` receives the message one line (or line piece) at a
time from :class:`~mailhorn.cleanup.cleanup.CleanupSession`, keeps track of
where it is (the message's headers, a MIME part's headers, an attached
message's headers, a body), runs the checks, applies their actions, adds the
missing headers and produces the bytes of the queue file's content, which
``drain`` hands to the queue writer. See :mod:`mailhorn.cleanup.cleanup` for
the order of steps and the parameters; the check tables and log format are in
:mod:`mailhorn.cleanup.headers`, the MIME structure in
:mod:`mailhorn.cleanup.mime`.

Errors: :class:`~mailhorn.tables.base.TableRetry` when a check table fails
(cleanup answers 451); the verdicts of the checks are kept in ``reply``,
``discard``, ``hold``, ``redirect``, ``bcc``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Final

from mailhorn import log
from mailhorn.address.errors import AddressError
from mailhorn.address.header import parse_address_list
from mailhorn.cleanup.headers import (
    Act,
    Action,
    BadAction,
    ChecksTable,
    ContentChecks,
    HeaderClass,
    LogContext,
    header_name,
    parse_action,
)
from mailhorn.cleanup.mime import MimeTracker, Next
from mailhorn.cleanup.received import (
    from_header,
    mail_date,
    message_id,
    pickup_received,
    smtpd_received,
)
from mailhorn.cleanup.request import CleanupRequest, Source
from mailhorn.cleanup.settings import Settings, notify_flags, qualify
from mailhorn.queue.queuefile import DsnNotify
from mailhorn.queue.store import QueueWriter
from mailhorn.smtp.reply import Reply

#: Postfix's replies for cleanup verdicts (cleanup_stat_detail + smtpd texts).
TOO_MANY_HOPS: Final = Reply.of(554, "5.4.0", "Error: too many hops")
CONTENT_REJECTED_DSN: Final = "5.7.1"
CONTENT_REJECTED_TEXT: Final = "message content rejected"

#: Headers whose addresses ``sendmail -t`` takes as recipients.
_RCPT_HEADERS: Final = ("to", "cc", "bcc")
_VISIBLE_RCPT: Final = frozenset({"to", "cc", "resent-to", "resent-cc"})


class Phase(enum.Enum):
    """Where the next line goes."""

    PRIMARY_HEADERS = "primary"
    PART_HEADERS = "part"
    NESTED_HEADERS = "nested"
    BODY = "body"


#: The header_checks class of each header phase (primary, MIME part, nested message).
_HEADER_CLASS: Final = {Phase.PRIMARY_HEADERS: HeaderClass.PRIMARY, Phase.PART_HEADERS: HeaderClass.MULTIPART,
                 Phase.NESTED_HEADERS: HeaderClass.NESTED}


def _is_dsn(text: str) -> bool:
    parts = text.split(".")
    return (len(parts) == 3 and parts[0] in ("2", "4", "5")
            and all(p.isdigit() and 1 <= len(p) <= 3 for p in parts[1:]))


def reject_reply(text: str) -> Reply:
    """The reply for a REJECT action (Postfix's dsn_prepend + CLEANUP_STAT_CONT/DEFER)."""
    reason = text or CONTENT_REJECTED_TEXT
    first, _, rest = reason.partition(" ")
    if _is_dsn(first):
        dsn, reason = first, rest
    else:
        dsn = CONTENT_REJECTED_DSN
    if dsn[0] == "4":
        return Reply.of(451, dsn, reason or CONTENT_REJECTED_TEXT)
    if dsn[0] != "5":
        dsn = "4" + dsn[1:]
        return Reply.of(451, dsn, reason or CONTENT_REJECTED_TEXT)
    return Reply.of(550, dsn, reason or CONTENT_REJECTED_TEXT)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class ContentState:
    """The content state machine (see module doc)."""

    def __init__(self, *, settings: Settings, request: CleanupRequest, writer: QueueWriter,
                 checks: ContentChecks, add_headers: bool, rewrite_local: bool,
                 content_filter: str, envelope: Callable[[QueueWriter, ContentState], None],
                 arrival: float, uid: int, header_map: Callable[[str], str] | None = None) -> None:
        self.s = settings
        self.req = request
        self.writer = writer
        self.queue_id = writer.queue_id
        self.checks = checks
        self.add_headers = add_headers
        self.rewrite_local = rewrite_local
        self.content_filter = content_filter
        self._envelope = envelope
        self.arrival = arrival
        self.uid = uid
        self.header_map = header_map
        """Rewrites the addresses of one primary header (cleanup's address mapping)."""
        local = request.source is not Source.SMTPD
        self.sender = qualify(request.sender, settings.myorigin) if local else request.sender
        self.recipients = [
            (qualify(r.address, settings.myorigin) if local else r.address, r)
            for r in request.recipients
        ]
        self.mime = MimeTracker(nesting_limit=settings.mime_nesting_limit,
                                boundary_length_limit=settings.mime_boundary_length_limit,
                                enabled=not settings.mime_disabled)
        self.phase = Phase.PRIMARY_HEADERS
        self._header: list[str] = []
        #: The name of the header in ``_header`` (None: not known yet).
        self._header_name: str | None = None
        self._header_size = 0
        self._continued = False
        self._primary: list[bytes] = []
        self._primary_size = 0
        self._envelope_done = False
        self._out = bytearray()
        self.filtering = True
        self.reply: Reply | None = None
        self.discard = False
        self.hold = False
        self.redirect: str | None = None
        self.bcc: list[str] = []
        self.hop_count = 0
        self.headers_seen: set[str] = set()
        self.resent = False
        self.extracted: list[str] = []
        self.resent_extracted: list[str] = []
        self._body_checked = 0
        # cleanup_act_log shows the last envelope recipient seen (state->recip).
        last = self.recipients[-1][0] if self.recipients else None
        client = request.client
        if local:
            self.log_ctx = LogContext("local", self.sender, last, None, None)
        else:
            self.log_ctx = LogContext(f"{client.name}[{client.addr}]", self.sender, last,
                                      client.protocol or None, client.helo or None)

    # -- entry points ---------------------------------------------------------
    def begin(self) -> None:
        """Feed the headers that precede the client's content (PREPEND, Received:)."""
        for text in self.req.actions.prepend:
            for piece in text.split("\n"):
                self.line(_encode(piece), True)
        if self.req.source is Source.SMTPD:
            lines = smtpd_received(
                self.req.client, myhostname=self.s.myhostname, mail_name=self.s.mail_name,
                queue_id=self.queue_id, recipients=[r.address for r in self.req.recipients],
                arrival=self.arrival,
                sasl_header=_given(self.req.client.sasl_authenticated_header, self.s.sasl_header),
                tls_header=_given(self.req.client.tls_received_header, self.s.tls_header))
        elif self.req.source in (Source.BOUNCE, Source.FORWARD):
            # Notices made by the mail system itself, and mail local(8)
            # re-submits (Postfix's forward.c), name no submitting user.
            lines = [f"Received: by {self.s.myhostname} ({self.s.mail_name})",
                     f"\tid {self.queue_id}; {mail_date(self.arrival)}"]
        else:
            lines = pickup_received(myhostname=self.s.myhostname, mail_name=self.s.mail_name,
                                    queue_id=self.queue_id, uid=self.uid, arrival=self.arrival)
        for text in lines:
            self.line(_encode(text), True)

    def line(self, data: bytes, complete: bool) -> None:
        """One line without its line end (``complete``) or a piece of a long one."""
        if self.phase is Phase.BODY:
            self._body_line(data, complete)
        else:
            self._header_line(data, complete)

    def end(self) -> None:
        """End of content: close an open header block."""
        if self.phase is not Phase.BODY:
            self._flush_header()
            self._end_header_block()

    async def drain(self) -> None:
        """Hand the produced bytes to the queue writer."""
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            await self.writer.awrite(data)

    # -- headers -----------------------------------------------------------
    def _header_line(self, data: bytes, complete: bool) -> None:
        text = _decode(data)
        if self._continued:
            # The rest of a line longer than line_length_limit.
            self._append_header(text, join="")
        elif not text:
            self._flush_header()
            self._end_header_block()
            return
        elif text[0] in " \t" and self._header:
            self._append_header(text, join="\n")
        elif (name := header_name(text)) is not None:
            self._flush_header()
            self._header = [text]
            self._header_name = name
            self._header_size = len(text)
        else:
            # Not a header: the header block ends here and this is body text
            # (Postfix then writes the empty separator line itself).
            self._flush_header()
            self._end_header_block()
            self._body_line(data, complete)
            return
        self._continued = not complete

    def _append_header(self, text: str, join: str) -> None:
        if not self._header:
            self._header = [text]
            self._header_name = None
            self._header_size = len(text)
            return
        room = self.s.header_size_limit - self._header_size
        if room <= 0:
            return
        piece = (join + text)[:room]
        self._header_size += len(piece)
        if join:
            if piece.startswith("\n"):
                self._header.append(piece[1:])
            else:
                self._header[-1] += piece
        else:
            self._header[-1] += piece

    def _flush_header(self) -> None:
        if not self._header:
            return
        text = "\n".join(self._header)
        self._header = []
        self._header_size = 0
        self._continued = False
        self._process_header(text, self._header_name)

    def _process_header(self, text: str, name: str | None) -> None:
        """One logical header; ``name`` as the line that started it gave it (None: find it)."""
        if name is None:
            name = header_name(text) or ""
        lower = name.lower()
        primary = self.phase is Phase.PRIMARY_HEADERS
        output: list[str] = [text]
        if self.filtering:
            table = self.checks.for_header(name, _HEADER_CLASS.get(self.phase, HeaderClass.PRIMARY))
            if table:
                action = self._lookup(table, text)
                if action is not None:
                    output = self._header_action(action, text)
        value = text[len(name):].lstrip(" \t")[1:]
        self.mime.header(name, value)
        if primary:
            if lower == "received":
                self.hop_count += 1
                # Postfix counts Received: only (not Delivered-To:) and refuses
                # at the limit itself (cleanup_header_callback: >= hopcount_limit).
                if self.hop_count >= self.s.hopcount_limit and self.reply is None:
                    log.warning(f"{self.queue_id}: message rejected: hopcount exceeded", program="cleanup")
                    self.reply = TOO_MANY_HOPS
            if lower.startswith("resent-"):
                self.resent = True
            if lower in ("message-id", "resent-message-id") and output == [text]:
                prefix = "resent-" if lower.startswith("resent-") else ""
                log.info(f"{self.queue_id}: {prefix}message-id={value.strip()}", program="cleanup")
            if self.req.extract_recipients and lower in _RCPT_HEADERS + tuple("resent-" + h for h in _RCPT_HEADERS):
                self._extract(lower, value)
            if lower in self.s.drop_headers:
                self.headers_seen.add(lower)
                return
            # Address mapping keeps each header's name: the names are those of
            # the headers before it.
            if output == [text]:
                self.headers_seen.add(lower)
            else:
                for out in output:
                    self.headers_seen.add((header_name(out) or "").lower())
            if self.header_map is not None:
                output = [self.header_map(out) for out in output]
            self._emit_header(output)
        else:
            for out in output:
                self._emit(_encode(out) + b"\n")

    def _extract(self, lower: str, value: str) -> None:
        try:
            addresses = parse_address_list(value, limit=max(self.s.header_size_limit, 1))
        except AddressError:
            return
        target = self.resent_extracted if lower.startswith("resent-") else self.extracted
        for item in addresses:
            if item.address:
                target.append(qualify(item.address, self.s.myorigin))

    def _emit_header(self, lines: list[str]) -> None:
        """Keep the message's own headers until the envelope can be written."""
        for out in lines:
            data = _encode(out) + b"\n"
            if self._envelope_done:
                self._emit(data)
                continue
            self._primary.append(data)
            self._primary_size += len(data)
        if not self._envelope_done and self._primary_size > self.s.header_size_limit:
            # Bounded memory: a huge header block is written through early.
            self._write_envelope()

    def _end_header_block(self) -> None:
        if self.phase is Phase.PRIMARY_HEADERS:
            # Mail refused to an SMTP client, and discarded mail, gets no
            # Message-Id (nor its log line); refused local mail is returned
            # to its sender and keeps the repaired headers, as in Postfix.
            refused = self.reply is not None and self.req.source is Source.SMTPD
            if not (refused or self.discard):
                self._add_missing_headers()
            if not self._envelope_done:
                self._write_envelope()
            self._emit(b"\n")
        else:
            self._emit(b"\n")
        self._continued = False
        nxt = self.mime.end_headers()
        self.phase = Phase.NESTED_HEADERS if nxt is Next.NESTED_HEADERS else Phase.BODY
        self._body_checked = 0

    def _add_missing_headers(self) -> None:
        if not self.add_headers:
            if "message-id" not in self.headers_seen:
                log.info(f"{self.queue_id}: message-id=<>", program="cleanup")
            return
        resent = "Resent-" if self.resent else ""
        key = resent.lower()
        added: list[str] = []
        if key + "message-id" not in self.headers_seen:
            mid = message_id(self.queue_id, self.s.myhostname, time.time(), long_ids=self.s.long_ids)
            added.append(f"{resent}Message-Id: {mid}")
            log.info(f"{self.queue_id}: {key}message-id={mid}", program="cleanup")
        if key + "date" not in self.headers_seen:
            added.append(f"{resent}Date: {mail_date(self.arrival)}")
        if key + "from" not in self.headers_seen:
            fullname = self.req.sender_fullname
            added.append(resent + from_header(self.sender, fullname,
                                              header_from_format=self.s.header_from_format))
        if not (self.headers_seen & _VISIBLE_RCPT) and self.s.undisclosed:
            if header_name(self.s.undisclosed) is None:
                log.warning(f"bad undisclosed_recipients_header header: {self.s.undisclosed}", program="cleanup")
            else:
                added.append(self.s.undisclosed)
        self._emit_header(added)

    def _write_envelope(self) -> None:
        self._envelope(self.writer, self)
        self._envelope_done = True
        for data in self._primary:
            self._emit(data)
        self._primary = []
        self._primary_size = 0

    def encoding(self) -> str:
        """The queue file's ``encoding`` attribute: declared, or guessed from headers."""
        body_type = self.req.body_type.upper()
        if body_type == "8BITMIME":
            return "8bit"
        if self.s.detect_8bit_header and self.mime.saw_8bit_encoding:
            return "8bit"
        if body_type == "7BIT":
            return "7bit"
        return ""

    # -- body ----------------------------------------------------------------
    def _body_line(self, data: bytes, complete: bool) -> None:
        eol = b"\n" if complete else b""
        if not self._continued and data.startswith(b"--"):
            nxt = self.mime.body_line(_decode(data))
            if nxt is Next.PART_HEADERS:
                self._check_body(data, eol)
                self.phase = Phase.PART_HEADERS
                self._continued = not complete
                self._body_checked = 0
                return
            if nxt is Next.BODY:
                self._body_checked = 0
        self._check_body(data, eol)
        self._continued = not complete

    def can_bulk(self) -> bool:
        """Whether body text may pass in bulk: no line needs looking at but boundaries."""
        return (self.phase is Phase.BODY and not self._continued
                and not (self.filtering and self.checks.body
                         and self._body_checked < self.s.body_checks_size_limit))

    def watches_boundaries(self) -> bool:
        """Whether lines starting with ``--`` must still be seen one by one."""
        return self.mime.depth > 0

    def body_bulk(self, data: bytes) -> None:
        """Complete body lines (CRLF or LF) stored without inspection (see can_bulk)."""
        self._emit(data.replace(b"\r\n", b"\n"))

    def _check_body(self, data: bytes, eol: bytes) -> None:
        table = self.checks.body
        if not (self.filtering and table and self._body_checked < self.s.body_checks_size_limit):
            self._emit(data + eol)
            return
        self._body_checked += len(data) + len(eol)
        text = _decode(data)
        action = self._lookup(table, text)
        if action is None:
            self._emit(data + eol)
            return
        for out in self._apply(action, "body", text):
            self._emit(out + eol)

    # -- actions ---------------------------------------------------------------
    def _lookup(self, table: ChecksTable, text: str) -> Action | None:
        value = table.lookup(text)
        if value is None:
            return None
        parsed = parse_action(value, table.name)
        if isinstance(parsed, BadAction):
            log.warning(f"{self.queue_id}: {parsed.warning}", program="cleanup")
            return None
        return parsed

    def _header_action(self, action: Action, text: str) -> list[str]:
        return [_decode(b) for b in self._apply(action, "header", text)]

    def _log_act(self, what: str, klass: str, content: str, text: str) -> None:
        log.info(self.log_ctx.format(self.queue_id, what, klass, content, text), program="cleanup")

    def _apply(self, action: Action, klass: str, text: str) -> list[bytes]:
        """Apply one action to a header or body line; returns what replaces it."""
        act, arg = action.act, action.text
        keep = [_encode(text)]
        if act is Act.REJECT:
            reply = reject_reply(arg)
            if self.reply is None:
                self.reply = reply
            self.filtering = False
            self._log_act("reject", klass, text, f"{reply.status} {reply.text}")
        elif act is Act.WARN:
            self._log_act("warning", klass, text, arg)
        elif act is Act.INFO:
            self._log_act("info", klass, text, arg)
        elif act is Act.HOLD:
            self.hold = True
            self._log_act("hold", klass, text, arg)
        elif act is Act.DISCARD:
            self.discard = True
            self.filtering = False
            self._log_act("discard", klass, text, arg)
        elif act is Act.IGNORE:
            return []
        elif act is Act.PREPEND:
            self._log_act("prepend", klass, text, arg)
            return [_encode(arg), *keep]
        elif act is Act.REPLACE:
            self._log_act("replace", klass, text, arg)
            return [_encode(arg)]
        elif act is Act.REDIRECT:
            self.redirect = arg
            self.filtering = False
            self._log_act("redirect", klass, text, arg)
        elif act is Act.FILTER:
            self._log_act("filter", klass, text, arg)
            if self._envelope_done:
                log.warning(f"{self.queue_id}: FILTER action after the message headers "
                            f"cannot be recorded: {arg}", program="cleanup")
            else:
                self.content_filter = arg
        elif act is Act.BCC:
            self.bcc.append(arg)
            self._log_act("bcc", klass, text, arg)
        return keep

    # -- output ----------------------------------------------------------------
    def _emit(self, data: bytes) -> None:
        if self.reply is not None or self.discard:
            return
        if not self._envelope_done:
            self._primary.append(data)
            self._primary_size += len(data)
            return
        self._out += data

    def final_recipients(self) -> list[tuple[str, str | None, DsnNotify | None, str | None]]:
        """(address, DSN ORCPT, NOTIFY, original recipient) of every recipient to write."""
        original = self.s.original_recipient
        out: list[tuple[str, str | None, DsnNotify | None, str | None]] = []
        seen: set[str] = set()
        redirect = self.redirect or self.req.actions.redirect
        if redirect:
            return [(redirect, None, None, redirect if original else None)]
        for address, rcpt in self.recipients:
            out.append((address, rcpt.orcpt, notify_flags(rcpt.notify),
                        (rcpt.orig_rcpt or address) if original else None))
            seen.add(address)
        if self.req.extract_recipients:
            extra = self.resent_extracted if self.resent_extracted else self.extracted
            for address in extra:
                if address not in seen:
                    seen.add(address)
                    out.append((address, None, None, address if original else None))
        for address in self.bcc:
            out.append((address, None, DsnNotify.NEVER, address if original else None))
        return out


def _given(service_value: bool | None, own: bool) -> bool:
    """The submitting service's setting when it sent one, else cleanup's own."""
    return own if service_value is None else service_value
