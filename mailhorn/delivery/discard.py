"""discard(8): pretend to deliver every recipient, logging the next hop as the reason.

Each recipient of the request is reported delivered (``status=sent``) with
the next-hop field as the text (``transport_maps`` entries like
``discard:silently dropped``; a bare ``discard:`` gives the recipient
domain, as trivial-rewrite fills in an empty next hop). The text may start
with an RFC 3463 status code; without one ``2.0.0`` is used. The ``relay=``
field is ``none``. The message content is never read.

Parameters read: none.

Errors: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhorn.config.load import Config
from mailhorn.delivery.error import split_dsn
from mailhorn.delivery.request import Action, DeliveryRequest, RecipientStatus

__all__ = ["DiscardAgent", "make_agent"]


class DiscardAgent:
    """Reports every recipient delivered without delivering anything."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        status, text = split_dsn("2.0.0", request.nexthop)
        if status[0] != "2":
            status = "2.0.0"
        return [RecipientStatus(rcpt, Action.DELIVERED, status, text, relay="none")
                for rcpt in request.recipients]


def make_agent(config: Config, service: str) -> DiscardAgent:
    """The discard agent for a master.cf service."""
    return DiscardAgent(service)
