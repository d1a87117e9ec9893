"""One mail transaction: the envelope smtpd collects and the stream into cleanup.

A :class:`Transaction` starts at an accepted MAIL FROM, gains recipients
at each accepted RCPT TO, opens a cleanup session when the content starts
(DATA's 354 or the first BDAT chunk) and streams every content chunk into
it as the SMTP engine yields it, so memory stays bounded whatever the
message size (design.md §5 rule 7).  At the end it asks cleanup to commit
and turns the :class:`~mailhorn.cleanup.request.CleanupResult` into the
reply: ``250 2.0.0 Ok: queued as ID`` only once cleanup has returned a
queue ID, that is after the durable commit (design.md §5 rule 6); any
failure on the way gives cleanup's reply or ``451 4.3.0 Error: queue file
write error``, never a 250.

access(5) actions chosen by the restrictions (HOLD, DISCARD, FILTER,
REDIRECT, PREPEND) are gathered into the request's
:class:`~mailhorn.cleanup.request.SmtpdActions`; the last FILTER and
REDIRECT win, as in Postfix. Those chosen at END-OF-MESSAGE
(``smtpd_end_of_data_restrictions``) are handed to the open cleanup session
before ``finish`` (``add_actions``), as Postfix's smtpd sends them after
the content.

The service's own ``content_filter`` and ``receive_override_options``
(main.cf with its master.cf ``-o`` overrides) travel in the request, as
Postfix's smtpd writes its filter record and cleanup flags itself: the
reinjection service of an after-queue filter (``-o content_filter=``)
thereby queues mail that is not filtered again (FILTER_README).

Parameters read: ``content_filter``, ``receive_override_options`` (from the
configuration the caller passes).  Errors: none escape; failures become
replies.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.cleanup.request import (
    CleanupRequest,
    CleanupResult,
    ClientInfo,
    Outcome,
    RecipientRequest,
    SmtpdActions,
    Source,
)
from mailhorn.queue.store import WRITE_ERROR, QueueWriteError
from mailhorn.runtime import CleanupService, CleanupSession, TakesLateActions
from mailhorn.smtp import reply as R
from mailhorn.smtp.commands import MailParams
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd.state import Action

__all__ = ["Transaction", "merge_actions"]

#: What cleanup says when it refuses content without giving its own reply.
CONTENT_REJECTED: Final = Reply.of(550, "5.7.1", "Message content rejected")


class _Startable(Protocol):
    """A cleanup session that can create its queue file up front, so that
    smtpd logs ``QUEUEID: client=...`` before cleanup's own lines."""

    async def start(self) -> str:
        ...


def merge_actions(actions: list[Action]) -> SmtpdActions:
    """Gather access(5) actions into what cleanup applies (WARN is only logged)."""
    hold: str | None = None
    discard: str | None = None
    filter_: str | None = None
    redirect: str | None = None
    prepend: list[str] = []
    for action in actions:
        kind = action.kind.upper()
        if kind == "HOLD":
            hold = action.text
        elif kind == "DISCARD":
            discard = action.text
        elif kind == "FILTER":
            filter_ = action.text
        elif kind == "REDIRECT":
            redirect = action.text
        elif kind == "PREPEND":
            prepend.append(action.text)
    return SmtpdActions(hold=hold, discard=discard, filter=filter_, redirect=redirect, prepend=tuple(prepend))


