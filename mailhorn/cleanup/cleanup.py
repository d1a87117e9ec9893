"""cleanup(8): turns one streamed message into one complete, durable queue file.

:class:`Cleanup` implements :class:`mailhorn.runtime.CleanupService`. A
session receives the message in chunks (``write``; CRLF or LF line ends,
any chunking, dot-unstuffed), and at ``finish`` commits the queue file and
says what happened (:class:`~mailhorn.cleanup.request.CleanupResult`).

What happens to the content, in Postfix's order:

1. A ``Received:`` header is put first (smtpd's form, or pickup's for local
   submission), after any access(5) ``PREPEND`` headers from smtpd; these go
   through the header checks like the client's own headers, as in Postfix
   (so ``/^Received:/ HOLD`` holds every message).
2. The header block is read line by line; folded lines are joined into one
   logical header for the checks, at most ``header_size_limit`` bytes of
   it are kept (the rest is dropped, never refused); lines longer than
   ``line_length_limit`` are cut into pieces as Postfix's record reader
   does. ``Received:`` headers are counted against ``hopcount_limit``
   (``554 5.4.0 Error: too many hops``). ``message_drop_headers`` are
   removed; ``sendmail -t`` takes recipients from ``To:``/``Cc:``/``Bcc:``
   (the ``Resent-`` ones when present).
3. Where the message lacks them, ``(Resent-)Message-Id:``, ``Date:``,
   ``From:`` and ``undisclosed_recipients_header`` are added at the end of
   the header block — for local submission always, for SMTP mail when
   ``always_add_missing_headers = yes`` or the client is in
   ``local_header_rewrite_clients``.
4. The body is streamed to the queue file; ``body_checks`` see each line
   (MIME-aware, at most ``body_checks_size_limit`` bytes per part) and
   MIME part headers go to ``mime_header_checks``/``nested_header_checks``.
5. ``finish`` writes the recipients, commits durably (``acommit``) into
   ``incoming/`` or, for a held message, straight into ``hold/``, and
   answers. A write or fsync failure becomes the queue's 451/452 reply,
   never a success.

Memory is bounded: only the current logical header, the message's own
header block (up to ``header_size_limit``) and one line piece are held.

Queue file layout: the envelope (sender, attributes, content filter) is
written once the message's own headers are known, so a ``FILTER`` from
header_checks lands in it; recipients are written after the content, in the
extracted segment, so that ``REDIRECT`` and ``BCC`` from header or body
checks can still change them. A ``REDIRECT`` replaces the recipients with
its address here (Postfix stores it for the queue manager, with the same
effect on delivery).

Addresses (:mod:`mailhorn.cleanup.mapping`), as Postfix's cleanup does:
the envelope sender and recipients are completed in the ``local`` rewrite
context; canonical maps and masquerading change them, and virtual alias
expansion (``virtual_alias_maps``) replaces each recipient by the list it
stands for, unless ``receive_override_options`` has
``no_address_mappings``; the message's sender and recipient headers are
rewritten in the header context (``local`` for local submission and
``local_header_rewrite_clients``, else ``remote`` when
``remote_header_rewrite_domain`` is set). A virtual alias table that
fails refuses the message with ``451 4.3.0``, an expansion beyond
``virtual_alias_expansion_limit``/``virtual_alias_recursion_limit`` with
``451 4.6.0 Alias expansion error``; either way no queue file is kept and
the client tries again. Duplicate recipients are written once.
``no_header_body_checks`` is honoured here; ``no_milters`` and
``no_unknown_recipient_checks`` concern smtpd. Notices from the mail system
itself (``Source.BOUNCE``) skip the header and body checks but are mapped,
as Postfix's internal mail is.

Parameters read: ``myhostname``, ``myorigin``, ``mail_name``,
``header_size_limit``, ``line_length_limit``, ``hopcount_limit``,
``body_checks_size_limit``, ``header_checks``, ``mime_header_checks``,
``nested_header_checks``, ``body_checks``, ``mime_nesting_limit``,
``mime_boundary_length_limit``, ``disable_mime_input_processing``,
``always_add_missing_headers``, ``local_header_rewrite_clients``,
``message_drop_headers``, ``undisclosed_recipients_header``,
``header_from_format``, ``enable_original_recipient``,
``enable_long_queue_ids``, ``receive_override_options``, ``content_filter``,
``smtpd_sasl_authenticated_header``, ``smtpd_tls_received_header``,
``detect_8bit_encoding_header``, ``delay_warning_time`` (when above
zero, the envelope gets a warning-time record: arrival plus that time), and
the address mapping parameters of :mod:`mailhorn.cleanup.mapping`.

Log lines (Postfix's): ``QUEUEID: message-id=<...>``, the header/body check
action lines of :mod:`mailhorn.cleanup.headers`, ``warning: QUEUEID:
message rejected: hopcount exceeded``.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Final

from mailhorn import log
from mailhorn.cleanup.body import ContentState
from mailhorn.cleanup.headers import ContentChecks
from mailhorn.address.virtual import VirtualAliasError
from mailhorn.cleanup.local_clients import LocalClients
from mailhorn.cleanup.mapping import AddressMapping
from mailhorn.cleanup.request import CleanupRequest, CleanupResult, Outcome, SmtpdActions, Source
from mailhorn.cleanup.settings import Settings
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.queue.queuefile import DsnNotify, DsnRet
from mailhorn.queue.store import QueueStore, QueueWriteError, QueueWriter
from mailhorn.smtp.reply import Reply
from mailhorn.tables.base import TableRetry

#: One recipient to write: (address, DSN ORCPT, NOTIFY, original recipient).
Recipient = tuple[str, "str | None", "DsnNotify | None", "str | None"]

#: Reply when a check table cannot be read (Postfix: CLEANUP_STAT_WRITE).
LOOKUP_FAILED: Final = Reply.of(451, "4.3.0", "Error: queue file write error")
#: Reply when no recipient is left (Postfix's CLEANUP_STAT_RCPT text).
NO_RECIPIENTS: Final = Reply.of(550, "5.1.0", "Error: no recipients specified")

class Cleanup:
    """The cleanup service: one per configuration, shared by every sender of mail."""

    def __init__(self, config: Config, queue_store: QueueStore) -> None:
        self.config = config
        self.store = queue_store
        self.settings = Settings.from_config(config)
        self.checks = ContentChecks.from_config(config)
        self.local_clients = LocalClients(config)
        self.mapping = AddressMapping(config)
        #: postconf(5) delay_warning_time; 0 means no delay warnings.
        self.delay_warning = max(config.time("delay_warning_time"), 0)

    def open(self, request: CleanupRequest) -> CleanupSession:
        """Start one message (see :class:`CleanupSession`)."""
        return CleanupSession(self, request)


class CleanupSession:
    """One message on its way into the queue (mailhorn.runtime.CleanupSession)."""

    def __init__(self, service: Cleanup, request: CleanupRequest) -> None:
        self._svc = service
        self.request = request
        self.settings = service.settings
        self.arrival = time.time()
        self._writer: QueueWriter | None = None
        self.queue_id: str | None = None
        self._partial = bytearray()
        self._state: ContentState | None = None
        self._closed = False
        self._error: QueueWriteError | TableRetry | None = None
        self._maps = True
        self._late_filter: str | None = None

    # -- protocol ---------------------------------------------------------
    async def start(self) -> str:
        """Create the queue file now and return its queue ID (for early logging)."""
        if self._writer is None:
            self._writer = await self._svc.store.awriter(self.arrival)
            self.queue_id = self._writer.queue_id
            self._state = self._new_state(self._writer)
            try:
                self._state.sender = self._svc.mapping.envelope(
                    self._state.sender, "envelope_sender", maps=self._maps)
                self._state.begin()
            except TableRetry as exc:
                self._error = exc
                self._closed = True
        return self._writer.queue_id

    async def write(self, data: bytes) -> None:
        """Add content; complete lines are processed at once, the rest waits."""
        if self._closed:
            return
        await self.start()
        state = self._state
        assert state is not None
        self._partial += data
        limit = self.settings.line_length_limit
        start = 0
        buf = self._partial
        try:
            while True:
                if state.can_bulk():
                    start = self._bulk(state, buf, start)
                nl = buf.find(b"\n", start, start + limit + 2)
                if nl < 0:
                    if len(buf) - start <= limit + 1:
                        break
                    # A piece of a line longer than line_length_limit (REC_TYPE_CONT).
                    state.line(bytes(buf[start:start + limit]), False)
                    start += limit
                    continue
                end = nl - 1 if nl > start and buf[nl - 1] == 0x0D else nl
                state.line(bytes(buf[start:end]), True)
                start = nl + 1
        except TableRetry as exc:
            self._error = exc
            self._closed = True
        del buf[:start]
        try:
            await state.drain()
        except QueueWriteError as exc:
            self._error = exc
            self._closed = True

    @staticmethod
    def _bulk(state: ContentState, buf: bytearray, start: int) -> int:
        """Pass complete body lines through in one piece; returns the new start.

        Stops before a line that starts with ``--`` while MIME boundaries are
        open (it may be a boundary) and before the last, incomplete line.
        """
        if state.watches_boundaries():
            if buf.startswith(b"--", start):
                return start
            at = buf.find(b"\n--", start)
            end = at + 1 if at >= 0 else buf.rfind(b"\n", start) + 1
        else:
            end = buf.rfind(b"\n", start) + 1
        if end > start:
            state.body_bulk(bytes(buf[start:end]))
            return end
        return start

    def add_actions(self, actions: SmtpdActions) -> None:
        """Actions chosen after the content started (smtpd_end_of_data_restrictions).

        HOLD, DISCARD and REDIRECT take effect at :meth:`finish` as if they
        had come with the request; the last FILTER and REDIRECT win. A FILTER
        is recorded after the content (the envelope may already be written),
        as Postfix's smtpd sends it in the extracted segment. PREPEND is
        ignored: the headers are written already, and Postfix refuses the
        action at this stage too (smtpd logs the warning).
        """
        if self._closed:
            return
        old = self.request.actions
        merged = replace(
            old,
            hold=actions.hold if actions.hold is not None else old.hold,
            discard=actions.discard if actions.discard is not None else old.discard,
            filter=actions.filter or old.filter,
            redirect=actions.redirect or old.redirect,
        )
        self.request = replace(self.request, actions=merged)
        if self._state is not None:
            self._state.req = self.request
        if actions.filter:
            self._late_filter = actions.filter

    async def finish(self) -> CleanupResult:
        """End of content: run the end-of-message steps, commit, answer."""
        await self.start()
        state = self._state
        writer = self._writer
        assert state is not None and writer is not None
        self._closed = True
        if isinstance(self._error, QueueWriteError):
            return self._failed(self._error.reply, f"{self.queue_id}: {self._error}")
        if self._error is not None:
            return self._failed(LOOKUP_FAILED, f"{self.queue_id}: {self._error}")
        if self._partial:
            tail = bytes(self._partial)
            if tail.endswith(b"\r"):
                tail = tail[:-1]
            state.line(tail, True)
            self._partial.clear()
        try:
            state.end()
            await state.drain()
        except TableRetry as exc:
            return self._failed(LOOKUP_FAILED, f"{self.queue_id}: {exc}")
        except QueueWriteError as exc:
            return self._failed(exc.reply, f"{self.queue_id}: {exc}")
        if state.reply is not None:
            writer.abort()
            return CleanupResult(Outcome.REJECTED, self.queue_id, state.reply)
        if state.discard or self.request.actions.discard is not None:
            writer.abort()
            return CleanupResult(Outcome.DISCARDED, self.queue_id)
        try:
            recipients = self._map_recipients(state)
        except TableRetry as exc:
            return self._failed(LOOKUP_FAILED, f"{self.queue_id}: {exc}")
        except VirtualAliasError as exc:
            return self._failed(Reply.of(451, exc.status, exc.reason),
                                f"{self.queue_id}: virtual alias expansion: {exc.reason}")
        if not recipients:
            writer.abort()
            return CleanupResult(Outcome.REJECTED, self.queue_id, NO_RECIPIENTS)
        # A held message is committed straight into hold: one directory
        # fsync, where a move after the commit would cost two more.
        held = state.hold or self.request.actions.hold is not None
        try:
            writer.end_content()
            if self._late_filter:
                writer.content_filter(self._late_filter)
            for address, orcpt, notify, original in recipients:
                writer.recipient(address, orig_rcpt=original, dsn_orcpt=orcpt, dsn_notify=notify)
            queue_id = await writer.acommit("hold" if held else "incoming")
        except QueueWriteError as exc:
            return self._failed(exc.reply, f"{self.queue_id}: {exc}")
        return CleanupResult(Outcome.QUEUED, queue_id, held=held)

    async def abort(self) -> None:
        """Give the message up; the temporary queue file is removed."""
        self._closed = True
        if self._writer is not None:
            self._writer.abort()

    # -- helpers ------------------------------------------------------------
    def _map_recipients(self, state: ContentState) -> list[Recipient]:
        """The recipients to write: rewritten, canonicalized, virtual-aliased, each once.

        A ``REDIRECT`` target is written as given (Postfix hands it to the
        queue manager unmapped). Raises TableRetry or VirtualAliasError.
        """
        recipients = state.final_recipients()
        if state.redirect or self.request.actions.redirect:
            return recipients
        mapping = self._svc.mapping
        dups = mapping.duplicates()
        expand = self._maps and bool(mapping.virtual)
        out: list[Recipient] = []
        for address, orcpt, notify, original in recipients:
            mapped = mapping.envelope(address, "envelope_recipient", maps=self._maps)
            finals = mapping.expand(mapped) if expand else [mapped]
            for final in finals:
                # Postfix's been_here keys: recipient and NOTIFY after expansion,
                # the whole recipient description without it.
                key = (f"{final}\n{int(notify or 0)}" if expand
                       else f"{final}\n{int(notify or 0)}\n{orcpt or ''}\n{original or ''}")
                if dups.first_time(key):
                    out.append((final, orcpt, notify, original))
        return out

    def _failed(self, reply: Reply, why: str) -> CleanupResult:
        log.warning(why, program="cleanup")
        if self._writer is not None:
            self._writer.abort()
        return CleanupResult(Outcome.REJECTED, self.queue_id, reply)

    def _new_state(self, writer: QueueWriter) -> ContentState:
        req = self.request
        settings = self.settings
        options = (frozenset(o.lower() for o in req.receive_override_options)
                   if req.receive_override_options is not None else settings.override_options)
        internal = req.source is Source.BOUNCE
        checks = (ContentChecks.none() if "no_header_body_checks" in options or internal
                  else self._svc.checks)
        self._maps = "no_address_mappings" not in options
        local = req.source is not Source.SMTPD
        local_client = local or self._svc.local_clients.match(req.client)
        add_headers = local_client or settings.always_add
        mapping = self._svc.mapping
        context = mapping.header_context(local_client)
        maps = self._maps

        def header_map(text: str) -> str:
            assert context is not None
            return mapping.header(text, context, maps=maps)

        content_filter = req.content_filter if req.content_filter is not None else settings.content_filter
        if req.actions.filter:
            content_filter = req.actions.filter
        return ContentState(
            settings=settings, request=req, writer=writer, checks=checks,
            add_headers=add_headers, rewrite_local=add_headers,
            content_filter=content_filter, envelope=self._write_envelope,
            arrival=self.arrival, uid=req.submit_uid if req.submit_uid is not None else os.getuid(),
            header_map=header_map if context is not None else None,
        )

    def _write_envelope(self, writer: QueueWriter, state: ContentState) -> None:
        """Envelope records, written once the message's own headers are known."""
        req = self.request
        client = req.client
        writer.create_time(int(time.time()))
        if self._svc.delay_warning > 0:
            # The warning-time record the queue manager reads (and zeroes once
            # the delay notice is sent), as Postfix's cleanup writes it with
            # the arrival time: arrival plus delay_warning_time.
            writer.warn_time(int(self.arrival) + self._svc.delay_warning)
        if state.content_filter:
            writer.content_filter(state.content_filter)
        pairs = [("rewrite_context", "local" if state.rewrite_local else "remote")]
        if req.source is Source.SMTPD:
            origin = f"{client.name}[{client.addr}]"
            pairs += [
                ("log_client_name", client.name), ("log_client_address", client.addr),
                ("log_client_port", client.port), ("log_message_origin", origin),
                ("log_helo_name", client.helo), ("log_protocol_name", client.protocol),
                ("client_name", client.name), ("reverse_client_name", client.reverse_name or client.name),
                ("client_address", client.addr), ("client_port", client.port),
                ("helo_name", client.helo), ("protocol_name", client.protocol),
                ("sasl_method", client.sasl_method), ("sasl_username", client.sasl_username),
                ("sasl_sender", client.sasl_sender), ("log_ident", client.log_ident),
            ]
        pairs.append(("encoding", state.encoding()))
        if req.smtputf8:
            pairs.append(("smtputf8", "1"))
        writer.attributes([(name, value) for name, value in pairs if value])
        writer.sender(state.sender, req.sender_fullname)
        ret = {"FULL": DsnRet.FULL, "HDRS": DsnRet.HDRS}.get((req.dsn_ret or "").upper())
        if req.dsn_envid is not None or ret is not None:
            writer.dsn(req.dsn_envid, ret)


def override_options(value: str) -> frozenset[str]:
    """``receive_override_options`` as a set of lower-case option names."""
    return frozenset(o.lower() for o in split_list(value))
