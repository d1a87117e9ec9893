"""DNS restrictions: unknown hosts and domains, DNS block and allow lists.

* ``reject_unknown_client_hostname``: the client has no verified name
  (``client_name_status``): ``450 4.7.25 Client host rejected: cannot find
  your hostname, [1.2.3.4]`` (``unknown_client_reject_code`` when the
  failure is permanent, 450 when temporary); ``reject_unknown_reverse_client_hostname``
  likewise with "reverse hostname".
* ``reject_unknown_helo_hostname``: the HELO name has neither MX nor
  address records: ``450 4.7.1 <x>: Helo command rejected: Host not found``
  (``unknown_hostname_reject_code``).
* ``reject_unknown_sender_domain`` / ``_recipient_domain``: the domain
  has no MX and no address records: ``450 4.1.8 <a@b>: Sender address
  rejected: Domain not found`` / ``450 4.1.2 ... Recipient address
  rejected: Domain not found`` (``unknown_address_reject_code``); a null
  MX (RFC 7505) gives ``550 5.7.27 ... Domain D does not accept mail
  (nullMX)`` for senders and ``556 5.1.10`` for recipients.  Domains of
  ours (local and virtual classes) and address literals are not looked up.
  A temporary DNS failure acts as ``unknown_address_tempfail_action`` /
  ``unknown_helo_hostname_tempfail_action`` says (``defer_if_permit`` or
  ``defer``) with a 450 reply.
* ``reject_rbl_client zone[=filter]``, ``reject_rhsbl_client``,
  ``_reverse_client``, ``_helo``, ``_sender``, ``_recipient zone[=filter]``:
  a listed name (an A record, matching the filter: ``127.0.0.2`` or
  per-octet ``[2..5]`` / ``[2;4]``) refuses with ``rbl_reply_maps``' or
  ``default_rbl_reply``'s text, expanded with ``$rbl_code``
  (``maps_rbl_reject_code``), ``$rbl_class``, ``$rbl_what``, ``$rbl_domain``,
  ``$rbl_txt``/``$rbl_reason`` (the TXT record), ``$client_address``,
  ``$client_name``, ``$helo_name``, ``$sender``, ``$recipient`` ...;
  temporary DNS failures count as not listed (with a warning), as Postfix.
* ``permit_dnswl_client zone[=filter]`` / ``permit_rhswl_client``: a listed
  client is permitted.

Parameters read: the codes and actions above, ``default_rbl_reply``,
``rbl_reply_maps``, ``maps_rbl_reject_code``.
"""

from __future__ import annotations

import ipaddress
from typing import Final, TYPE_CHECKING

from mailhorn import log
from mailhorn.config.maincf import Expander
from mailhorn.dns.resolver import DnsNotFound, DnsRetry
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd.checks_core import PERMIT, Handler, ListCtx, Outcome, Run, client_namaddr, dsn_and_text, rejection
from mailhorn.smtpd.checks_resolve import AddressClass
from mailhorn.tables.base import TableConfigError, TableRetry, lookup_async
from mailhorn.tables.registry import open_table

if TYPE_CHECKING:
    from mailhorn.smtpd.checks import SmtpdChecks

__all__ = ["RESTRICTIONS", "rbl_query_name", "filter_matches"]


def _tempfail(eng: SmtpdChecks, run: Run, param: str, reply: Reply) -> Outcome:
    """Apply ``*_tempfail_action`` (defer_if_permit or defer) to a 450 reply."""
    action = eng.config.get(param).strip().lower()
    if action == "defer":
        return reply
    if run.defer_if_permit is None:
        run.defer_if_permit = reply
    return None


async def _unknown_client(eng: SmtpdChecks, run: Run, reverse: bool) -> Outcome:
    st = run.state
    status = st.reverse_client_name_status if reverse else st.client_name_status
    if status == 0:
        return None
    what = "reverse hostname" if reverse else "hostname"
    code = eng.config.int("unknown_client_reject_code") if status >= 5 else 450
    return Reply.of(code, "4.7.25" if code < 500 else "5.7.25",
                    f"Client host rejected: cannot find your {what}, [{st.client_addr}]")


