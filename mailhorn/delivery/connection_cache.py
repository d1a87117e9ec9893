"""Idle SMTP/LMTP sessions kept open for the next delivery to the same place.

Postfix's scache(8) and smtp(8) "connection caching": after a transaction a
session that is still in a clean state is kept for a short while
(``smtp_connection_cache_time_limit``) under its destination key, and the
next request for that destination reuses it instead of connecting, greeting,
negotiating TLS and authenticating again.  Caching applies when
``smtp_connection_cache_on_demand`` is on (the queue manager hands over
requests for a busy destination back to back, so an idle session rarely waits
long) or the destination is listed in ``smtp_connection_cache_destinations``.

A session is not reused more than ``smtp_connection_reuse_count_limit``
times (0: no limit) nor after ``smtp_connection_reuse_time_limit`` seconds
since it was opened.  Before reuse the caller checks it with RSET.

Parameters: read by the caller and given to :class:`CachePolicy`.
Errors: none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from mailhorn.delivery.smtp_session import Session

__all__ = ["CachePolicy", "ConnectionCache"]


@dataclass
class CachePolicy:
    on_demand: bool = True
    destinations: list[str] = field(default_factory=list)
    idle_time: float = 2.0
    reuse_count_limit: int = 0
    reuse_time_limit: float = 300.0

    def wanted(self, nexthop_text: str, nexthop_host: str) -> bool:
        """Whether sessions to this destination are kept."""
        if self.on_demand:
            return True
        names = {d.lower() for d in self.destinations}
        return nexthop_text.lower() in names or nexthop_host.lower() in names


class ConnectionCache:
    """Idle sessions by destination key, closed when they stay idle too long."""

    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self._idle: dict[Hashable, list[tuple[Session, asyncio.TimerHandle]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.reused = 0

    def _spent(self, session: Session) -> bool:
        p = self.policy
        if p.reuse_count_limit > 0 and session.transactions >= p.reuse_count_limit:
            return True
        return p.reuse_time_limit > 0 and time.monotonic() - session.created >= p.reuse_time_limit

    def take(self, key: Hashable) -> Session | None:
        """An idle session for ``key``, or None."""
        entries = self._idle.get(key)
        while entries:
            session, timer = entries.pop()
            timer.cancel()
            if session.usable and not session.conn.closed:
                if not entries:
                    self._idle.pop(key, None)
                self.reused += 1
                return session
            self._quit(session)
        self._idle.pop(key, None)
        return None

    def put(self, key: Hashable, session: Session) -> None:
        """Keep ``session`` for reuse, or close it when it must not be reused."""
        if not session.usable or session.conn.closed or self._spent(session) or self.policy.idle_time <= 0:
            self._quit(session)
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.policy.idle_time, self._expire, key, session)
        self._idle.setdefault(key, []).append((session, timer))

    def _expire(self, key: Hashable, session: Session) -> None:
        entries = self._idle.get(key, [])
        for i, (s, _) in enumerate(entries):
            if s is session:
                del entries[i]
                break
        if not entries:
            self._idle.pop(key, None)
        self._quit(session)

    def _quit(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(session.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """QUIT every idle session (service shutdown)."""
        for entries in list(self._idle.values()):
            for session, timer in entries:
                timer.cancel()
                self._quit(session)
        self._idle.clear()
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
