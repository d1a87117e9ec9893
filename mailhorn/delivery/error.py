"""error(8): bounce or defer every recipient, with the next hop as the reason.

The next-hop field of the request is the reason for non-delivery
(``transport_maps`` entries such as ``error:5.1.1 mailbox unavailable``,
the resolver's ``5.1.1 User unknown in virtual alias table``, or the queue
manager's ``4.3.2 deferred transport``). It may start with an RFC 3463
status code; without one, ``5.0.0`` is used.

The master.cf service name decides what happens, as with Postfix: a
service called ``retry`` defers every recipient (default code ``4.0.0``),
any other (normally ``error``) bounces them. A code of the wrong class is
replaced by the default of the right one (Postfix's bounce_append() and
defer_append() do the same), so an ``error`` service never defers and
``retry`` never bounces. The ``relay=`` field is ``none``.

Parameters read: none.

Errors: none; every request gets one status per recipient.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailhorn.config.load import Config
from mailhorn.delivery.request import Action, DeliveryRequest, RecipientStatus

__all__ = ["ErrorAgent", "dsn_prefix_length", "make_agent", "split_dsn"]

#: class.subject.detail: class 2, 4 or 5, then one to three digits twice (RFC 3463 §2).
_DSN_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)")


def dsn_prefix_length(text: str) -> int:
    """Length of a valid status code at the start of ``text`` (Postfix's dsn_valid(); 0 if none)."""
    match = _DSN_RE.match(text)
    return match.end() if match else 0


def split_dsn(default: str, text: str) -> tuple[str, str]:
    """(status, text): the text's own leading code, else ``default`` (Postfix's dsn_split())."""
    length = dsn_prefix_length(text)
    if not length:
        return default, text
    return text[:length], text[length:].lstrip()

#: The service name that defers instead of bouncing (Postfix's MAIL_SERVICE_RETRY).
RETRY_SERVICE = "retry"


class ErrorAgent:
    """Bounces (service ``error``) or defers (service ``retry``) whole requests."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.defer = service == RETRY_SERVICE

    def outcome(self, nexthop: str) -> tuple[Action, str, str]:
        """(action, status, text) for a request with this next hop."""
        default = "4.0.0" if self.defer else "5.0.0"
        status, text = split_dsn(default, nexthop)
        wanted = "4" if self.defer else "5"
        if status[0] != wanted:
            status = default
        return (Action.DEFERRED if self.defer else Action.BOUNCED), status, text

    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        action, status, text = self.outcome(request.nexthop)
        return [RecipientStatus(rcpt, action, status, text, relay="none") for rcpt in request.recipients]


def make_agent(config: Config, service: str) -> ErrorAgent:
    """The error agent for a master.cf service (``error`` bounces, ``retry`` defers)."""
    return ErrorAgent(service)
