"""What the queue manager gives a delivery agent, and what the agent gives back.

The queue manager (qmgr) groups a message's pending recipients by
(transport, nexthop) after address resolution and hands each group to the
agent of that transport as a :class:`DeliveryRequest`. The agent tries the
delivery and answers with one :class:`RecipientStatus` per recipient; it
never touches queue state itself (design.md §2): qmgr marks recipients done,
records defer reasons, schedules retries and asks bounce for DSNs.

Content: ``open_content()`` returns a fresh iterator over the message as
cleanup stored it (headers and body with LF line ends), so an agent that
must retry within one request (next MX) can read it again. A large message
streams in chunks and is never loaded whole; one of at most
:data:`REUSED_CONTENT_LIMIT` bytes is read once per request and kept
(:class:`ReusedContent`), because agents read small messages more than once
(virtual(8) and local(8) scan the headers for ``Delivered-To:`` before
they deliver).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol


class Action(enum.Enum):
    """What became of one recipient (Postfix's delivery status actions)."""

    DELIVERED = "delivered"
    """Done: the message reached its destination (``status=sent``)."""
    DEFERRED = "deferred"
    """Try again later (``status=deferred``; a 4.X.X status)."""
    BOUNCED = "bounced"
    """Permanent failure: return to sender (``status=bounced``; a 5.X.X status)."""
    EXPANDED = "expanded"
    """Done by handing the message on (aliases, .forward); counts as delivered."""
    RELAYED = "relayed"
    """Delivered to a system that does not give delivery notices (RFC 3464 §2.3.3)."""


@dataclass(frozen=True)
class DeliveryRecipient:
    """One recipient of a request, as the queue file holds it."""

    address: str
    """The address to deliver to (after virtual alias expansion and resolution)."""
    offset: int
    """The recipient record's offset in the queue file (for marking it done)."""
    orig_rcpt: str | None = None
    """The address as the client gave it (``X-Original-To:``)."""
    dsn_orcpt: str | None = None
    dsn_notify: frozenset[str] = frozenset()
    """NOTIFY= values (``SUCCESS``, ``FAILURE``, ``DELAY``, ``NEVER``)."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, address: str, offset: int, orig_rcpt: str | None = None, dsn_orcpt: str | None = None,
                 dsn_notify: frozenset[str] = frozenset()) -> None:
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "orig_rcpt", orig_rcpt)
        object.__setattr__(self, "dsn_orcpt", dsn_orcpt)
        object.__setattr__(self, "dsn_notify", dsn_notify)


#: Content of at most this many bytes is read once per request (ReusedContent).
REUSED_CONTENT_LIMIT: Final = 64 * 1024


class ReusedContent:
    """An ``open_content`` that reads a small message once and replays it.

    ``open_content`` is the underlying opener (a queue file read from the
    start); ``size`` the content size from the envelope. Above
    :data:`REUSED_CONTENT_LIMIT` every call opens anew, so memory stays
    bounded whatever the message size.
    """

    def __init__(self, open_content: Callable[[], Iterator[bytes]], size: int) -> None:
        self._open = open_content
        self._size = size
        self._chunks: list[bytes] | None = None

    def __call__(self) -> Iterator[bytes]:
        if self._size > REUSED_CONTENT_LIMIT:
            return self._open()
        return self._replay()

    def _replay(self) -> Iterator[bytes]:
        # A generator, so the file is read at the first next() (an agent may
        # take the iterator in the event loop and step it in a thread).
        if self._chunks is None:
            self._chunks = list(self._open())
        yield from self._chunks


@dataclass(frozen=True)
class DeliveryRequest:
    """One delivery attempt of one message to recipients sharing transport and nexthop."""

    queue_id: str
    queue_name: str
    transport: str
    """The master.cf service name (``local``, ``virtual``, ``smtp``, ``amavis``, ...)."""
    nexthop: str
    """Transport-specific destination (``example.com``, ``[10.0.0.1]:2525``, ``unix:/path``)."""
    sender: str
    recipients: tuple[DeliveryRecipient, ...]
    open_content: Callable[[], Iterator[bytes]]
    content_size: int
    arrival_time: float
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Client facts from the queue file (``client_name``, ``client_address``, ``helo_name``, ...)."""
    dsn_envid: str | None = None
    dsn_ret: str | None = None
    """``FULL`` or ``HDRS``."""
    content_filter: str | None = None
    """Set when this is the content_filter hop of the message."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, queue_id: str, queue_name: str, transport: str, nexthop: str, sender: str,
                 recipients: tuple[DeliveryRecipient, ...], open_content: Callable[[], Iterator[bytes]],
                 content_size: int, arrival_time: float, attributes: Mapping[str, str] | None = None,
                 dsn_envid: str | None = None, dsn_ret: str | None = None, content_filter: str | None = None) -> None:
        object.__setattr__(self, "queue_id", queue_id)
        object.__setattr__(self, "queue_name", queue_name)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "nexthop", nexthop)
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "recipients", recipients)
        object.__setattr__(self, "open_content", open_content)
        object.__setattr__(self, "content_size", content_size)
        object.__setattr__(self, "arrival_time", arrival_time)
        object.__setattr__(self, "attributes", attributes if attributes is not None else {})
        object.__setattr__(self, "dsn_envid", dsn_envid)
        object.__setattr__(self, "dsn_ret", dsn_ret)
        object.__setattr__(self, "content_filter", content_filter)


@dataclass(frozen=True)
class RecipientStatus:
    """The outcome for one recipient, with what Postfix logs for it.

    ``dsn`` is the RFC 3463 status (``2.0.0``, ``4.4.1``, ``5.1.1``);
    ``text`` is the explanation logged in ``status=... (TEXT)`` and put in the
    DSN's Diagnostic-Code; ``relay`` is the ``relay=`` log field
    (``local``, ``virtual``, ``mx.example.com[192.0.2.1]:25``, ``none``).
    ``remote_reply`` keeps a remote server's reply for the DSN (``smtp; 550 ...``).
    """

    recipient: DeliveryRecipient
    action: Action
    dsn: str
    text: str
    relay: str = "none"
    remote_reply: str | None = None
    delays: tuple[float, float, float, float] | None = None
    """``delays=a/b/c/d`` parts the agent measured (c: connection setup, d: transmission)."""
    program: str | None = None
    """The agent that delivered, when not the request's own (local(8) passing a
    recipient to ``mailbox_transport``): Postfix logs the status line under the
    program that made the delivery (``postfix/lmtp``)."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, recipient: DeliveryRecipient, action: Action, dsn: str, text: str,
                 relay: str = "none", remote_reply: str | None = None,
                 delays: tuple[float, float, float, float] | None = None, program: str | None = None) -> None:
        object.__setattr__(self, "recipient", recipient)
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "dsn", dsn)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "relay", relay)
        object.__setattr__(self, "remote_reply", remote_reply)
        object.__setattr__(self, "delays", delays)
        object.__setattr__(self, "program", program)

    @property
    def done(self) -> bool:
        """The recipient needs no further delivery attempt."""
        return self.action is not Action.DEFERRED


class DeliveryAgent(Protocol):
    """A delivery agent (local, virtual, smtp, lmtp, pipe, error, discard).

    Each agent module offers ``make_agent(config, service) -> DeliveryAgent``,
    where ``config`` already carries the master.cf service's ``-o`` overrides
    and ``service`` is its name (``smtp``, ``relay``, ``amavis``, ...).
    """

    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        """Try the delivery; one status per recipient of the request, in order."""
        ...
