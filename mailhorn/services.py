"""The services table: what runs each master.cf command.

Postfix's master(8) execs one daemon program per master.cf entry. mailhorn
runs its services as asyncio tasks inside worker processes, so the
``command`` column is looked up in :data:`SERVICES`, an explicit table:

* ``network`` services accept connections on the entry's listener, one
  task per listener in every worker: ``smtpd`` runs
  ``mailhorn.smtpd.server:serve(listener, config, runtime, service)``;
* ``singleton`` services run once, in worker 0 only: ``pickup`` runs
  ``mailhorn.queue.pickup:run_pickup(config, runtime)`` and ``qmgr`` runs
  ``mailhorn.queue.manager:run_qmgr(config, runtime)``;
* ``internal`` commands name Postfix daemons whose job mailhorn does inside
  other services or not at all (``cleanup``, ``tlsmgr``,
  ``trivial-rewrite``, ``bounce``, ``anvil``, ...): accepted, nothing started;
* ``transport`` commands are delivery agents (``smtp``, ``lmtp``, ``local``,
  ``virtual``, ``pipe``, ``error``, ``discard``): each entry becomes a
  :class:`Transport` that the queue manager delivers through.

An unknown command is a warning naming master.cf's file and line; the entry is
skipped. Service modules are imported by name only when a service starts, so
the master runs before every service module exists.

Each service's configuration is main.cf plus its ``-o`` overrides and
``service_name`` (postconf(5) ``service_name``) set to the master.cf name.
Entries listed in ``master_service_disable`` (``name/type`` or a bare type
such as ``inet``) are left out, as in Postfix 3.x.

With no master.cf in the configuration directory, :data:`DEFAULT_MASTER_CF`
(the active lines of Postfix's master.cf.proto) is used.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mailhorn.config.mastercf import MasterCf, Service, master_cf_path, parse_master_cf, read_master_cf

if TYPE_CHECKING:
    from mailhorn.config.load import Config
    from mailhorn.runtime import Runtime

NETWORK = "network"
SINGLETON = "singleton"
INTERNAL = "internal"
TRANSPORT = "transport"

#: ``serve(listener, config, runtime, service)``: accept and serve until cancelled.
NetworkServe = Callable[[socket.socket, "Config", "Runtime", Service], Coroutine[Any, Any, None]]
#: ``run(config, runtime)``: work until cancelled.
SingletonRun = Callable[["Config", "Runtime"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceEntry:
    """How one master.cf command is run: its kind and, for started ones, ``module:function``."""

    kind: str
    target: str = ""


#: master.cf command name -> what runs it.
SERVICES: dict[str, ServiceEntry] = {
    "smtpd": ServiceEntry(NETWORK, "mailhorn.smtpd.server:serve"),
    # mailhorn's own names for the mail store's servers (Dovecot's roles).
    "imapd": ServiceEntry(NETWORK, "mailhorn.imap.server:serve"),
    "pop3d": ServiceEntry(NETWORK, "mailhorn.pop3.server:serve"),
    "pickup": ServiceEntry(SINGLETON, "mailhorn.queue.pickup:run_pickup"),
    # Done inside other services (cleanup is a library smtpd and pickup call),
    # or not needed by mailhorn's design.
    "cleanup": ServiceEntry(INTERNAL),
    "qmgr": ServiceEntry(SINGLETON, "mailhorn.queue.manager:run_qmgr"),
    "nqmgr": ServiceEntry(SINGLETON, "mailhorn.queue.manager:run_qmgr"),
    "oqmgr": ServiceEntry(SINGLETON, "mailhorn.queue.manager:run_qmgr"),
    "tlsmgr": ServiceEntry(INTERNAL),
    "rewrite": ServiceEntry(INTERNAL),
    "trivial-rewrite": ServiceEntry(INTERNAL),
    "bounce": ServiceEntry(INTERNAL),
    "defer": ServiceEntry(INTERNAL),
    "trace": ServiceEntry(INTERNAL),
    "verify": ServiceEntry(INTERNAL),
    "flush": ServiceEntry(INTERNAL),
    "proxymap": ServiceEntry(INTERNAL),
    "proxywrite": ServiceEntry(INTERNAL),
    "showq": ServiceEntry(INTERNAL),
    "anvil": ServiceEntry(INTERNAL),
    "scache": ServiceEntry(INTERNAL),
    "postlogd": ServiceEntry(INTERNAL),
    # Delivery agents: transports for the queue manager.
    "smtp": ServiceEntry(TRANSPORT),
    "lmtp": ServiceEntry(TRANSPORT),
    "local": ServiceEntry(TRANSPORT),
    "virtual": ServiceEntry(TRANSPORT),
    "pipe": ServiceEntry(TRANSPORT),
    "error": ServiceEntry(TRANSPORT),
    "discard": ServiceEntry(TRANSPORT),
}

#: The active entries of Postfix 3.7's master.cf.proto.
DEFAULT_MASTER_CF = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
defer     unix  -       -       y       -       0       bounce
trace     unix  -       -       y       -       0       bounce
verify    unix  -       -       y       -       1       verify
flush     unix  n       -       y       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
showq     unix  n       -       y       -       -       showq
error     unix  -       -       y       -       -       error
retry     unix  -       -       y       -       -       error
discard   unix  -       -       y       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       y       -       -       lmtp
anvil     unix  -       -       y       -       1       anvil
scache    unix  -       -       y       -       1       scache
"""


