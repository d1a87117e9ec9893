"""local(8): delivery to local users, aliases, ``.forward`` files, files and commands.

What it does
    For each recipient of a request (``user[+ext]@domain`` in a local domain),
    in local(8)'s order:

    1. A ``Delivered-To:`` header in the message equal to the recipient
       bounces it: ``5.4.6 mail forwarding loop for ADDRESS``.
    2. ``\\user`` goes straight to the mailbox (no alias, no .forward).
    3. With ``local_recipient_maps`` set (and no ``luser_relay``), a name
       none of them knows bounces ``5.1.1 User unknown in local recipient
       table`` (``4.1.1`` and a deferral when
       ``unknown_local_recipient_reject_code`` is 4XX).
    4. ``alias_maps``: the whole local part, then the part before the
       ``recipient_delimiter``. Addresses are handed back to cleanup as new
       recipients of one new queue file per envelope sender (the original
       content after ``Received: by HOST (mail_name) id QID; DATE`` and
       ``Delivered-To:``, each recipient keeping this delivery's original
       recipient, as Postfix's forward.c; ``owner-NAME`` as the sender when
       that alias exists); ``/file``, ``/dir/`` (Maildir), ``|command`` and
       ``:include:`` are delivered here with the alias database owner's
       privileges or ``default_privs``.
    5. An account whose home directory cannot be reached defers (``4.3.0
       cannot access home directory HOME: REASON``) when
       ``require_home_directory`` is yes.
    6. ``forward_path``: the first ``.forward`` file found is expanded as
       the user (``allow_mail_to_commands``/``_files`` name ``forward``).
    7. ``mailbox_transport_maps``, then ``mailbox_transport``, with or without
       an account: the recipient is passed to that master.cf transport
       (:mod:`mailhorn.delivery.local_transport`), whose status is local's.
    8. No account: ``fallback_transport_maps``, ``fallback_transport`` (passed
       on the same way), ``luser_relay`` (forwarded), or ``5.1.1 unknown
       user: "NAME"``.
    9. The mailbox: ``mailbox_command_maps``/``mailbox_command`` (run with
       the environment of :mod:`mailhorn.delivery.command`), else
       ``home_mailbox`` (trailing ``/``: Maildir, else an mbox file in the home
       directory), else ``mail_spool_directory/USER`` (mbox, fcntl+dotlock).
       ``mailbox_size_limit`` caps the mailbox or message file. After an mbox
       mailbox delivery, ``biff`` (yes) notifies comsat
       (:mod:`mailhorn.delivery.biff`).

    Running as root, everything that touches a user's files or runs a command
    does so as that user (:mod:`mailhorn.delivery.privs`); mail for root's own
    mailbox is delivered with ``default_privs``, as Postfix does: give root
    an alias. Running unprivileged, mailhorn delivers as itself.

    Status texts are Postfix's: ``delivered to mailbox``, ``delivered to
    maildir``, ``delivered to command: CMD``, ``delivered to file: PATH``,
    ``forwarded as QUEUEID``. A recipient with several destinations gets one
    status: deferred if any part deferred (all are tried again, as in
    Postfix), else bounced if any part bounced, else delivered (``expanded``
    for aliases and .forward). Errors never escape :meth:`LocalAgent.deliver`.

    ``make_agent(config, service, runtime=None, pool=None)``: ``runtime``
    supplies the cleanup service through which expansions are re-submitted;
    without it the agent builds its own cleanup on the configured queue
    directory. ``pool`` is the queue manager's agent pool, through which
    recipients are passed to other transports; without it the agent keeps
    its own (closed by :meth:`LocalAgent.close`).

Parameters read
    ``alias_maps``, ``local_recipient_maps``, ``luser_relay``,
    ``unknown_local_recipient_reject_code``, ``forward_path``,
    ``forward_expansion_filter``, ``command_expansion_filter``,
    ``home_mailbox``, ``mail_spool_directory``, ``mailbox_command``,
    ``mailbox_command_maps``, ``mailbox_size_limit``,
    ``mailbox_delivery_lock``, ``deliver_lock_attempts``,
    ``deliver_lock_delay``, ``stale_lock_time``, ``strict_mailbox_ownership``,
    ``allow_mail_to_commands``, ``allow_mail_to_files``,
    ``prepend_delivered_header``, ``default_privs``, ``recipient_delimiter``,
    ``propagate_unmatched_extensions``, ``owner_request_special``,
    ``expand_owner_alias``, ``myorigin``, ``local_command_shell``,
    ``command_time_limit``, ``command_execution_directory``,
    ``export_environment``, ``require_home_directory``, ``biff``,
    ``mailbox_transport_maps``, ``mailbox_transport``,
    ``fallback_transport_maps``, ``fallback_transport``.
"""

