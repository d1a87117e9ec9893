"""virtual(8): delivery to virtual mailboxes, with the VDA quota settings of seed 003.

What it does
    For each recipient ``user[+ext]@domain``:

    * a ``Delivered-To:`` header equal to the recipient bounces it with
      ``5.4.6 mail forwarding loop for ADDRESS``;
    * ``virtual_mailbox_maps`` is searched with ``user+ext@domain``, then
      ``user@domain``, then ``@domain`` (virtual(8)); no answer bounces with
      ``5.1.1 User unknown in virtual mailbox table``;
    * the mailbox is ``virtual_mailbox_base/VALUE``: a trailing ``/`` means
      Maildir, written through :mod:`mailhorn.mailstore` (tmp, fsync, link
      into ``new/``, fsync the directory: the status is ``sent`` only after
      that), else an mbox file locked as ``virtual_mailbox_lock`` says;
    * ``virtual_uid_maps`` and ``virtual_gid_maps`` (same keys; e.g.
      ``static:5000``) give the owner; a uid below ``virtual_minimum_uid`` or
      a missing uid/gid defers with ``4.3.5 mail system configuration error``.
      Running as root, or as ``mail_owner`` under a root master (through the
      spawner, :mod:`mailhorn.privsep`), the delivery runs with that uid and
      gid (:mod:`mailhorn.delivery.privs`); unprivileged, as mailhorn itself;
    * ``Return-Path:``, ``X-Original-To:`` and ``Delivered-To:`` are
      prepended as Postfix does.

    Quotas (the VDA patch's settings, declared in
    ``mailhorn/config/paramdefs/vda.py``): when any of
    ``virtual_mailbox_limit_maps``, ``virtual_create_maildirsize`` or
    ``virtual_mailbox_extended`` is set, a Maildir has a quota: the value
    from ``virtual_mailbox_limit_maps`` (same keys; ``0`` means none), else
    ``virtual_mailbox_limit``; a per-user value above
    ``virtual_mailbox_limit`` is cut down to it unless
    ``virtual_mailbox_limit_override = yes``. With
    ``virtual_create_maildirsize = yes`` the quota is kept in a Maildir++
    ``maildirsize`` file (``LIMITS`` header, usage lines) that Dovecot reads
    the same way; otherwise the Maildir (with its folders when
    ``virtual_mailbox_extended = yes``) is counted. A message that would
    pass the quota is not written: with ``virtual_overquota_bounce = yes`` it
    bounces (``5.2.2``), else it defers (``4.2.2``), with
    ``virtual_maildir_limit_message`` as the text. Without those settings
    ``virtual_mailbox_limit`` is, as in stock Postfix, the largest mailbox
    or message file (``5.2.2 ... File too large``).

Parameters read
    ``virtual_mailbox_base``, ``virtual_mailbox_maps``, ``virtual_uid_maps``,
    ``virtual_gid_maps``, ``virtual_minimum_uid``, ``virtual_mailbox_limit``,
    ``virtual_mailbox_lock``, ``virtual_mailbox_limit_maps``,
    ``virtual_mailbox_limit_override``, ``virtual_create_maildirsize``,
    ``virtual_mailbox_extended``, ``virtual_maildir_limit_message``,
    ``virtual_overquota_bounce``, ``recipient_delimiter``,
    ``deliver_lock_attempts``, ``deliver_lock_delay``, ``stale_lock_time``.

Errors
    None escape :meth:`VirtualAgent.deliver`: table errors defer (4.3.0),
    store errors defer or bounce per :func:`mailhorn.delivery.local.store_error`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from typing import Final

from mailhorn import log
from mailhorn.address.parse import split_extension
from mailhorn.address.quote import split_internal
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.delivery import headers
from mailhorn.delivery.local import Part, failed, ok, store_error
from mailhorn.delivery.privs import Identity, run_sync
from mailhorn.delivery.request import Action, DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.iopool import IoPool
from mailhorn.mailstore.errors import QuotaExceeded
from mailhorn.runtime import Runtime
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.registry import open_table

RELAY: Final = "virtual"
#: Requests one agent writes at once. Each write running as another uid
#: holds a channel to that identity's helper process
#: (:mod:`mailhorn.delivery.privs`, which keeps four idle channels); the
#: writes mostly wait on fsync, and more threads would mostly add contention
#: for the interpreter lock.
VIRTUAL_THREADS: Final = 4


class _ConfigProblem(Exception):
    """A per-recipient configuration error (logged as a warning, deferred as 4.3.5)."""


class VirtualAgent:
    """The virtual delivery agent of one master.cf service."""

    def __init__(self, config: Config, service: str, runtime: Runtime | None = None) -> None:
        self.config = config
        self.service = service
        self.runtime = runtime
        self._maps: dict[str, list[Table]] = {}
        self._pool = IoPool(VIRTUAL_THREADS, service)

    def _tables(self, param: str) -> list[Table]:
        tables = self._maps.get(param)
        if tables is None:
            tables = [open_table(spec, self.config) for spec in self.config.list(param)]
            self._maps[param] = tables
        return tables

    def keys(self, address: str) -> list[str]:
        """Lookup keys in virtual(8)'s order: full address, without extension, ``@domain``."""
        local, domain = split_internal(address)
        keys = [address]
        delimiter = self.config.get("recipient_delimiter")
        if delimiter:
            split = split_extension(local, delimiter)
            if split is not None:
                keys.append(split.base if domain is None else f"{split.base}@{domain}")
        if domain is not None:
            keys.append(f"@{domain}")
        return keys

    def find(self, param: str, address: str) -> str | None:
        """The first answer of ``param``'s tables for the recipient's keys (TableRetry passes)."""
        keys = self.keys(address)
        for table in self._tables(param):
            for key in keys:
                value = table.lookup(key)
                if value is not None:
                    return value
        return None

    # -- the request ---------------------------------------------------------------------
    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        """Deliver to every recipient; one status each, in order; never raises.

        The whole request (header scan, table lookups, the Maildir or mbox
        writes) runs in one worker-thread call, as Postfix's virtual(8)
        handles one request's recipients one after another: the event loop
        never waits on disk or on a table, and pays one thread hand-off per
        request instead of several per recipient.
        """
        return await self._pool.run(self.deliver_sync, request)

    def deliver_sync(self, request: DeliveryRequest) -> list[RecipientStatus]:
        """:meth:`deliver` without the event loop (blocking)."""
        try:
            delivered_to = headers.delivered_to_values(headers.header_block(request.open_content))
        except Exception as exc:
            log.warning(f"{request.queue_id}: cannot read message content: {exc}", program=self.service)
            return [RecipientStatus(r, Action.DEFERRED, "4.3.0", "cannot read message content", relay=RELAY)
                    for r in request.recipients]
        statuses: list[RecipientStatus] = []
        for rcpt in request.recipients:
            try:
                if rcpt.address.lower() in delivered_to:
                    part = failed("5.4.6", f"mail forwarding loop for {rcpt.address}")
                else:
                    part = self._recipient(request, rcpt)
            except TableRetry as exc:
                part = failed("4.3.0", f"table lookup problem for {rcpt.address}: {exc}")
            except (_ConfigProblem, ConfigError, TableConfigError) as exc:
                log.warning(f"{request.queue_id}: recipient {rcpt.address}: {exc}", program=self.service)
                part = failed("4.3.5", "mail system configuration error")
            except Exception as exc:
                log.error(f"{request.queue_id}: virtual delivery to {rcpt.address} failed: "
                          f"{type(exc).__name__}: {exc}", program=self.service)
                part = failed("4.3.0", "virtual mail system error")
            statuses.append(RecipientStatus(rcpt, part.action, part.dsn, part.text, relay=RELAY))
        return statuses

    def _number(self, param: str, address: str, value: str | None) -> int:
        if value is None:
            raise _ConfigProblem(f"{param.split('_')[1]} not found in {param}")
        text = value.strip()
        if not text.isdigit():
            raise _ConfigProblem(f"bad {param.split('_')[1]} {text} in {param}")
        return int(text)

    def _recipient(self, request: DeliveryRequest, rcpt: DeliveryRecipient) -> Part:
        address = rcpt.address
        found = self.find("virtual_mailbox_maps", address)
        if found is None:
            return failed("5.1.1", "User unknown in virtual mailbox table")
        base = self.config.get("virtual_mailbox_base")
        value = found.strip()
        path = os.path.join(base, value.lstrip("/")) if base else value
        if not path.startswith("/"):
            raise _ConfigProblem(f"mailbox path {path} is not absolute")
        uid = self._number("virtual_uid_maps", address, self.find("virtual_uid_maps", address))
        gid = self._number("virtual_gid_maps", address, self.find("virtual_gid_maps", address))
        if uid < self.config.int("virtual_minimum_uid"):
            raise _ConfigProblem(f"bad uid {uid} in virtual_uid_maps")
        identity = Identity(address, uid, gid, base or "/", "/bin/sh", (gid,), kind="virtual")
        prepend = headers.prepend_headers(sender=request.sender, orig_rcpt=rcpt.orig_rcpt,
                                          delivered=address.lower())
        if path.endswith("/"):
            return self._maildir(request, rcpt, path, identity, prepend)
        return self._mbox(request, path, identity, prepend)

    def _quota(self, address: str) -> int | None:
        """The Maildir quota in bytes under the VDA settings; None: no quota."""
        cfg = self.config
        vda = (bool(cfg.list("virtual_mailbox_limit_maps")) or cfg.bool("virtual_create_maildirsize")
               or cfg.bool("virtual_mailbox_extended"))
        if not vda:
            return None
        global_limit = cfg.int("virtual_mailbox_limit")
        value = self.find("virtual_mailbox_limit_maps", address) if cfg.list("virtual_mailbox_limit_maps") else None
        if value is None:
            limit = global_limit
        else:
            text = value.strip()
            if not text.isdigit():
                raise _ConfigProblem(f"bad quota {text} in virtual_mailbox_limit_maps")
            limit = int(text)
            if global_limit and limit > global_limit and not cfg.bool("virtual_mailbox_limit_override"):
                limit = global_limit
        return limit or None

    def _maildir(self, request: DeliveryRequest, rcpt: DeliveryRecipient, path: str,
                 identity: Identity, prepend: bytes) -> Part:
        cfg = self.config
        limit = self._quota(rcpt.address)
        params: dict[str, object] = {"path": path, "size": len(prepend) + request.content_size}
        if limit is None:
            params.update({"quota": "none", "size_limit": cfg.int("virtual_mailbox_limit")})
        else:
            params.update({"quota": "maildirsize" if cfg.bool("virtual_create_maildirsize") else "scan",
                           "limit": limit, "extended": cfg.bool("virtual_mailbox_extended")})

        def pieces() -> Iterator[bytes]:
            yield prepend
            yield from request.open_content()

        try:
            run_sync(identity, "maildir", params, pieces)
        except QuotaExceeded:
            text = cfg.get("virtual_maildir_limit_message")
            if cfg.bool("virtual_overquota_bounce"):
                return failed("5.2.2", text)
            return failed("4.2.2", text)
        except Exception as exc:
            dsn, text = store_error(exc, "4.2.0")
            return failed(dsn, f"maildir delivery failed: {text}")
        return ok("delivered to maildir")

    def _mbox(self, request: DeliveryRequest, path: str, identity: Identity, prepend: bytes) -> Part:
        cfg = self.config
        params: dict[str, object] = {
            "path": path, "size_limit": cfg.int("virtual_mailbox_limit"),
            "locks": [k.lower() for k in cfg.list("virtual_mailbox_lock")],
            "attempts": cfg.int("deliver_lock_attempts"), "delay": float(cfg.time("deliver_lock_delay")),
            "stale": float(cfg.time("stale_lock_time"))}

        def pieces() -> Iterator[bytes]:
            yield headers.from_line(request.sender)
            yield prepend
            yield from headers.with_final_newline(headers.quote_from(request.open_content()), blank_line=True)

        try:
            run_sync(identity, "mbox", params, pieces)
        except Exception as exc:
            dsn, text = store_error(exc, "5.2.0")
            return failed(dsn, f"cannot update mailbox {path} for user {identity.user}. {text}")
        return ok("delivered to mailbox")


def make_agent(config: Config, service: str, runtime: Runtime | None = None) -> VirtualAgent:
    """The virtual delivery agent (``runtime`` is accepted for symmetry with local; unused)."""
    return VirtualAgent(config, service, runtime)
