"""local(8) handing a recipient to another master.cf transport.

What it does
    Postfix's local(8) can give mailbox delivery away, and the delivery of
    names it does not know:

    * ``mailbox_transport_maps`` (looked up with the recipient's user name,
      the local part without extension) and then ``mailbox_transport`` take
      over mailbox delivery for every local recipient that no alias or
      ``.forward`` file handled, whether or not the name has a UNIX account;
      they come before ``mailbox_command_maps``, ``mailbox_command``,
      ``home_mailbox`` and ``mail_spool_directory``;
    * ``fallback_transport_maps`` (same key) and then ``fallback_transport``
      take a name with neither alias nor account, before ``luser_relay``.

    A value is ``transport:nexthop`` (``lmtp:unix:private/dovecot-lmtp``,
    ``smtp:[127.0.0.1]:2525``, ``dovecot``): the transport is a master.cf
    service name and the nexthop, when empty, is the one of local's own
    request. :class:`Handoff` logs ``passing <ADDRESS> to transport=NAME``
    as Postfix does and asks that service's agent (through the
    :class:`~mailhorn.queue.agents.AgentPool`) to deliver the recipient, with
    the same envelope and content; the other agent's status (``relay=``, DSN,
    text, remote reply) becomes local's status for the recipient.

Errors
    Never raises. A table that cannot be read defers with ``4.3.0 table
    lookup failure``; a transport master.cf does not define, or whose agent
    cannot start, defers with ``4.3.0 mail transport unavailable``; a
    hand-off back to a local(8) service already passing this recipient
    (``mailbox_transport = local``) defers with ``4.3.5 mail system
    configuration error`` and a warning instead of looping.

Parameters read
    ``mailbox_transport_maps``, ``mailbox_transport``,
    ``fallback_transport_maps``, ``fallback_transport``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Callable

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.delivery.request import Action, DeliveryAgent, DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.iopool import offload
from mailhorn.queue.agents import AgentPool, AgentUnavailable
from mailhorn.runtime import Runtime
from mailhorn.tables.base import TableRetry

#: local(8) services that are passing the current recipient on (loop detection).
_PASSING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("local_passing", default=())

Finder = Callable[..., str | None]


def split_transport(value: str) -> tuple[str, str]:
    """``transport:nexthop`` as (transport, nexthop); the nexthop may be empty."""
    transport, _, nexthop = value.strip().partition(":")
    return transport.strip(), nexthop.strip()


def deferred(rcpt: DeliveryRecipient, dsn: str, text: str) -> RecipientStatus:
    """A deferral reported by local(8) itself."""
    return RecipientStatus(rcpt, Action.DEFERRED, dsn, text, relay="local")


class Handoff:
    """The hand-offs of one local(8) service.

    ``find(param, *keys)`` is the agent's table lookup (first hit over the
    tables of ``param``); ``pool`` the agent pool that built the agent, or
    None to keep a pool of its own (an agent built outside a master).
    """

    def __init__(self, config: Config, service: str, find: Finder, runtime: Runtime | None,
                 pool: AgentPool | None) -> None:
        self.config = config
        self.service = service
        self._find = find
        self._runtime = runtime
        self._pool = pool
        self._own_pool = pool is None

    async def mailbox(self, request: DeliveryRequest, rcpt: DeliveryRecipient, user: str) -> RecipientStatus | None:
        """``mailbox_transport_maps``/``mailbox_transport``; None when neither applies."""
        return await self._choose(request, rcpt, user, "mailbox_transport")

    async def fallback(self, request: DeliveryRequest, rcpt: DeliveryRecipient, user: str) -> RecipientStatus | None:
        """``fallback_transport_maps``/``fallback_transport``; None when neither applies."""
        return await self._choose(request, rcpt, user, "fallback_transport")

    async def _choose(self, request: DeliveryRequest, rcpt: DeliveryRecipient, user: str,
                      param: str) -> RecipientStatus | None:
        value: str | None = None
        if self.config.list(f"{param}_maps"):
            try:
                value = await offload(self._find, f"{param}_maps", user)
            except TableRetry as exc:
                log.warning(f"{request.queue_id}: {param}_maps lookup error for \"{user}\": {exc}",
                            program=self.service)
                return deferred(rcpt, "4.3.0", "table lookup failure")
        if not value or not value.strip():
            value = self.config.get(param)
        if not value or not value.strip():
            return None
        return await self.pass_to(request, rcpt, value)

    def _agents(self) -> AgentPool:
        if self._pool is None:
            self._pool = AgentPool(self._runtime)
        return self._pool

    async def pass_to(self, request: DeliveryRequest, rcpt: DeliveryRecipient, value: str) -> RecipientStatus:
        """Deliver ``rcpt`` through the transport named by ``value`` (``transport:nexthop``)."""
        name, nexthop = split_transport(value)
        chain = _PASSING.get()
        if not name:
            log.warning(f"{request.queue_id}: bad transport \"{value}\" for <{rcpt.address}>", program=self.service)
            return deferred(rcpt, "4.3.5", "mail system configuration error")
        if name == self.service or name in chain:
            log.warning(f"{request.queue_id}: <{rcpt.address}>: transport {name} would pass the mail back to "
                        f"local service {name}: mail loops", program=self.service)
            return deferred(rcpt, "4.3.5", "mail system configuration error")
        try:
            agent: DeliveryAgent | None = self._agents().by_name(name, self.config)
        except AgentUnavailable:
            agent = None
        if agent is None:
            log.warning(f"{request.queue_id}: transport {name} for <{rcpt.address}> is not available",
                        program=self.service)
            return deferred(rcpt, "4.3.0", "mail transport unavailable")
        log.info(f"{request.queue_id}: passing <{rcpt.address}> to transport={name}", program=self.service)
        passed = dataclasses.replace(request, transport=name, nexthop=nexthop or request.nexthop,
                                     recipients=(rcpt,))
        token = _PASSING.set((*chain, self.service))
        try:
            statuses = await agent.deliver(passed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # another agent's bug defers this recipient, it does not lose it
            log.error(f"{request.queue_id}: transport {name}: {type(exc).__name__}: {exc}", program=self.service)
            return deferred(rcpt, "4.3.0", "unknown mail transport error")
        finally:
            _PASSING.reset(token)
        program = self._agents().command_of(name) or name
        for status in statuses:
            if status.recipient.offset == rcpt.offset:
                return dataclasses.replace(status, recipient=rcpt, program=status.program or program)
        log.warning(f"{request.queue_id}: transport {name} gave no status for <{rcpt.address}>",
                    program=self.service)
        return deferred(rcpt, "4.3.0", "unknown mail transport error")

    async def close(self) -> None:
        """Close the agents of a pool this object made itself (a shared pool is closed by its owner)."""
        if self._own_pool and self._pool is not None:
            await self._pool.close()
            self._pool = None
