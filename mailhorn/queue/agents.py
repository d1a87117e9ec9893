"""Which delivery agent runs each master.cf transport command.

:data:`AGENTS` is the explicit table from a master.cf ``command`` (the
eighth column) to the module whose ``make_agent`` builds the agent, and to
what that factory takes besides ``(config, service)``:

=========  ================================  ==========================
command    factory                           extra argument
=========  ================================  ==========================
local      mailhorn.delivery.local           the runtime (forwarding)
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
from typing import TYPE_CHECKING, cast

from mailhorn import log
from mailhorn.config.mastercf import Service
from mailhorn.delivery.request import DeliveryAgent
from mailhorn.services import Transport

if TYPE_CHECKING:
    from mailhorn.config.load import Config
    from mailhorn.runtime import Runtime

__all__ = ["AGENTS", "AgentEntry", "AgentPool", "AgentUnavailable", "Extra", "builtin_error_transport"]


class Extra(enum.Enum):
    """What a factory takes after ``(config, service)``."""

    NONE = "none"
    RUNTIME = "runtime"
    ARGS = "args"


@dataclass(frozen=True)
class AgentEntry:
    """``module:function`` of an agent factory and its extra argument."""

    target: str
    extra: Extra = Extra.NONE


#: master.cf command -> agent factory.
AGENTS: dict[str, AgentEntry] = {
    "local": AgentEntry("mailhorn.delivery.local:make_agent", Extra.RUNTIME),
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


class AgentPool:
    """One agent per transport, built on first use."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._agents: dict[str, DeliveryAgent] = {}

    def get(self, transport: Transport) -> DeliveryAgent:
        """The agent of ``transport``; AgentUnavailable when it cannot be built."""
        agent = self._agents.get(transport.name)
        if agent is not None:
            return agent
        entry = AGENTS.get(transport.agent)
        if entry is None:
            raise AgentUnavailable(f"no delivery agent for command {transport.agent}")
        try:
            factory = _factory(entry.target)
            if entry.extra is Extra.RUNTIME:
                agent = factory(transport.config, transport.name, self.runtime)
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
