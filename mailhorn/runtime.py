"""What the master shares with the services running in its process.

Services never reach into each other: smtpd hands messages to cleanup through
the :class:`CleanupService` protocol, counts clients through
:class:`ConnectionCounter` (Postfix's anvil), and nudges the queue manager
through ``wakeup_qmgr``. The master builds one :class:`Runtime` and passes it
to every service it starts; tests build their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mailhorn.cleanup.request import CleanupRequest, CleanupResult, SmtpdActions

if TYPE_CHECKING:
    from mailhorn.queue.store import QueueStore


class CleanupSession(Protocol):
    """One message on its way into the queue."""

    async def write(self, data: bytes) -> None:
        """Add content (dot-unstuffed; CRLF or LF line ends)."""
        ...

    async def finish(self) -> CleanupResult:
        """End of content: run the checks, commit durably, say what happened."""
        ...

    async def abort(self) -> None:
        """Give the message up; nothing is left in the queue."""
        ...


@runtime_checkable
class TakesLateActions(Protocol):
    """A cleanup session that accepts access(5) actions after its content started.

    smtpd_end_of_data_restrictions (and a policy service asked at
    END-OF-MESSAGE) choose HOLD, DISCARD, FILTER or REDIRECT when cleanup
    already has the request; smtpd hands them over before ``finish``, as
    Postfix's smtpd sends them to cleanup after the content. Optional: a
    session without it cannot honour such actions (smtpd logs a warning).
    """

    def add_actions(self, actions: SmtpdActions) -> None:
        """Apply these actions too when the message is finished."""
        ...


class CleanupService(Protocol):
    """Opens cleanup sessions (Postfix's cleanup(8) service)."""

    def open(self, request: CleanupRequest) -> CleanupSession:
        """Start a message with its envelope."""
        ...


class ConnectionCounter(Protocol):
    """Per-client connection and rate counting across services (Postfix's anvil(8))."""

    def connect(self, service: str, client_addr: str) -> tuple[int, int]:
        """Count a new connection; returns (simultaneous connections, connections per time unit)."""
        ...

    def disconnect(self, service: str, client_addr: str) -> None:
        """A connection of this client ended."""
        ...

    def event(self, kind: str, service: str, client_addr: str) -> int:
        """Count a ``message``, ``rcpt``, ``newtls`` or ``auth`` event; returns the rate so far."""
        ...


@dataclass
class Runtime:
    """Shared facilities of one master process."""

    queue: QueueStore
    cleanup: CleanupService
    anvil: ConnectionCounter
    wakeup_qmgr: Callable[[], None]