async def _reject_unknown_client(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return await _unknown_client(eng, run, False)


async def _reject_unknown_reverse_client(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return await _unknown_client(eng, run, True)


async def _domain_exists(eng: SmtpdChecks, domain: str) -> str:
    """``ok``, ``nullmx``, ``notfound`` or ``retry`` for a mail domain."""
    try:
        mxs = await eng.resolver.mx(domain)
        if len(mxs) == 1 and mxs[0].is_null:
            return "nullmx"
        return "ok"
    except DnsRetry:
        return "retry"
    except DnsNotFound:
        pass
    try:
        await eng.resolver.host_addresses(domain)
        return "ok"
    except DnsRetry:
        return "retry"
    except DnsNotFound:
        return "notfound"


async def _reject_unknown_helo(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    helo = run.state.helo_name
    if not helo or helo.startswith("["):
        return None
    name = helo.rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    found = await _domain_exists(eng, name)
    if found in ("ok", "nullmx"):
        return None
    reply = rejection(eng.config.int("unknown_hostname_reject_code"), "4.7.1", helo, "Helo command",
                      "Host not found")
    if found == "retry":
        return _tempfail(eng, run, "unknown_helo_hostname_tempfail_action",
                         rejection(450, "4.7.1", helo, "Helo command", "Host not found"))
    return reply


def _unknown_domain(kind: str) -> Handler:
    klass = "Sender address" if kind == "sender" else "Recipient address"

    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        address = run.state.sender if kind == "sender" else run.state.recipient
        if not address:
            return None
        res = eng.addresses.resolve(address)
        domain = res.domain
        if not domain or domain.startswith("[") or res.klass in (
                AddressClass.LOCAL, AddressClass.VIRTUAL_ALIAS, AddressClass.VIRTUAL_MAILBOX):
            return None
        found = await _domain_exists(eng, domain)
        if found == "ok":
            return None
        if found == "nullmx":
            if kind == "sender":
                return rejection(550, "5.7.27", address, klass, f"Domain {domain} does not accept mail (nullMX)")
            return rejection(556, "5.1.10", address, klass, f"Domain {domain} does not accept mail (nullMX)")
        dsn = "4.1.8" if kind == "sender" else "4.1.2"
        if found == "retry":
            return _tempfail(eng, run, "unknown_address_tempfail_action",
                             rejection(450, dsn, address, klass, "Domain not found"))
        code = eng.config.int("unknown_address_reject_code")
        if code >= 500:
            dsn = "5" + dsn[1:]
        return rejection(code, dsn, address, klass, "Domain not found")
    return handler


def rbl_query_name(addr: str, zone: str) -> str | None:
    """``4.3.2.1.zone`` for 1.2.3.4; IPv6 as reversed nibbles."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + "." + zone
    nibbles = ip.exploded.replace(":", "")
    return ".".join(reversed(nibbles)) + "." + zone


def filter_matches(pattern: str, address: str) -> bool:
    """A dnsxl reply filter: ``127.0.0.2``, ``127.0.0.[2..5]``, ``127.0.0.[2;4;6]``."""
    pat_parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(pattern):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "." and depth == 0:
            pat_parts.append(pattern[start:i])
            start = i + 1
    pat_parts.append(pattern[start:])
    addr_parts = address.split(".")
    if len(pat_parts) != 4 or len(addr_parts) != 4:
        return False
    for pat, octet in zip(pat_parts, addr_parts):
        value = int(octet)
        if pat.startswith("[") and pat.endswith("]"):
            inner = pat[1:-1]
            ok = False
            for part in inner.split(";"):
                if ".." in part:
                    lo, _, hi = part.partition("..")
                    ok = ok or (lo.isdigit() and hi.isdigit() and int(lo) <= value <= int(hi))
                elif part.isdigit():
                    ok = ok or int(part) == value
            if not ok:
                return False
        elif not pat.isdigit() or int(pat) != value:
            return False
    return True


async def _listed(eng: SmtpdChecks, query: str, filt: str | None) -> tuple[bool, str]:
    """Whether ``query`` is listed (and the TXT reason)."""
    try:
        addrs = await eng.resolver.a(query)
    except DnsNotFound:
        return False, ""
    except DnsRetry as exc:
        log.warning(f"{query}: RBL lookup error: {exc}")
        return False, ""
    if filt is not None and not any(filter_matches(filt, a) for a in addrs):
        return False, ""
    try:
        reason = "; ".join(await eng.resolver.txt(query))
    except (DnsNotFound, DnsRetry):
        reason = ""
    return True, reason


async def _rbl_reply(eng: SmtpdChecks, run: Run, zone: str, klass: str, what: str, reason: str) -> Reply:
    st = run.state
    cfg = eng.config
    variables = {
        "rbl_code": str(cfg.int("maps_rbl_reject_code")),
        "rbl_class": klass,
        "rbl_what": what,
        "rbl_domain": zone,
        "client": client_namaddr(st),
        "client_address": st.client_addr,
        "client_name": st.client_name,
        "reverse_client_name": st.reverse_client_name,
        "helo_name": st.helo_name or "",
        "sender": st.sender or "",
        "sender_name": (st.sender or "").rpartition("@")[0],
        "sender_domain": (st.sender or "").rpartition("@")[2],
        "recipient": st.recipient or "",
        "recipient_name": (st.recipient or "").rpartition("@")[0],
        "recipient_domain": (st.recipient or "").rpartition("@")[2],
    }
    if reason:
        variables["rbl_reason"] = reason
        variables["rbl_txt"] = reason
    template: str | None = None
    for spec in cfg.list("rbl_reply_maps"):
        try:
            template = await lookup_async(open_table(spec, cfg), zone)
        except (TableRetry, TableConfigError) as exc:
            log.warning(f"rbl_reply_maps: {spec}: {exc}")
            return Reply.of(451, "4.3.0", f"<{what}>: Temporary lookup failure")
        if template is not None:
            break
    if template is None:
        template = cfg.raw("default_rbl_reply") or ""

    def lookup(key: str) -> str | None:
        return variables[key] if key in variables else cfg.raw(key)

    text = Expander(lookup).expand(template)
    code_text, _, rest = text.partition(" ")
    code = int(code_text) if code_text.isdigit() and len(code_text) == 3 and code_text[0] in "45" else 554
    if not (code_text.isdigit() and len(code_text) == 3):
        rest = text
    dsn, rest = dsn_and_text(code, f"{code // 100}.7.1", rest)
    return Reply.of(code, dsn, rest)


def _split_zone(arg: str) -> tuple[str, str | None]:
    zone, eq, filt = arg.partition("=")
    return zone.lower().rstrip("."), filt if eq else None


def _rbl(kind: str, permit: bool = False) -> Handler:
    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        st = run.state
        zone, filt = _split_zone(arg)
        if kind == "client":
            query, klass, what = rbl_query_name(st.client_addr, zone), "Client host", st.client_addr
        else:
            subject = {
                "rhs_client": st.client_name if st.client_name != "unknown" else "",
                "rhs_reverse_client": st.reverse_client_name if st.reverse_client_name != "unknown" else "",
                "rhs_helo": st.helo_name or "",
                "rhs_sender": (st.sender or "").rpartition("@")[2],
                "rhs_recipient": (st.recipient or "").rpartition("@")[2],
            }[kind]
            klass = {"rhs_client": "Client host", "rhs_reverse_client": "Unverified Client host",
                     "rhs_helo": "Helo command", "rhs_sender": "Sender address",
                     "rhs_recipient": "Recipient address"}[kind]
            subject = subject.lower().rstrip(".")
            if not subject or subject.startswith("["):
                return None
            query, what = f"{subject}.{zone}", subject
        if query is None:
            return None
        listed, reason = await _listed(eng, query, filt)
        if not listed:
            return None
        if permit:
            return PERMIT
        return await _rbl_reply(eng, run, zone, klass, what, reason)
    return handler


RESTRICTIONS: Final[dict[str, tuple[Handler, bool]]] = {
    "reject_unknown_client_hostname": (_reject_unknown_client, False),
    "reject_unknown_client": (_reject_unknown_client, False),
    "reject_unknown_reverse_client_hostname": (_reject_unknown_reverse_client, False),
    "reject_unknown_helo_hostname": (_reject_unknown_helo, False),
    "reject_unknown_hostname": (_reject_unknown_helo, False),
    "reject_unknown_sender_domain": (_unknown_domain("sender"), False),
    "reject_unknown_recipient_domain": (_unknown_domain("recipient"), False),
    "reject_rbl_client": (_rbl("client"), True),
    "reject_rbl": (_rbl("client"), True),
    "reject_rhsbl_client": (_rbl("rhs_client"), True),
    "reject_rhsbl_reverse_client": (_rbl("rhs_reverse_client"), True),
    "reject_rhsbl_helo": (_rbl("rhs_helo"), True),
    "reject_rhsbl_sender": (_rbl("rhs_sender"), True),
    "reject_rhsbl_recipient": (_rbl("rhs_recipient"), True),
    "permit_dnswl_client": (_rbl("client", permit=True), True),
    "permit_rhswl_client": (_rbl("rhs_client", permit=True), True),
}