from __future__ import annotations

import errno
import os
import pwd
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.address.parse import split_extension
from mailhorn.address.quote import split_internal
from mailhorn.cleanup.request import CleanupRequest, Outcome, RecipientRequest, Source
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.delivery import biff, headers
from mailhorn.delivery.command import CommandSettings, run_command
from mailhorn.delivery.local_aliases import (
    AliasMaps,
    Destination,
    expand_value,
    file_text_to_value,
    propagate,
    qualify,
    read_list_file,
)
from mailhorn.delivery.local_expand import expand_text, filtered, split_raw
from mailhorn.delivery.local_transport import Handoff
from mailhorn.delivery.mbox import MboxFileError, MboxLockError
from mailhorn.delivery.privs import (
    HelperError,
    Identity,
    append_spool,
    default_privs_identity,
    lookup_user,
    run_as,
)
from mailhorn.delivery.request import Action, DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.iopool import offload
from mailhorn.mailstore.errors import DiskFull, LockTimeout, QuotaExceeded
from mailhorn.queue.agents import AgentPool
from mailhorn.runtime import CleanupService, Runtime
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.registry import open_table, split_spec

#: :include: files nested deeper than this are a loop.
INCLUDE_DEPTH_LIMIT = 16

ContentSource = Callable[[], Iterable[bytes]]


@dataclass
class Part:
    """The outcome of one destination of a recipient."""

    action: Action
    dsn: str
    text: str


def ok(text: str) -> Part:
    return Part(Action.DELIVERED, "2.0.0", text)


def failed(dsn: str, text: str) -> Part:
    """A failure: the DSN class decides between deferral and bounce."""
    return Part(Action.DEFERRED if dsn.startswith("4") else Action.BOUNCED, dsn, text)


def mbox_dsn(err: int | None, default: str) -> str:
    """The DSN for a mailbox write error (Postfix's mbox_dsn())."""
    if err in (errno.EAGAIN, errno.ESTALE):
        return "4.2.0"
    if err == errno.ENOSPC:
        return "4.3.0"
    if err == errno.EDQUOT:
        return "4.2.2"
    if err == errno.EFBIG:
        return "5.2.2"
    return default


def store_error(exc: BaseException, default_dsn: str) -> tuple[str, str]:
    """(DSN, text) for an error from a mailbox, Maildir or file write."""
    if isinstance(exc, QuotaExceeded):
        return "4.2.2", str(exc)
    if isinstance(exc, DiskFull):
        return ("4.2.2" if "quota" in str(exc).lower() else "4.3.0"), str(exc)
    if isinstance(exc, (MboxLockError, LockTimeout)):
        return "4.2.0", str(exc)
    if isinstance(exc, MboxFileError):
        return exc.dsn, str(exc)
    if isinstance(exc, HelperError):
        return "4.3.0", str(exc)
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        return mbox_dsn(exc.errno, default_dsn), f"error writing message: {text}"
    return "4.3.0", f"{type(exc).__name__}: {exc}"


def combine(rcpt: DeliveryRecipient, parts: Sequence[Part], relay: str, expanded: bool) -> RecipientStatus:
    """One status from the outcomes of a recipient's destinations."""
    for wanted in (Action.DEFERRED, Action.BOUNCED):
        for part in parts:
            if part.action is wanted:
                return RecipientStatus(rcpt, wanted, part.dsn, part.text, relay=relay)
    texts = list(dict.fromkeys(part.text for part in parts)) or ["expanded"]
    action = Action.EXPANDED if expanded else Action.DELIVERED
    return RecipientStatus(rcpt, action, "2.0.0", ", ".join(texts), relay=relay)


