"""Address restrictions: syntax, unlisted addresses, SASL login ownership.

* ``reject_non_fqdn_sender`` / ``_recipient``: the domain must be a
  fully-qualified host name (or an address literal): ``504 5.5.2 <a@b>:
  Sender address rejected: need fully-qualified address``
  (``non_fqdn_reject_code``); the null sender passes.
* ``reject_non_fqdn_helo_hostname``: ``504 5.5.2 <x>: Helo command
  rejected: need fully-qualified hostname``; ``reject_invalid_helo_hostname``:
  ``501 5.5.2 <x>: Helo command rejected: Invalid name`` (``... invalid ip
  address`` for a bad ``[literal]``, ``invalid_hostname_reject_code``);
  address literals pass both when valid.
* ``reject_unlisted_sender`` / ``reject_unlisted_recipient`` (and the
  implicit ``smtpd_reject_unlisted_*``): by address class
  (:mod:`mailhorn.smtpd.checks_resolve`), the address must be known:
  local — ``local_recipient_maps`` (when not empty); virtual alias —
  ``virtual_alias_maps``; virtual mailbox — ``virtual_mailbox_maps``;
  relay — ``relay_recipient_maps`` (when not empty).  An address found in
  ``virtual_alias_maps`` is known in every class; the local ``postmaster``
  is always known.  Keys, as Postfix's
  mail_addr_find: ``user+ext@domain``, ``user@domain``, then for a local
  domain ``user+ext`` and ``user``, then ``@domain``.  The replies are
  ``550 5.1.1 <u@d>: Recipient address rejected: User unknown in local
  recipient table`` (``unknown_local_recipient_reject_code``; 5.1.0 for senders), ``... in
  virtual alias table`` (``unknown_virtual_alias_reject_code``), ``... in
  virtual mailbox table``, ``... in relay recipient table``.  A failed
  lookup gives ``451 4.3.0 <u@d>: Temporary lookup failure``.
* ``reject_sender_login_mismatch`` and its ``authenticated``/
  ``unauthenticated`` halves: ``smtpd_sender_login_maps`` names the
  SASL logins that own a sender address (results are lists separated by
  commas or spaces); ``553 5.7.1 <a@b>: Sender address rejected: not owned
  by user LOGIN`` or ``... not logged in``;
  ``reject_known_sender_login_mismatch`` checks only senders the maps know.

Parameters read: the maps and codes named above, ``recipient_delimiter``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, TYPE_CHECKING

from mailhorn import log
from mailhorn.address.idna import is_fqdn_address, is_fqdn_hostname, valid_hostaddr, valid_hostname
from mailhorn.config.errors import ConfigError
from mailhorn.config.maincf import split_list
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd.checks_core import Handler, ListCtx, Outcome, Run, rejection
from mailhorn.smtpd.checks_resolve import AddressClass
from mailhorn.tables.base import TableConfigError, TableRetry, lookup_async
from mailhorn.tables.registry import open_table

if TYPE_CHECKING:
    from mailhorn.smtpd.checks import SmtpdChecks

__all__ = ["RESTRICTIONS", "unlisted"]


def _non_fqdn(kind: str) -> Handler:
    klass = "Sender address" if kind == "sender" else "Recipient address"

    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        address = run.state.sender if kind == "sender" else run.state.recipient
        if not address:
            return None
        if is_fqdn_address(address, smtputf8=True):
            return None
        return rejection(eng.config.int("non_fqdn_reject_code"), "5.5.2", address, klass,
                         "need fully-qualified address")
    return handler


def _literal_ok(helo: str) -> bool | None:
    """None when not an address literal, else whether it is a valid one."""
    if not (helo.startswith("[") and helo.endswith("]")):
        return None
    inner = helo[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    return valid_hostaddr(inner)


async def _reject_non_fqdn_helo(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    helo = run.state.helo_name
    if helo is None:
        return None
    literal: bool | None = _literal_ok(helo)
    if literal is True or (literal is None and is_fqdn_hostname(helo, smtputf8=True)):
        return None
    return rejection(eng.config.int("non_fqdn_reject_code"), "5.5.2", helo, "Helo command",
                     "need fully-qualified hostname")


async def _reject_invalid_helo(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    helo = run.state.helo_name
    if helo is None:
        return None
    literal: bool | None = _literal_ok(helo)
    if literal is False:
        return rejection(eng.config.int("invalid_hostname_reject_code"), "5.5.2", helo, "Helo command",
                         "invalid ip address")
    name = helo[:-1] if helo.endswith(".") else helo
    if literal is True or (literal is None and (valid_hostname(name) or valid_hostaddr(name))):
        return None
    return rejection(eng.config.int("invalid_hostname_reject_code"), "5.5.2", helo, "Helo command", "Invalid name")


def _find_keys(address: str, local_domain: bool, delimiters: str) -> Iterator[str]:
    local, _, domain = address.rpartition("@")
    stripped: str | None = None
    if delimiters and local.lower() not in ("postmaster", "mailer-daemon"):
        cut = min((local.find(ch) for ch in delimiters if ch in local), default=-1)
        if cut > 0:
            stripped = local[:cut]
    yield address
    if stripped is not None:
        yield f"{stripped}@{domain}"
    if local_domain:
        yield local
        if stripped is not None:
            yield stripped
    yield f"@{domain}"


async def _known(eng: SmtpdChecks, param: str, address: str, local_domain: bool) -> bool:
    """Whether any table of ``param`` knows the address; TableRetry when undecidable."""
    delimiters = eng.config.get("recipient_delimiter")
    for spec in split_list(eng.config.get(param)):
        try:
            table = open_table(spec, eng.config)
        except (TableConfigError, ConfigError, OSError) as exc:
            log.warning(f"{param}: {spec}: {exc}")
            raise TableRetry(f"{spec}: table unavailable") from exc
        for key in _find_keys(address, local_domain, delimiters):
            try:
                if await lookup_async(table, key) is not None:
                    return True
            except TableConfigError as exc:
                raise TableRetry(str(exc)) from exc
    return False


_CLASS_MAPS: Final = {
    AddressClass.LOCAL: ("local_recipient_maps", "unknown_local_recipient_reject_code", "local recipient table"),
    AddressClass.VIRTUAL_ALIAS: ("virtual_alias_maps", "unknown_virtual_alias_reject_code", "virtual alias table"),
    AddressClass.VIRTUAL_MAILBOX: ("virtual_mailbox_maps", "unknown_virtual_mailbox_reject_code",
                                   "virtual mailbox table"),
    AddressClass.RELAY: ("relay_recipient_maps", "unknown_relay_recipient_reject_code", "relay recipient table"),
}


async def unlisted(eng: SmtpdChecks, run: Run, kind: str) -> Outcome:
    """reject_unlisted_sender / reject_unlisted_recipient."""
    external = run.state.sender if kind == "sender" else run.state.recipient
    if not external:
        return None
    klass = "Sender address" if kind == "sender" else "Recipient address"
    try:
        res = eng.addresses.resolve(external)
        entry = _CLASS_MAPS.get(res.klass)
        if entry is None:
            return None
        param, code_param, what = entry
        address = res.address.lower()
        local = res.klass is AddressClass.LOCAL
        if local and address.rpartition("@")[0] == "postmaster":
            # Postfix never refuses the local postmaster (RFC 5321 §4.5.1).
            return None
        if res.klass is AddressClass.LOCAL or res.klass is AddressClass.RELAY:
            if not eng.config.get(param).strip():
                return None
        if await _known(eng, "virtual_alias_maps", address, local):
            return None
        if res.klass is not AddressClass.VIRTUAL_ALIAS and await _known(eng, param, address, local):
            return None
    except TableRetry as exc:
        log.warning(f"{kind} address lookup failed: {exc}")
        return Reply.of(451, "4.3.0", f"<{external}>: Temporary lookup failure")
    dsn = "5.1.0" if kind == "sender" else "5.1.1"
    return rejection(eng.config.int(code_param), dsn, external, klass, f"User unknown in {what}")


async def _reject_unlisted_sender(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return await unlisted(eng, run, "sender")


async def _reject_unlisted_recipient(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return await unlisted(eng, run, "recipient")


async def _owners(eng: SmtpdChecks, sender: str) -> list[str] | None:
    """The logins that own ``sender`` per smtpd_sender_login_maps; None when unowned."""
    address = sender.lower()
    local = eng.addresses.is_local_domain(address.rpartition("@")[2])
    for spec in split_list(eng.config.get("smtpd_sender_login_maps")):
        try:
            table = open_table(spec, eng.config)
        except (TableConfigError, ConfigError, OSError) as exc:
            raise TableRetry(f"{spec}: table unavailable: {exc}") from exc
        for key in _find_keys(address, local, ""):
            value = await lookup_async(table, key)
            if value is not None:
                return split_list(value)
    return None


def _login_mismatch(authenticated: bool, unauthenticated: bool, known_only: bool = False) -> Handler:
    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        st = run.state
        if not st.sender:
            return None
        code = 553
        try:
            owners = await _owners(eng, st.sender)
        except TableRetry as exc:
            log.warning(f"smtpd_sender_login_maps: {exc}")
            return Reply.of(451, "4.3.0", f"<{st.sender}>: Temporary lookup failure")
        if known_only and owners is None:
            return None
        if st.sasl_username:
            if not authenticated:
                return None
            if owners is None or st.sasl_username.lower() not in (o.lower() for o in owners):
                return rejection(code, "5.7.1", st.sender, "Sender address",
                                 f"not owned by user {st.sasl_username}")
            return None
        if unauthenticated and owners is not None:
            return rejection(code, "5.7.1", st.sender, "Sender address", "not logged in")
        return None
    return handler


RESTRICTIONS: Final[dict[str, tuple[Handler, bool]]] = {
    "reject_non_fqdn_sender": (_non_fqdn("sender"), False),
    "reject_non_fqdn_recipient": (_non_fqdn("recipient"), False),
    "reject_non_fqdn_helo_hostname": (_reject_non_fqdn_helo, False),
    "reject_non_fqdn_hostname": (_reject_non_fqdn_helo, False),
    "reject_invalid_helo_hostname": (_reject_invalid_helo, False),
    "reject_invalid_hostname": (_reject_invalid_helo, False),
    "reject_unlisted_sender": (_reject_unlisted_sender, False),
    "reject_unlisted_recipient": (_reject_unlisted_recipient, False),
    "reject_unknown_recipient": (_reject_unlisted_recipient, False),
    "reject_sender_login_mismatch": (_login_mismatch(True, True), False),
    "reject_authenticated_sender_login_mismatch": (_login_mismatch(True, False), False),
    "reject_unauthenticated_sender_login_mismatch": (_login_mismatch(False, True), False),
    # postconf(5), Postfix 3.6: only senders that smtpd_sender_login_maps knows.
    "reject_known_sender_login_mismatch": (_login_mismatch(True, True, known_only=True), False),
}
