"""Which delivery agent runs each master.cf transport command.

:data:`AGENTS` is the explicit table from a master.cf ``command`` (the
eighth column) to the module whose ``make_agent`` builds the agent, and to
what that factory takes besides ``(config, service)``:

=========  ================================  ==========================
command    factory                           extra argument
=========  ================================  ==========================
local      mailhorn.delivery.local           the runtime and this pool
virtual    mailhorn.delivery.virtual         the runtime
smtp       mailhorn.delivery.smtp            none
lmtp       mailhorn.delivery.lmtp            none
pipe       mailhorn.delivery.pipe            the command attributes
error      mailhorn.delivery.error           none (``retry`` service defers)
discard    mailhorn.delivery.discard         none
=========  ================================  ==========================

Modules are imported when a transport is first used, so the queue manager
runs whatever the state of the agents it does not need. :class:`AgentPool`
builds each transport's agent once and keeps it.

local(8) hands recipients to other transports (``mailbox_transport``,
``fallback_transport`` and their ``_maps``), as Postfix's local passes a
delivery request to another master.cf service: it gets the pool that built
it and asks :meth:`AgentPool.by_name` for that service's agent, so both share
one agent (and its connection cache) per transport. A transport the pool has
not seen yet is found in master.cf, configured from main.cf plus its own
``-o`` overrides.

The queue manager itself bounces or defers some recipients before any agent
is asked (a resolver failure, ``defer_transports``): it sends them to the
``error`` or ``retry`` transport; when master.cf has no such service the
built-in error agent is used under that name (:func:`builtin_error_transport`).

Errors: :class:`AgentUnavailable` when a transport's module cannot be
imported or its factory fails (the queue manager defers the recipients).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TYPE_CHECKING, cast

from mailhorn import log
from mailhorn.config.mastercf import Service
from mailhorn.delivery.request import DeliveryAgent
from mailhorn.services import Transport, plan, read_services

if TYPE_CHECKING:
    from mailhorn.config.load import Config
    from mailhorn.runtime import Runtime

__all__ = ["AGENTS", "AgentEntry", "AgentPool", "AgentUnavailable", "Extra", "builtin_error_transport",
           "master_transports"]


class Extra(enum.Enum):
    """What a factory takes after ``(config, service)``."""

    NONE = "none"
    RUNTIME = "runtime"
    ARGS = "args"
    POOL = "pool"
    """The runtime, then the :class:`AgentPool` itself (local(8)'s hand-offs)."""


@dataclass(frozen=True)
class AgentEntry:
    """``module:function`` of an agent factory and its extra argument."""

    target: str
    extra: Extra = Extra.NONE


#: master.cf command -> agent factory.
AGENTS: Final[dict[str, AgentEntry]] = {
    "local": AgentEntry("mailhorn.delivery.local:make_agent", Extra.POOL),
    "virtual": AgentEntry("mailhorn.delivery.virtual:make_agent", Extra.RUNTIME),
    "smtp": AgentEntry("mailhorn.delivery.smtp:make_agent"),
    "lmtp": AgentEntry("mailhorn.delivery.lmtp:make_agent"),
    "pipe": AgentEntry("mailhorn.delivery.pipe:make_agent", Extra.ARGS),
    "error": AgentEntry("mailhorn.delivery.error:make_agent"),
    "discard": AgentEntry("mailhorn.delivery.discard:make_agent"),
}


class AgentUnavailable(Exception):
    """A transport's agent cannot be built."""


def builtin_error_transport(config: Config, name: str) -> Transport:
    """A transport ``name`` (``error`` or ``retry``) run by the error agent, for a
    master.cf without that entry."""
    service = Service(name=name, type="unix", private_raw="-", unpriv_raw="-", chroot_raw="-",
                      wakeup_raw="-", maxproc_raw="-", command="error", argv=())
    return Transport(name, "error", config.with_overrides({"service_name": name}), service)


def _factory(target: str) -> Callable[..., DeliveryAgent]:
    module_name, _, function = target.partition(":")
    module = importlib.import_module(module_name)
    return cast("Callable[..., DeliveryAgent]", getattr(module, function))


def master_transports(config: Config) -> dict[str, Transport]:
    """master.cf's transports by name, each configured from main.cf and its ``-o`` overrides.

    ``config`` may be a service's configuration: its own overrides are left out.
    """
    from mailhorn.config.load import Config

    base = Config(config.entries.values(), config_dir=config.config_dir)
    found: dict[str, Transport] = {}
    for transport in plan(read_services(config.config_dir), base).transports:
        found.setdefault(transport.name, transport)
    return found


class AgentPool:
    """One agent per transport, built on first use.

    ``runtime`` is handed to the agents that take one (None: they make do
    without, as local(8) and virtual(8) built outside a master do).
    """

    def __init__(self, runtime: Runtime | None) -> None:
        self.runtime = runtime
        self._agents: dict[str, DeliveryAgent] = {}
        self._transports: dict[str, Transport] = {}
        self._master: dict[str, Transport] | None = None

    def by_name(self, name: str, config: Config) -> DeliveryAgent | None:
        """The agent of master.cf service ``name``; None when there is no such transport.

        ``config`` locates master.cf (its ``config_dir``); ``error`` and
        ``retry`` always exist, as for the queue manager. AgentUnavailable
        when the agent cannot be built.
        """
        transport = self._transports.get(name)
        if transport is None:
            if self._master is None:
                self._master = master_transports(config)
            transport = self._master.get(name)
            if transport is None and name in ("error", "retry"):
                transport = builtin_error_transport(config, name)
        if transport is None:
            return None
        return self.get(transport)

    def command_of(self, name: str) -> str | None:
        """The master.cf command (the agent, e.g. ``lmtp``) of a transport this pool knows."""
        transport = self._transports.get(name)
        return transport.agent if transport is not None else None

    def get(self, transport: Transport) -> DeliveryAgent:
        """The agent of ``transport``; AgentUnavailable when it cannot be built."""
        agent = self._agents.get(transport.name)
        if agent is not None:
            return agent
        self._transports.setdefault(transport.name, transport)
        entry = AGENTS.get(transport.agent)
        if entry is None:
            raise AgentUnavailable(f"no delivery agent for command {transport.agent}")
        try:
            factory = _factory(entry.target)
            if entry.extra is Extra.RUNTIME:
                agent = factory(transport.config, transport.name, self.runtime)
            elif entry.extra is Extra.POOL:
                agent = factory(transport.config, transport.name, self.runtime, self)
            elif entry.extra is Extra.ARGS:
                agent = factory(transport.config, transport.name, transport.service.args)
            else:
                agent = factory(transport.config, transport.name)
        except Exception as exc:  # an agent that cannot start defers its mail, it does not stop qmgr
            log.error(f"transport {transport.name}: cannot start {entry.target}: {exc.__class__.__name__}: {exc}")
            raise AgentUnavailable(f"mail transport unavailable: {exc}") from exc
        self._agents[transport.name] = agent
        return agent

    async def close(self) -> None:
        """Let agents that keep connections close them (``close()`` when they have one)."""
        for agent in self._agents.values():
            closer = getattr(agent, "close", None)
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:  # closing is best effort at shutdown
                    log.warning(f"closing delivery agent: {exc}")
        self._agents.clear()
