"""check_*_access restrictions: access(5) table lookups and their results.

* ``check_client_access type:table``: the verified client name and its
  parents, then the client address (``1.2.3.4``, ``1.2.3``, ...), named
  ``<name[addr]>: Client host``;
* ``check_reverse_client_access``: the same with the unverified reverse
  name (``Unverified Client host``);
* ``check_helo_access``: the HELO name and its parents (``Helo command``);
* ``check_sender_access`` / ``check_recipient_access``: the address keys
  of access(5) (``Sender address`` / ``Recipient address``);
* ``check_sender_mx_access`` / ``check_recipient_mx_access`` /
  ``check_helo_mx_access``: the MX hosts of the domain (or the domain
  itself when it has none) and their addresses.

:func:`apply_result` gives a result its meaning (also used for policy
service replies): OK and all-numeric results permit; REJECT and DEFER
refuse with ``access_map_reject_code`` / ``access_map_defer_code`` and the
table's text (default ``Access denied``); ``4NN``/``5NN text`` refuse with
that code; DEFER_IF_REJECT / DEFER_IF_PERMIT arm the same-named
mechanisms (default text ``Service unavailable``); HOLD, DISCARD, REDIRECT, FILTER, PREPEND, WARN, INFO and BCC
become actions (DISCARD also ends every further check of the
transaction); a PREPEND at END-OF-MESSAGE is logged (``warning: access
table T: action PREPEND must be used before smtpd_end_of_data_restrictions``)
and ignored, as in Postfix; DUNNO does nothing; anything else is a
restriction list.

A table that cannot be opened or searched gives ``451 4.3.5 <name>:
Class rejected: Server configuration error`` (Postfix 3.7's reply for
both), never an accept or a reject.

Parameters read: ``access_map_reject_code``, ``access_map_defer_code``,
``parent_domain_matches_subdomains`` (for ``smtpd_access_maps``),
``recipient_delimiter``, ``smtpd_null_access_lookup_key``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TYPE_CHECKING

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.dns.resolver import DnsNotFound, DnsRetry
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd.access import address_keys, domain_keys, hostaddr_keys, is_fixed, parse_action
from mailhorn.smtpd.checks_core import (
    PERMIT,
    Handler,
    ListCtx,
    Outcome,
    Run,
    client_namaddr,
    policy_reply,
    rejection,
)
from mailhorn.smtpd.state import Action, Stage
from mailhorn.tables.base import Table, TableConfigError, TableRetry, lookup_async
from mailhorn.tables.matchlist import parent_style
from mailhorn.tables.registry import open_table

if TYPE_CHECKING:
    from mailhorn.smtpd.checks import SmtpdChecks

__all__ = ["RESTRICTIONS", "apply_result"]


class _Unusable(Exception):
    """The table could not be opened or searched."""


def _open(eng: SmtpdChecks, spec: str) -> Table:
    try:
        return open_table(spec, eng.config)
    except (TableConfigError, TableRetry, ConfigError, OSError) as exc:
        log.warning(f"{spec} is unavailable. {exc}")
        raise _Unusable(spec) from exc


async def _search(table: Table, keys: Iterable[str]) -> str | None:
    for key in keys:
        try:
            value = await lookup_async(table, key)
        except (TableRetry, TableConfigError) as exc:
            log.warning(f"{table.type}:{table.name} lookup error for \"{key}\": {exc}")
            raise _Unusable(table.name) from exc
        if value is not None:
            return value
    return None


def _config_error(name: str, klass: str) -> Reply:
    return rejection(451, "4.3.5", name, klass, "Server configuration error")


async def apply_result(eng: SmtpdChecks, run: Run, ctx: ListCtx, value: str, where: str, name: str,
                       klass: str, policy: bool = False) -> Outcome:
    """The meaning of an access(5) result ``value`` for the request ``<name>: klass``."""
    cfg = eng.config
    result = parse_action(value)
    verb, text = result.verb, result.text
    if verb == "OK":
        return PERMIT
    if verb == "DUNNO":
        return None
    if verb == "REJECT":
        return policy_reply(cfg.int("access_map_reject_code"), "5.7.1", name, klass, text, "Access denied")
    if verb == "DEFER":
        return policy_reply(cfg.int("access_map_defer_code"), "4.7.1", name, klass, text, "Access denied")
    if verb == "NUMERIC":
        code = result.code
        return policy_reply(code, f"{code // 100}.7.1", name, klass, text, "Access denied")
    if verb == "DEFER_IF_REJECT":
        if ctx.defer_if_reject is None:
            ctx.defer_if_reject = policy_reply(cfg.int("access_map_defer_code"), "4.7.1", name, klass, text,
                                               "Service unavailable")
        return None
    if verb == "DEFER_IF_PERMIT":
        if run.defer_if_permit is None:
            run.defer_if_permit = policy_reply(cfg.int("access_map_defer_code"), "4.7.1", name, klass, text,
                                               "Service unavailable")
        return None
    if verb in ("HOLD", "DISCARD"):
        run.actions.append(Action(verb, text or f"<{name}>: {klass} triggers {verb} action"))
        if verb == "DISCARD":
            run.discard = True
            return PERMIT
        return None
    if verb in ("REDIRECT", "FILTER", "BCC"):
        if not text:
            log.warning(f"{where}: {verb} action without argument")
            return _config_error(name, klass)
        run.actions.append(Action(verb, text))
        return None
    if verb == "PREPEND":
        if run.stage is Stage.END_OF_MESSAGE:
            # The headers are written already; Postfix warns and goes on (DUNNO).
            table = where.removeprefix("policy query ")
            log.warning(f"access table {table}: action PREPEND must be used before "
                        "smtpd_end_of_data_restrictions")
            return None
        if not text:
            log.warning(f"{where}: PREPEND action without header")
            return _config_error(name, klass)
        run.actions.append(Action(verb, text))
        return None
    if verb in ("WARN", "INFO"):
        run.actions.append(Action(verb, f"<{name}>: {klass} {text}".rstrip()))
        return None
    if policy:
        log.warning(f"{where}: unknown action in policy reply: {value}")
        return _config_error(name, klass)
    return await eng.evaluate_value(run, ctx, value, where)


async def _lookup_and_apply(eng: SmtpdChecks, run: Run, ctx: ListCtx, spec: str, keys: Iterable[str],
                            name: str, klass: str) -> Outcome:
    try:
        value = await _search(_open(eng, spec), keys)
    except _Unusable:
        return _config_error(name, klass)
    if value is None:
        return None
    return await apply_result(eng, run, ctx, value, spec, name, klass)


def _parent(eng: SmtpdChecks) -> bool:
    return parent_style(eng.config, "smtpd_access_maps")


def _host_keys(eng: SmtpdChecks, table: Table, hostname: str | None, addr: str) -> list[str]:
    keys: list[str] = []
    fixed = is_fixed(table)
    if hostname and hostname != "unknown":
        keys.extend(domain_keys(hostname.lower(), _parent(eng), fixed))
    if addr:
        keys.extend(hostaddr_keys(addr.lower(), fixed))
    return keys


async def _client(eng: SmtpdChecks, run: Run, ctx: ListCtx, spec: str, reverse: bool) -> Outcome:
    st = run.state
    klass = "Client host"
    name = client_namaddr(st)
    try:
        table = _open(eng, spec)
        hostname = st.reverse_client_name if reverse else st.client_name
        value = await _search(table, _host_keys(eng, table, hostname, st.client_addr))
    except _Unusable:
        return _config_error(name, klass)
    if value is None:
        return None
    return await apply_result(eng, run, ctx, value, spec, name, klass)


async def _check_client_access(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return await _client(eng, run, ctx, arg, False)


async def _check_reverse_client_access(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return await _client(eng, run, ctx, arg, True)


async def _check_helo_access(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    helo = run.state.helo_name
    if helo is None:
        return None
    try:
        table = _open(eng, arg)
    except _Unusable:
        return _config_error(helo, "Helo command")
    keys = domain_keys(helo.lower().rstrip("."), _parent(eng), is_fixed(table))
    return await _lookup_and_apply(eng, run, ctx, arg, keys, helo, "Helo command")


def _address_access(kind: str) -> Handler:
    klass = "Sender address" if kind == "sender" else "Recipient address"

    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        address = run.state.sender if kind == "sender" else run.state.recipient
        if address is None:
            return None
        try:
            table = _open(eng, arg)
        except _Unusable:
            return _config_error(address, klass)
        keys = list(address_keys(
            address.lower() if is_fixed(table) else address,
            null_key=eng.config.get("smtpd_null_access_lookup_key"),
            delimiters=eng.config.get("recipient_delimiter"),
            parent_style=_parent(eng), fixed=is_fixed(table)))
        return await _lookup_and_apply(eng, run, ctx, arg, keys, address, klass)
    return handler


def _mx_access(kind: str) -> Handler:
    klass = {"sender": "Sender address", "recipient": "Recipient address", "helo": "Helo command"}[kind]

    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        st = run.state
        subject = {"sender": st.sender, "recipient": st.recipient, "helo": st.helo_name}[kind]
        if not subject:
            return None
        domain = subject.rpartition("@")[2] if kind != "helo" else subject
        domain = domain.lower().rstrip(".")
        if not domain or domain.startswith("["):
            return None
        try:
            hosts = [mx.exchange for mx in await eng.resolver.mx(domain) if not mx.is_null]
        except DnsNotFound:
            hosts = [domain]
        except DnsRetry:
            return None
        for host in hosts:
            try:
                addrs = await eng.resolver.host_addresses(host)
            except (DnsNotFound, DnsRetry):
                addrs = []
            try:
                table = _open(eng, arg)
                value = await _search(table, _host_keys(eng, table, host, ""))
                if value is None:
                    for addr in addrs:
                        value = await _search(table, _host_keys(eng, table, None, addr))
                        if value is not None:
                            break
            except _Unusable:
                return _config_error(subject, klass)
            if value is not None:
                outcome = await apply_result(eng, run, ctx, value, arg, subject, klass)
                if outcome is not None:
                    return outcome
        return None
    return handler


RESTRICTIONS: Final[dict[str, tuple[Handler, bool]]] = {
    "check_client_access": (_check_client_access, True),
    "check_reverse_client_access": (_check_reverse_client_access, True),
    "check_helo_access": (_check_helo_access, True),
    "check_sender_access": (_address_access("sender"), True),
    "check_recipient_access": (_address_access("recipient"), True),
    "check_sender_mx_access": (_mx_access("sender"), True),
    "check_recipient_mx_access": (_mx_access("recipient"), True),
    "check_helo_mx_access": (_mx_access("helo"), True),
}