@dataclass
class Transaction:
    """The envelope and content stream of one message."""

    sender: str
    params: MailParams
    smtputf8: bool
    recipients: list[RecipientRequest] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    cleanup: CleanupSession | None = None
    queue_id: str = ""
    error: Reply | None = None
    error_told: bool = False
    """The client has had ``error`` once (later BDAT chunks are only "Discarded")."""
    receiving: bool = False
    octets: int = 0
    actions_sent: int = 0
    """How many of ``actions`` went to cleanup with the request; later ones follow at the end."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, sender: str, params: MailParams, smtputf8: bool,
                 recipients: list[RecipientRequest] | None = None, actions: list[Action] | None = None,
                 cleanup: CleanupSession | None = None, queue_id: str = "", error: Reply | None = None,
                 error_told: bool = False, receiving: bool = False, octets: int = 0, actions_sent: int = 0) -> None:
        self.sender = sender
        self.params = params
        self.smtputf8 = smtputf8
        self.recipients = recipients if recipients is not None else []
        self.actions = actions if actions is not None else []
        self.cleanup = cleanup
        self.queue_id = queue_id
        self.error = error
        self.error_told = error_told
        self.receiving = receiving
        self.octets = octets
        self.actions_sent = actions_sent

    def request(self, client: ClientInfo, session_actions: list[Action],
                config: Config | None = None) -> CleanupRequest:
        """The envelope for cleanup; ``config`` is the smtpd service's (None: cleanup's own settings)."""
        ret = self.params.ret
        body = self.params.body or ""
        content_filter: str | None = None
        override: tuple[str, ...] | None = None
        if config is not None:
            # postconf(5) content_filter, receive_override_options: the
            # receiving service's values, -o overrides included.
            content_filter = config.get("content_filter").strip()
            override = tuple(o.lower() for o in config.list("receive_override_options"))
        return CleanupRequest(
            source=Source.SMTPD,
            sender=self.sender,
            recipients=tuple(self.recipients),
            client=client,
            dsn_envid=self.params.envid,
            dsn_ret=ret,
            body_type=body,
            smtputf8=self.smtputf8,
            actions=merge_actions([*session_actions, *self.actions]),
            content_filter=content_filter,
            receive_override_options=override,
        )

    async def open(self, service: CleanupService, request: CleanupRequest) -> Reply | None:
        """Start the cleanup session; the reply that refuses the content, or None."""
        self.actions_sent = len(self.actions)
        try:
            self.cleanup = service.open(request)
            # getattr, not isinstance(..., _Startable): a runtime Protocol
            # check costs tens of microseconds, once per message.
            start = getattr(self.cleanup, "start", None)
            if start is not None:
                self.queue_id = await cast(_Startable, self.cleanup).start()
        except QueueWriteError as exc:
            log.warning(f"queue file write error: {exc}")
            await self.abort()
            return exc.reply
        except Exception:
            _log_local_error("cannot open a cleanup session")
            await self.abort()
            return WRITE_ERROR
        self.receiving = True
        return None

    async def write(self, data: bytes) -> None:
        """Pass content on; after a failure, swallow the rest of the message."""
        self.octets += len(data)
        if self.cleanup is None or self.error is not None:
            return
        try:
            await self.cleanup.write(data)
        except QueueWriteError as exc:
            self.error = exc.reply
            await self.abort()
        except Exception:
            _log_local_error("cleanup write failed")
            self.error = WRITE_ERROR
            await self.abort()

    def late_actions(self) -> None:
        """Hand cleanup the actions chosen since the content started (END-OF-MESSAGE).

        As Postfix's smtpd, HOLD, DISCARD, FILTER and REDIRECT go to cleanup
        after the content; a PREPEND cannot be honoured any more (the
        restrictions warn and drop it before it gets here).
        """
        new = self.actions[self.actions_sent:]
        self.actions_sent = len(self.actions)
        if self.cleanup is None or not new:
            return
        actions = merge_actions(new)
        if actions == SmtpdActions(prepend=actions.prepend):
            return  # only WARN/INFO/PREPEND: nothing for cleanup
        if hasattr(self.cleanup, "add_actions"):
            cast(TakesLateActions, self.cleanup).add_actions(SmtpdActions(hold=actions.hold, discard=actions.discard,
                                                  filter=actions.filter, redirect=actions.redirect))
        else:
            log.warning("cleanup cannot take actions after the message content; ignored: "
                        + ", ".join(f"{a.kind} {a.text}" for a in new))

    async def finish(self) -> tuple[Reply, CleanupResult | None]:
        """Commit the message; the reply for the client and cleanup's result."""
        self.receiving = False
        if self.error is not None:
            return self.error, None
        if self.cleanup is None:
            return WRITE_ERROR, None
        self.late_actions()
        session, self.cleanup = self.cleanup, None
        try:
            result = await session.finish()
        except QueueWriteError as exc:
            await _quiet_abort(session)
            return exc.reply, None
        except Exception:
            _log_local_error("cleanup failed")
            await _quiet_abort(session)
            return WRITE_ERROR, None
        if result.outcome is Outcome.QUEUED:
            if not result.queue_id:
                return WRITE_ERROR, result
            self.queue_id = result.queue_id
            return R.queued_as(result.queue_id), result
        if result.outcome is Outcome.DISCARDED:
            # The client is told the message was taken (Postfix's DISCARD).
            if result.queue_id:
                self.queue_id = result.queue_id
                return R.queued_as(result.queue_id), result
            return R.OK, result
        reply = result.reply if result.reply is not None and not result.reply.is_positive else CONTENT_REJECTED
        return reply, result

    async def abort(self) -> None:
        """Give the message up (nothing stays in the queue)."""
        self.receiving = False
        session, self.cleanup = self.cleanup, None
        if session is not None:
            await _quiet_abort(session)


async def _quiet_abort(session: CleanupSession) -> None:
    try:
        await session.abort()
    except Exception:
        _log_local_error("cleanup abort failed")


def _log_local_error(what: str) -> None:
    """Our own fault: log at error level with the traceback (design.md §5 rule 3)."""
    log.error(what + ": " + traceback.format_exc().strip().replace("\n", " | "))