@dataclass
class RecipientState:
    """What is known about one recipient while it is delivered."""

    rcpt: DeliveryRecipient
    address: str
    local: str
    domain: str | None
    user: str
    extension: str | None
    delimiter: str
    delivered: str
    parts: list[Part] = field(default_factory=list)
    forwards: dict[str, list[str]] = field(default_factory=dict)
    seen: set[tuple[str, str, int]] = field(default_factory=set)
    expanded: bool = False
    passed: RecipientStatus | None = None
    """The status another transport gave (mailbox_transport, fallback_transport)."""


class LocalAgent:
    """The local delivery agent of one master.cf service."""

    def __init__(self, config: Config, service: str, runtime: Runtime | None = None,
                 pool: AgentPool | None = None) -> None:
        self.config = config
        self.service = service
        self.runtime = runtime
        self.aliases = AliasMaps(config)
        self._cleanup: CleanupService | None = runtime.cleanup if runtime is not None else None
        self._maps: dict[str, list[Table]] = {}
        self.handoff = Handoff(config, service, self._find, runtime, pool)

    async def close(self) -> None:
        """Close the agents this one started for hand-offs (when it has no shared pool)."""
        await self.handoff.close()

    # -- configuration helpers ---------------------------------------------------------
    def _tables(self, param: str) -> list[Table]:
        tables = self._maps.get(param)
        if tables is None:
            tables = []
            for spec in self.config.list(param):
                if split_spec(spec)[0] == "nis":
                    continue
                tables.append(open_table(spec, self.config))
            self._maps[param] = tables
        return tables

    def _find(self, param: str, *keys: str) -> str | None:
        for table in self._tables(param):
            for key in keys:
                value = table.lookup(key)
                if value is not None:
                    return value
        return None

    def _cleanup_service(self) -> CleanupService:
        if self._cleanup is None:
            from mailhorn.cleanup.cleanup import Cleanup
            from mailhorn.queue.store import QueueStore

            self._cleanup = Cleanup(self.config, QueueStore.from_config(self.config))
        return self._cleanup

    def _command_settings(self) -> CommandSettings:
        return CommandSettings(shell=self.config.get("local_command_shell"),
                               time_limit=float(self.config.time("command_time_limit")),
                               directory=self.config.get("command_execution_directory"),
                               export=tuple(self.config.list("export_environment")))

    # -- the request ---------------------------------------------------------------------
    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        """Deliver to every recipient; one status each, in order; never raises."""
        statuses: list[RecipientStatus] = []
        try:
            delivered_to = await offload(
                lambda: headers.delivered_to_values(headers.header_block(request.open_content)))
        except Exception as exc:  # the queue file vanished or is unreadable
            log.warning(f"{request.queue_id}: cannot read message content: {exc}", program=self.service)
            return [RecipientStatus(r, Action.DEFERRED, "4.3.0", "cannot read message content", relay="local")
                    for r in request.recipients]
        for rcpt in request.recipients:
            state = self._state(rcpt)
            try:
                if state.delivered.lower() in delivered_to:
                    state.parts.append(failed("5.4.6", f"mail forwarding loop for {rcpt.address}"))
                else:
                    await self._recipient(request, state)
                    await self._flush_forwards(request, state)
            except TableRetry as exc:
                state.parts.append(failed("4.3.0", f"alias database unavailable: {exc}"
                                          if str(exc) else "table lookup error"))
            except (ConfigError, TableConfigError) as exc:
                log.warning(f"{request.queue_id}: {exc}", program=self.service)
                state.parts.append(failed("4.3.5", "mail system configuration error"))
            except Exception as exc:
                log.error(f"{request.queue_id}: local delivery to {rcpt.address} failed: "
                          f"{type(exc).__name__}: {exc}", program=self.service)
                state.parts.append(failed("4.3.0", "local mail system error"))
            statuses.append(state.passed if state.passed is not None
                            else combine(rcpt, state.parts, "local", state.expanded))
        return statuses

    def _state(self, rcpt: DeliveryRecipient) -> RecipientState:
        address = rcpt.address
        local, domain = split_internal(address)
        local = local.lower()
        delimiter = self.config.get("recipient_delimiter")
        user, extension = local, None
        bare = local[1:] if local.startswith("\\") else local
        if delimiter:
            split = split_extension(bare, delimiter,
                                    owner_request_special=self.config.bool("owner_request_special"))
            if split is not None:
                user, extension = split.base, split.extension
            else:
                user = bare
        else:
            user = bare
        return RecipientState(rcpt, address, local, domain, user, extension, delimiter, address.lower())

    # -- one recipient -------------------------------------------------------------------
    async def _recipient(self, request: DeliveryRequest, st: RecipientState) -> None:
        if st.local.startswith("\\"):
            st.local = st.local[1:]
            await self._user(request, st, use_forward=False)
            return
        if not await self._known(st):
            code = self.config.get("unknown_local_recipient_reject_code").strip()
            dsn = "4.1.1" if code.startswith("4") else "5.1.1"
            st.parts.append(failed(dsn, "User unknown in local recipient table"))
            return
        hit = await offload(self.aliases.lookup, st.local)
        matched_base = False
        if hit is None and st.extension is not None:
            hit = await offload(self.aliases.lookup, st.user)
            matched_base = hit is not None
        if hit is not None:
            owner = await offload(self.aliases.find_owner, hit.name)
            extension = st.extension if matched_base and propagate(self.config, "alias") else None
            dests = expand_value(hit.value, origin="alias", identity=hit.owner, sender=owner,
                                 extension=extension, delimiter=st.delimiter)
            st.expanded = True
            await self._destinations(request, st, dests, 0)
            return
        await self._user(request, st, use_forward=True)

    async def _known(self, st: RecipientState) -> bool:
        """``local_recipient_maps``: is the recipient a known local name? (empty: all are)."""
        if not self.config.list("local_recipient_maps") or self.config.get("luser_relay"):
            return True
        keys = [st.address.lower(), st.local]
        if st.extension is not None:
            keys.append(st.user)
            if st.domain:
                keys.append(f"{st.user}@{st.domain.lower()}")
        found = await offload(self._find, "local_recipient_maps", *keys)
        return found is not None

    def _variables(self, st: RecipientState, identity: Identity | None) -> dict[str, str]:
        values = {
            "user": st.user, "extension": st.extension, "domain": st.domain, "local": st.local,
            "mailbox": st.local, "recipient": st.address,
            "recipient_delimiter": st.delimiter if st.extension is not None else None,
            "home": identity.home if identity else None, "shell": identity.shell if identity else None,
        }
        return {k: v for k, v in values.items() if v is not None}

    async def _user(self, request: DeliveryRequest, st: RecipientState, *, use_forward: bool) -> None:
        account = lookup_user(st.user)
        identity: Identity | None = None
        if account is not None:
            identity = account
            if account.uid == 0:
                privs = default_privs_identity(self.config)
                identity = Identity(account.user, privs.uid, privs.gid, account.home, account.shell,
                                    tuple(privs.groups()))
            if self.config.bool("require_home_directory"):
                problem = await offload(self._home_problem, account.home)
                if problem is not None:
                    st.parts.append(failed("4.3.0", f"cannot access home directory {account.home}: {problem}"))
                    return
            if use_forward and await self._dot_forward(request, st, identity):
                return
        # mailbox_transport(_maps) serve every local name, with or without an account.
        st.passed = await self.handoff.mailbox(request, st.rcpt, st.user)
        if st.passed is not None:
            return
        if identity is None:
            await self._unknown(request, st)
            return
        await self._mailbox(request, st, identity)

    @staticmethod
    def _home_problem(home: str) -> str | None:
        """Why ``home`` cannot be reached (require_home_directory), or None when it can."""
        try:
            os.stat(home)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    async def _unknown(self, request: DeliveryRequest, st: RecipientState) -> None:
        st.passed = await self.handoff.fallback(request, st.rcpt, st.user)
        if st.passed is not None:
            return
        relay_raw = self.config.raw("luser_relay") or ""
        if relay_raw.strip():
            filt = self.config.get("command_expansion_filter")
            variables = {k: filtered(v, filt) for k, v in self._variables(st, None).items()}
            relay = expand_text(relay_raw, variables, self.config)
            if relay:
                st.expanded = True
                st.forwards.setdefault(request.sender, []).append(qualify(relay.strip(), self.config))
                return
        st.parts.append(failed("5.1.1", f'unknown user: "{st.user}"'))

    async def _dot_forward(self, request: DeliveryRequest, st: RecipientState, identity: Identity) -> bool:
        filt = self.config.get("forward_expansion_filter")
        variables = {k: filtered(v, filt) for k, v in self._variables(st, identity).items()}
        raw = self.config.raw("forward_path") or ""
        for element in split_raw(raw):
            path = expand_text(element, variables, self.config)
            if not path or not path.startswith("/"):
                continue
            text = await read_list_file(path, identity)
            if text is None:
                continue
            value = file_text_to_value(text)
            if not value:
                continue
            uses_extension = "extension" in element
            extension = st.extension if not uses_extension and propagate(self.config, "forward") else None
            dests = expand_value(value, origin="forward", identity=identity, extension=extension,
                                 delimiter=st.delimiter)
            st.expanded = True
            await self._destinations(request, st, dests, 0)
            return True
        return False

    # -- destinations ----------------------------------------------------------------------
    async def _destinations(self, request: DeliveryRequest, st: RecipientState,
                            dests: Sequence[Destination], depth: int) -> None:
        for dest in dests:
            target = dest.target
            key = (target.kind, target.text, dest.identity.uid)
            if key in st.seen:
                continue  # local(8)'s duplicate filter: one copy per destination
            st.seen.add(key)
            if target.kind == "address":
                sender = dest.sender if dest.sender is not None else request.sender
                address = target.text
                if address.startswith("\\") or "@" not in address:
                    address = qualify(address, self.config)
                st.forwards.setdefault(sender, []).append(address)
            elif target.kind == "file":
                if not self._allowed("allow_mail_to_files", dest.origin):
                    st.parts.append(failed("5.7.1", "mail to file is restricted"))
                    continue
                st.parts.append(await self._file(request, st, target.text, dest.identity))
            elif target.kind == "command":
                if not self._allowed("allow_mail_to_commands", dest.origin):
                    st.parts.append(failed("5.7.1", "mail to command is restricted"))
                    continue
                st.parts.append(await self._command(request, st, target.text, dest.identity, "command"))
            else:
                await self._include(request, st, dest, depth)

    def _allowed(self, param: str, origin: str) -> bool:
        return origin in {item.lower() for item in self.config.list(param)}

    async def _include(self, request: DeliveryRequest, st: RecipientState, dest: Destination, depth: int) -> None:
        path = dest.target.text
        if depth >= INCLUDE_DEPTH_LIMIT:
            st.parts.append(failed("5.4.6", f"mail forwarding loop for {st.address}"))
            return
        if not path.startswith("/"):
            st.parts.append(failed("5.3.5", f":include: path {path} is not absolute"))
            return
        try:
            result = await run_as(dest.identity, "read_file", {"path": path})
        except (OSError, HelperError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            st.parts.append(failed("5.3.0", f"cannot open include file {path}: {reason}"))
            return
        owner_uid = int(result["uid"])
        identity = dest.identity
        if owner_uid not in (0, dest.identity.uid):
            found = None
            try:
                found = Identity.from_passwd(pwd.getpwuid(owner_uid))
            except KeyError:
                pass
            identity = found or dest.identity
        members = expand_value(file_text_to_value(str(result["text"])), origin="include",
                               identity=identity, sender=dest.sender)
        await self._destinations(request, st, members, depth + 1)

    # -- delivery steps -----------------------------------------------------------------
    def _prepend(self, request: DeliveryRequest, st: RecipientState, *, delivered: bool) -> bytes:
        return headers.prepend_headers(sender=request.sender, orig_rcpt=st.rcpt.orig_rcpt,
                                       delivered=st.delivered if delivered else None)

    def _wants_delivered(self, context: str) -> bool:
        return context in {item.lower() for item in self.config.list("prepend_delivered_header")}

    @staticmethod
    def _mbox_pieces(request: DeliveryRequest, prepend: bytes) -> ContentSource:
        def pieces() -> Iterator[bytes]:
            yield headers.from_line(request.sender)
            yield prepend
            yield from headers.with_final_newline(headers.quote_from(request.open_content()), blank_line=True)
        return pieces

    @staticmethod
    def _plain_pieces(request: DeliveryRequest, prepend: bytes) -> ContentSource:
        def pieces() -> Iterator[bytes]:
            yield prepend
            yield from request.open_content()
        return pieces

    def _lock_params(self) -> dict[str, object]:
        return {"locks": [k.lower() for k in self.config.list("mailbox_delivery_lock")],
                "attempts": self.config.int("deliver_lock_attempts"),
                "delay": float(self.config.time("deliver_lock_delay")),
                "stale": float(self.config.time("stale_lock_time"))}

    async def _maildir(self, request: DeliveryRequest, st: RecipientState, path: str,
                       identity: Identity | None, *, delivered: bool) -> Part:
        prepend = self._prepend(request, st, delivered=delivered)
        params = {"path": path, "size": len(prepend) + request.content_size,
                  "size_limit": self.config.int("mailbox_size_limit"), "quota": "none"}
        try:
            await run_as(identity, "maildir", params, self._plain_pieces(request, prepend))
        except Exception as exc:
            dsn, text = store_error(exc, "4.2.0")
            if isinstance(exc, PermissionError) and identity is not None:
                log.warning(f"maildir access problem for UID/GID={identity.uid}/{identity.gid}: {text}",
                            program=self.service)
            return failed(dsn, f"maildir delivery failed: {text}")
        return ok("delivered to maildir")

    async def _mbox(self, request: DeliveryRequest, st: RecipientState, path: str,
                    identity: Identity | None, *, owner: Identity, delivered: bool, what: str,
                    spool: bool = False) -> Part:
        prepend = self._prepend(request, st, delivered=delivered)
        params: dict[str, object] = {"path": path, "size_limit": self.config.int("mailbox_size_limit"),
                                     **self._lock_params()}
        if identity is None and os.geteuid() == 0:
            params["owner"] = [owner.uid, owner.gid]
        if what == "mailbox" and self.config.bool("strict_mailbox_ownership"):
            params["require_owner"] = owner.uid
        pieces = self._mbox_pieces(request, prepend)
        try:
            if spool:
                result = await append_spool(owner, self.service, params, pieces)
                path = str(result.get("path") or path)
            else:
                result = await run_as(identity, "mbox", params, pieces)
        except Exception as exc:
            dsn, text = store_error(exc, "5.2.0")
            if what == "mailbox":
                return failed(dsn, f"cannot update mailbox {path} for user {st.user}. {text}")
            return failed(dsn, f"cannot append message to file {path}: {text}")
        if what != "mailbox":
            return ok(f"delivered to file: {path}")
        if self.config.bool("biff"):
            await offload(self._biff, st.user, path, int(result.get("size", 0)))
        return ok("delivered to mailbox")

    def _biff(self, user: str, path: str, written: int) -> None:
        """comsat's notice: the message starts ``written`` bytes before the mailbox's end."""
        try:
            end = os.stat(path).st_size
        except OSError:
            return
        biff.notify(user, max(end - written, 0), program=self.service)

    async def _file(self, request: DeliveryRequest, st: RecipientState, path: str, identity: Identity) -> Part:
        delivered = self._wants_delivered("file")
        if path.endswith("/"):
            part = await self._maildir(request, st, path, identity, delivered=delivered)
            return part if part.action is not Action.DELIVERED else ok(f"delivered to file: {path}")
        return await self._mbox(request, st, path, identity, owner=identity, delivered=delivered, what="file")

    async def _command(self, request: DeliveryRequest, st: RecipientState, command: str,
                       identity: Identity, context: str) -> Part:
        prepend = self._prepend(request, st, delivered=self._wants_delivered("command"))

        def pieces() -> Iterator[bytes]:
            yield headers.from_line(request.sender)
            yield prepend
            yield from request.open_content()

        attrs = request.attributes
        variables = {
            "HOME": identity.home, "LOGNAME": st.user, "USER": st.user, "SHELL": identity.shell,
            "SENDER": request.sender, "RECIPIENT": st.address, "LOCAL": st.local,
            "DOMAIN": st.domain or "", "EXTENSION": st.extension or "",
            "ORIGINAL_RECIPIENT": st.rcpt.orig_rcpt or "",
            "CLIENT_HOSTNAME": attrs.get("client_name", ""), "CLIENT_ADDRESS": attrs.get("client_address", ""),
            "CLIENT_HELO": attrs.get("helo_name", ""), "CLIENT_PROTOCOL": attrs.get("protocol_name", ""),
            "SASL_METHOD": attrs.get("sasl_method", ""), "SASL_SENDER": attrs.get("sasl_sender", ""),
            "SASL_USERNAME": attrs.get("sasl_username", ""),
        }
        result = await run_command(command, identity=identity, variables=variables, pieces=pieces,
                                   settings=self._command_settings())
        if result.ok:
            return ok(f"delivered to command: {command}")
        return failed(result.dsn, result.text)

    async def _mailbox(self, request: DeliveryRequest, st: RecipientState, identity: Identity) -> None:
        filt = self.config.get("command_expansion_filter")
        variables = {k: filtered(v, filt) for k, v in self._variables(st, identity).items()}
        command = await offload(self._find, "mailbox_command_maps", st.user)
        if command is None:
            raw = self.config.raw("mailbox_command") or ""
            command = expand_text(raw, variables, self.config) if raw.strip() else None
        if command:
            st.parts.append(await self._command(request, st, command, identity, "mailbox"))
            return
        home_mailbox = self.config.get("home_mailbox")
        if home_mailbox:
            path = os.path.join(identity.home, home_mailbox)
            if home_mailbox.endswith("/"):
                st.parts.append(await self._maildir(request, st, path, identity, delivered=True))
            else:
                st.parts.append(await self._mbox(request, st, path, identity, owner=identity,
                                                 delivered=True, what="mailbox"))
            return
        spool = self.config.get("mail_spool_directory")
        path = os.path.join(spool, st.user)
        if spool.endswith("/"):
            st.parts.append(await self._maildir(request, st, path + "/", identity, delivered=True))
            return
        # The spool is written by root (this process, or the spawner under a root
        # master) and the new mailbox handed to the user, as local(8) does for a
        # non-world-writable spool.
        st.parts.append(await self._mbox(request, st, path, None, owner=identity, delivered=True,
                                         what="mailbox", spool=True))

    # -- forwarding through cleanup ---------------------------------------------------------
    async def _flush_forwards(self, request: DeliveryRequest, st: RecipientState) -> None:
        for sender, addresses in st.forwards.items():
            unique = list(dict.fromkeys(addresses))
            st.parts.append(await self._resubmit(request, st, sender, unique))
        st.forwards.clear()

    async def _resubmit(self, request: DeliveryRequest, st: RecipientState, sender: str,
                        addresses: list[str]) -> Part:
        rcpt = st.rcpt
        orcpt = rcpt.dsn_orcpt or f"rfc822;{rcpt.orig_rcpt or rcpt.address}"
        encoding = request.attributes.get("encoding", "").lower()
        # Postfix's forward.c: each new recipient keeps the original recipient
        # of this delivery (X-Original-To downstream).
        original = rcpt.orig_rcpt or rcpt.address
        creq = CleanupRequest(
            source=Source.FORWARD, sender=sender,
            recipients=tuple(RecipientRequest(a, orcpt=orcpt, notify=rcpt.dsn_notify, orig_rcpt=original)
                             for a in addresses),
            dsn_envid=request.dsn_envid, dsn_ret=request.dsn_ret,
            body_type={"8bit": "8BITMIME", "7bit": "7BIT"}.get(encoding, ""),
            submit_uid=os.getuid(), receive_override_options=("no_header_body_checks",),
            content_filter="")
        session = self._cleanup_service().open(creq)
        try:
            if self._wants_delivered("forward"):
                await session.write(f"Delivered-To: {headers.external(st.delivered)}\n".encode(
                    "utf-8", "surrogateescape"))
            chunks = iter(request.open_content())
            while True:
                chunk = await offload(next, chunks, None)
                if chunk is None:
                    break
                await session.write(chunk)
            result = await session.finish()
        except Exception as exc:
            await session.abort()
            log.warning(f"{request.queue_id}: forward to cleanup failed: {exc}", program=self.service)
            return failed("4.3.0", "error writing queue file")
        if result.outcome is Outcome.QUEUED and result.queue_id:
            return Part(Action.EXPANDED, "2.0.0", f"forwarded as {result.queue_id}")
        if result.outcome is Outcome.DISCARDED:
            return ok("forwarded (discarded)")
        reply = result.reply
        if reply is None:
            return failed("4.3.0", "error writing queue file")
        return failed(reply.status or ("5.3.0" if reply.is_permanent else "4.3.0"), reply.text)


def make_agent(config: Config, service: str, runtime: Runtime | None = None,
               pool: AgentPool | None = None) -> LocalAgent:
    """The local delivery agent; ``runtime`` provides the cleanup service for forwarding,
    ``pool`` the other transports' agents for mailbox_transport and fallback_transport."""
    return LocalAgent(config, service, runtime, pool)