@dataclass(frozen=True)
class Transport:
    """A delivery transport: the master.cf name, its agent, and its configuration."""

    name: str
    agent: str
    config: Config
    service: Service


@dataclass(frozen=True)
class Planned:
    """A service to start, with its effective configuration."""

    service: Service
    entry: ServiceEntry
    config: Config


@dataclass(frozen=True)
class ServicePlan:
    """What the master runs, from one reading of master.cf."""

    network: tuple[Planned, ...]
    singletons: tuple[Planned, ...]
    transports: tuple[Transport, ...]
    warnings: tuple[str, ...]


def read_services(config_dir: str) -> MasterCf:
    """Read ``DIR/master.cf``, or the built-in default when the file does not exist."""
    path = master_cf_path(config_dir)
    if not os.path.exists(path):
        return parse_master_cf(DEFAULT_MASTER_CF, path)
    return read_master_cf(path)


def _disabled(service: Service, disable: list[str]) -> bool:
    return service.key in disable or service.type in disable


def service_config(config: Config, service: Service) -> Config:
    """main.cf plus the entry's ``-o`` overrides and ``service_name``."""
    overrides = {"service_name": service.name}
    overrides.update(service.overrides)
    return config.with_overrides(overrides)


def plan(master: MasterCf, config: Config) -> ServicePlan:
    """Sort master.cf entries into network services, singletons and transports.

    Only the command and type are judged here; the values of ``-o``
    overrides are read (and reported) by the services that use them.
    """
    network: list[Planned] = []
    singletons: list[Planned] = []
    transports: list[Transport] = []
    warnings = [f"{w.file}: line {w.line}: {w.text}" for w in master.warnings]
    disable = config.list("master_service_disable")
    for service in master.services:
        if _disabled(service, disable):
            continue
        entry = SERVICES.get(service.command)
        where = f"{service.file}: line {service.line}"
        if entry is None:
            warnings.append(f'{where}: unknown command "{service.command}" for service {service.key}; skipped')
            continue
        if entry.kind == NETWORK:
            if service.type not in ("inet", "unix"):
                warnings.append(f"{where}: service {service.key}: type {service.type} is not supported "
                                f"for {service.command}; skipped")
                continue
            network.append(Planned(service, entry, service_config(config, service)))
        elif entry.kind == SINGLETON:
            if any(p.service.command == service.command for p in singletons):
                warnings.append(f"{where}: duplicate {service.command} service {service.key}; skipped")
                continue
            singletons.append(Planned(service, entry, service_config(config, service)))
        elif entry.kind == TRANSPORT:
            transports.append(Transport(service.name, service.command, service_config(config, service), service))
    return ServicePlan(tuple(network), tuple(singletons), tuple(transports), tuple(warnings))


def _resolve(target: str) -> object:
    module_name, _, function = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function)


def load_network(entry: ServiceEntry) -> NetworkServe:
    """Import a network service's ``serve`` function."""
    return cast(NetworkServe, _resolve(entry.target))


def load_singleton(entry: ServiceEntry) -> SingletonRun:
    """Import a singleton service's ``run`` function."""
    return cast(SingletonRun, _resolve(entry.target))
