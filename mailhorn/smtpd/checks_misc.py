"""Restrictions on TLS, SASL, bounces and backup MX service.

* ``permit_tls_clientcerts``: the client certificate's fingerprint (or
  public-key fingerprint) is in ``relay_clientcerts``;
  ``permit_tls_all_clientcerts``: any verified client certificate.
* ``check_ccert_access type:table``: the certificate fingerprints looked
  up as access(5) keys (``Client certificate``).
* ``check_sasl_access type:table``: the SASL login name (``SASL login name``).
* ``reject_plaintext_session``: ``450 4.7.1 Session encryption is
  required`` (``plaintext_reject_code``) without TLS.
* ``reject_multi_recipient_bounce``: a null sender with more than one
  recipient: ``550 5.5.3 <...>: ... rejected: Multi-recipient bounce``
  (``multi_recipient_bounce_reject_code``), at RCPT once one recipient is
  accepted, at DATA and later when more than one was.
* ``permit_mx_backup``: the recipient domain is an authorized destination,
  or one of its MX hosts is this host (``myhostname`` or one of our
  addresses) and, with ``permit_mx_backup_networks`` set, every better MX
  host's address is inside those networks.
* ``sleep N``: pause N seconds (postconf(5): a deterrent for spambots).

Parameters read: ``relay_clientcerts``, ``plaintext_reject_code``,
``multi_recipient_bounce_reject_code``, ``permit_mx_backup_networks``,
``myhostname``, ``inet_interfaces``, ``proxy_interfaces``.
"""

from __future__ import annotations

import asyncio
from typing import Final, TYPE_CHECKING

from mailhorn.dns.resolver import DnsNotFound, DnsRetry
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd import checks_access
from mailhorn.smtpd.checks_core import PERMIT, SERVER_CONFIG_ERROR, Handler, ListCtx, Outcome, Run, rejection
from mailhorn.smtpd.checks_resolve import is_local_address
from mailhorn.smtpd.state import Stage
from mailhorn.tables.base import TableConfigError, TableRetry, lookup_async
from mailhorn.tables.matchlist import MatchListRetry, addr_match_list_from_config, string_list_from_config
from mailhorn.tables.registry import open_table

if TYPE_CHECKING:
    from mailhorn.smtpd.checks import SmtpdChecks

__all__ = ["RESTRICTIONS"]


async def _permit_tls_clientcerts(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    st = run.state
    certs = string_list_from_config(eng.config, "relay_clientcerts")
    for fingerprint in (st.tls_peer_fingerprint, st.tls_peer_pubkey_fingerprint):
        try:
            if fingerprint and certs.match(fingerprint):
                return PERMIT
        except MatchListRetry:
            return Reply.of(451, "4.3.0", f"<{st.client_name}[{st.client_addr}]>: Temporary lookup failure")
    return None


async def _permit_tls_all_clientcerts(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return PERMIT if run.state.tls_peer_fingerprint else None


async def _lookup_one(eng: SmtpdChecks, run: Run, ctx: ListCtx, spec: str, keys: list[str], name: str,
                      klass: str) -> Outcome:
    try:
        table = open_table(spec, eng.config)
        for key in keys:
            value = await lookup_async(table, key)
            if value is not None:
                return await checks_access.apply_result(eng, run, ctx, value, spec, name, klass)
    except (TableRetry, TableConfigError, OSError):
        return rejection(451, "4.3.5", name, klass, "Server configuration error")
    return None


async def _check_ccert_access(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    st = run.state
    keys = [k for k in (st.tls_peer_fingerprint, st.tls_peer_pubkey_fingerprint) if k]
    if not keys:
        return None
    return await _lookup_one(eng, run, ctx, arg, keys, f"{st.client_name}[{st.client_addr}]", "Client certificate")


async def _check_sasl_access(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    login = run.state.sasl_username
    if not login:
        return None
    return await _lookup_one(eng, run, ctx, arg, [login], login, "SASL login name")


async def _reject_plaintext_session(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    if run.state.tls_protocol:
        return None
    code = eng.config.int("plaintext_reject_code")
    return Reply.of(code, f"{code // 100}.7.1", "Session encryption is required")


async def _reject_multi_recipient_bounce(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    st = run.state
    if st.sender != "":
        return None
    limit = 0 if run.stage in (Stage.RCPT, Stage.VRFY) else 1
    if st.recipient_count <= limit:
        return None
    code = eng.config.int("multi_recipient_bounce_reject_code")
    return rejection(code, f"{code // 100}.5.3", ctx.name(st), ctx.klass, "Multi-recipient bounce")


def _is_me(eng: SmtpdChecks, host: str, addrs: list[str]) -> bool:
    if host == eng.config.get("myhostname").lower():
        return True
    interfaces = eng.config.list("inet_interfaces") + eng.config.list("proxy_interfaces")
    return any(is_local_address(a, interfaces) for a in addrs)


async def _permit_mx_backup(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    recipient = run.state.recipient
    if recipient is None:
        return None
    res = eng.addresses.resolve(recipient)
    if res.authorized:
        return PERMIT
    if res.routed or not res.domain or res.domain.startswith("["):
        return None
    try:
        mxs = [mx for mx in await eng.resolver.mx(res.domain) if not mx.is_null]
    except (DnsNotFound, DnsRetry):
        return None
    networks = addr_match_list_from_config(eng.config, "permit_mx_backup_networks")
    restrict = bool(eng.config.get("permit_mx_backup_networks").strip())
    better: list[str] = []
    for mx in mxs:
        try:
            addrs = await eng.resolver.host_addresses(mx.exchange)
        except (DnsNotFound, DnsRetry):
            addrs = []
        if _is_me(eng, mx.exchange, addrs):
            if mx is mxs[0] or not better:
                # We are the best MX: not a backup, and not our domain either.
                return None
            if restrict:
                try:
                    if not all(networks.match(a) for a in better):
                        return None
                except MatchListRetry:
                    return Reply.of(451, "4.3.0", f"<{recipient}>: Temporary lookup failure")
            return PERMIT
        better.extend(addrs)
    return None


async def _sleep(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    if not arg.isdigit():
        return SERVER_CONFIG_ERROR
    await asyncio.sleep(int(arg))
    return None


RESTRICTIONS: Final[dict[str, tuple[Handler, bool]]] = {
    "permit_tls_clientcerts": (_permit_tls_clientcerts, False),
    "permit_tls_all_clientcerts": (_permit_tls_all_clientcerts, False),
    "check_ccert_access": (_check_ccert_access, True),
    "check_sasl_access": (_check_sasl_access, True),
    "reject_plaintext_session": (_reject_plaintext_session, False),
    "reject_multi_recipient_bounce": (_reject_multi_recipient_bounce, False),
    "permit_mx_backup": (_permit_mx_backup, False),
    "sleep": (_sleep, True),
}
