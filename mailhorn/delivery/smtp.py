"""The SMTP and LMTP delivery agent (Postfix smtp(8) and lmtp(8)).

``make_agent(config, service)`` gives the agent for a master.cf service
whose command is ``smtp`` (``smtp``, ``relay``, content filter clients such
as ``amavis``) and ``make_lmtp_agent`` the one for ``lmtp``; ``config``
already carries the service's ``-o`` overrides.  As LMTP client every
``smtp_*`` parameter is read under its ``lmtp_*`` name (``lmtp_lhlo_name``,
``lmtp_tcp_port``, ...).

For each request the agent:

1. reads the next hop (:func:`mailhorn.delivery.mx.parse_nexthop`) and finds
   the servers: MX records in preference order, addresses, or the socket;
2. tries them in turn, within ``smtp_mx_session_limit`` sessions, reusing an
   idle cached session to the same destination when there is one; then the
   ``smtp_fallback_relay`` destinations (SMTP only);
3. gives each recipient its outcome: ``DELIVERED`` with the server's reply
   (``250 2.0.0 Ok: queued as X``), ``BOUNCED`` with the server's words
   (``host mx[ip] said: 550 5.1.1 ... (in reply to RCPT TO command)``), or
   ``DEFERRED`` once every server has been tried for a recipient that met
   only temporary failures.  A 4xx or a broken connection moves the
   recipient on to the next server, as Postfix does.

DNS answers that end delivery: NXDOMAIN bounces ``5.4.4``, a null MX
``5.1.10``, SERVFAIL defers ``4.4.3`` (fallback relays are tried for a
temporary DNS failure only).  The queue manager logs the result lines; the
agent logs only warnings (a possible duplicate after a lost end of data).

Parameters read (besides those of the session, TLS, SASL and cache modules):
``smtp_helo_name``/``lmtp_lhlo_name``, ``smtp_tcp_port``/``lmtp_tcp_port``,
the ``smtp_*_timeout`` family, ``smtp_bind_address``, ``smtp_bind_address6``,
``inet_protocols``, ``smtp_mx_session_limit``, ``smtp_fallback_relay``,
``smtp_skip_5xx_greeting``, ``smtp_always_send_ehlo``,
``smtp_never_send_ehlo``, ``smtp_discard_ehlo_keywords``,
``smtp_quote_rfc821_envelope``, ``smtp_send_xforward_command``,
``disable_mime_output_conversion``, ``header_size_limit``,
``smtp_sasl_*``, ``smtp_tls_*``, ``smtp_connection_cache_*``,
``smtp_connection_reuse_*``, ``dns_servers``.
Errors: a malformed parameter raises ``ConfigError`` from ``make_agent``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.config.params import PARAMS
from mailhorn.delivery.connection_cache import CachePolicy, ConnectionCache
from mailhorn.delivery.mx import LookupPolicy, Nexthop, NotFound, Server, find_servers, parse_nexthop, service_port
from mailhorn.delivery.request import Action, DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.delivery.smtp_sasl import Credentials, SaslError, find_credentials
from mailhorn.delivery.smtp_session import (
    ClientSettings,
    Outcome,
    PlaintextRetry,
    Session,
    SessionFailure,
    open_session,
)
from mailhorn.delivery.smtp_tls import TlsPolicy, TlsPolicyError, policy_for
from mailhorn.dns.resolver import Resolver
from mailhorn.tables.base import Table
from mailhorn.tables.registry import open_table

__all__ = ["SmtpAgent", "make_agent", "make_lmtp_agent"]

#: smtp_* names whose LMTP twin is not simply lmtp_* (postconf(5)).
_LMTP_NAMES = {
    "smtp_helo_name": "lmtp_lhlo_name",
    "smtp_helo_timeout": "lmtp_lhlo_timeout",
    "smtp_discard_ehlo_keywords": "lmtp_discard_lhlo_keywords",
    "smtp_discard_ehlo_keyword_address_maps": "lmtp_discard_lhlo_keyword_address_maps",
}


def param_name(name: str, lmtp: bool) -> str:
    """The parameter an LMTP client reads for ``smtp_NAME``."""
    if not lmtp or not name.startswith("smtp_"):
        return name
    twin = _LMTP_NAMES.get(name, "lmtp_" + name[5:])
    return twin if twin in PARAMS else name


@dataclass
class _Pending:
    index: int
    recipient: DeliveryRecipient
    last: Outcome | None = None
    relay: str = "none"


_Finish = Callable[[_Pending, Outcome, str], None]


class SmtpAgent:
    """Delivers requests over SMTP or LMTP; one instance per master.cf service."""

    def __init__(self, config: Config, service: str, lmtp: bool) -> None:
        self.config = config
        self.service = service
        self.lmtp = lmtp
        get = self.get
        self.settings = ClientSettings(
            lmtp=lmtp,
            helo_name=get("smtp_helo_name"),
            connect_timeout=self._time("smtp_connect_timeout"),
            helo_timeout=self._time("smtp_helo_timeout"),
            starttls_timeout=self._time("smtp_starttls_timeout"),
            mail_timeout=self._time("smtp_mail_timeout"),
            rcpt_timeout=self._time("smtp_rcpt_timeout"),
            data_init_timeout=self._time("smtp_data_init_timeout"),
            data_xfer_timeout=self._time("smtp_data_xfer_timeout"),
            data_done_timeout=self._time("smtp_data_done_timeout"),
            rset_timeout=self._time("smtp_rset_timeout"),
            quit_timeout=self._time("smtp_quit_timeout"),
            xforward_timeout=self._time("smtp_xforward_timeout"),
            bind_address=get("smtp_bind_address").strip(),
            bind_address6=get("smtp_bind_address6").strip(),
            always_send_ehlo=self._bool("smtp_always_send_ehlo"),
            never_send_ehlo=self._bool("smtp_never_send_ehlo"),
            discard_ehlo_keywords=split_list(get("smtp_discard_ehlo_keywords")),
            skip_5xx_greeting=self._bool("smtp_skip_5xx_greeting"),
            quote_rfc821_envelope=self._bool("smtp_quote_rfc821_envelope"),
            send_xforward=self._bool("smtp_send_xforward_command"),
            line_length_limit=config.int(param_name("smtp_line_length_limit", lmtp)),
            header_size_limit=config.int("header_size_limit"),
            mime_output_conversion=not config.bool("disable_mime_output_conversion"),
            sasl_enable=self._bool("smtp_sasl_auth_enable"),
            sasl_security_options=get("smtp_sasl_security_options"),
            sasl_tls_security_options=get("smtp_sasl_tls_security_options"),
            sasl_mechanism_filter=split_list(get("smtp_sasl_mechanism_filter")),
            sasl_soft_bounce=self._bool("smtp_sasl_auth_soft_bounce"),
        )
        self.default_port = service_port(get("smtp_tcp_port").strip() or ("lmtp" if lmtp else "smtp"))
        #: Relative ``unix:`` sockets (``lmtp:unix:private/dovecot-lmtp``) live here, as in Postfix.
        self.queue_directory = config.get("queue_directory")
        self.lookup = LookupPolicy.from_params(get, config.list("inet_protocols"))
        self.session_limit = config.int(param_name("smtp_mx_session_limit", lmtp))
        self.fallback = [] if lmtp else split_list(get("smtp_fallback_relay"))
        self.sender_dependent = self._bool("smtp_sender_dependent_authentication")
        self.cache = ConnectionCache(CachePolicy(
            on_demand=self._bool("smtp_connection_cache_on_demand"),
            destinations=split_list(get("smtp_connection_cache_destinations")),
            idle_time=self._time("smtp_connection_cache_time_limit"),
            reuse_count_limit=config.int(param_name("smtp_connection_reuse_count_limit", lmtp)),
            reuse_time_limit=self._time("smtp_connection_reuse_time_limit"),
        ))
        self.resolver = Resolver.from_config(config)
        self.myhostname = config.get("myhostname")
        self._tls_tables: list[Table] | None = None
        self._sasl_tables: list[Table] | None = None

    # -- parameters ----------------------------------------------------------
    def get(self, name: str) -> str:
        return self.config.get(param_name(name, self.lmtp))

    def _time(self, name: str) -> float:
        return float(self.config.time(param_name(name, self.lmtp)))

    def _bool(self, name: str) -> bool:
        return self.config.bool(param_name(name, self.lmtp))

    def _tables(self, name: str) -> list[Table]:
        return [open_table(spec, self.config) for spec in split_list(self.get(name))]

    @property
    def tls_tables(self) -> list[Table]:
        if self._tls_tables is None:
            self._tls_tables = self._tables("smtp_tls_policy_maps")
        return self._tls_tables

    @property
    def sasl_tables(self) -> list[Table]:
        if self._sasl_tables is None:
            self._sasl_tables = self._tables("smtp_sasl_password_maps")
        return self._sasl_tables

    # -- delivery --------------------------------------------------------------
    async def deliver(self, request: DeliveryRequest) -> Sequence[RecipientStatus]:
        started = time.monotonic()
        pending = [_Pending(i, r) for i, r in enumerate(request.recipients)]
        done: dict[int, RecipientStatus] = {}
        timing = _Timing(started)

        def finish(p: _Pending, outcome: Outcome, relay: str) -> None:
            done[p.index] = RecipientStatus(p.recipient, outcome.action, outcome.dsn, outcome.text, relay,
                                            outcome.remote_reply, timing.delays())

        try:
            hop = parse_nexthop(request.nexthop, self.default_port, lmtp=self.lmtp, base=self.queue_directory)
        except ValueError as exc:
            for p in pending:
                finish(p, Outcome(Action.DEFERRED, "4.3.5", f"bad next-hop destination: {exc}"), "none")
            return [done[i] for i in range(len(request.recipients))]
        hops = [hop]
        for relay in self.fallback:
            try:
                hops.append(parse_nexthop(relay, self.default_port, lmtp=self.lmtp, base=self.queue_directory))
            except ValueError:
                continue
        sessions = 0
        for n, current in enumerate(hops):
            if not pending:
                break
            try:
                policy = await policy_for(self.get, self.tls_tables, current)
                servers = await find_servers(self.resolver, current, self.lookup, self.myhostname)
            except TlsPolicyError as exc:
                for p in pending:
                    p.last = Outcome(Action.DEFERRED, "4.7.5", str(exc))
                continue
            except NotFound as exc:
                if exc.permanent and n == 0:
                    for p in pending:
                        finish(p, Outcome(Action.BOUNCED, exc.dsn, exc.text), "none")
                    pending = []
                    break
                for p in pending:
                    p.last = Outcome(Action.DEFERRED, _soft(exc.dsn), exc.text)
                continue
            for server in servers:
                if not pending:
                    break
                if self.session_limit > 0 and sessions >= self.session_limit:
                    break
                # smtp_mx_session_limit counts sessions made; refused connections
                # count only against smtp_mx_address_limit (postconf(5)).
                pending, connected = await self._try_server(request, current, server, policy, pending, finish,
                                                            timing)
                sessions += connected
        for p in pending:
            last = p.last or Outcome(Action.DEFERRED, "4.4.1", "no server could be reached")
            finish(p, Outcome(Action.DEFERRED, _soft(last.dsn), last.text, last.remote_reply), p.relay)
        return [done[i] for i in range(len(request.recipients))]

    def _cache_key(self, request: DeliveryRequest, hop: Nexthop) -> Hashable:
        sender = request.sender if self.settings.sasl_enable and self.sender_dependent else None
        return (hop.text, sender)

    async def _session(self, request: DeliveryRequest, hop: Nexthop, server: Server,
                       policy: TlsPolicy) -> tuple[Session, bool]:
        """A cached session for this destination and server, or a new one."""
        key = (self._cache_key(request, hop), server.addr, server.port)
        while True:
            cached = self.cache.take(key)
            if cached is None:
                break
            if await cached.rset():
                return cached, True
            await cached.close()

        async def credentials(hostname: str) -> Credentials | None:
            if not self.settings.sasl_enable or not self.sasl_tables:
                return None
            try:
                return await find_credentials(self.sasl_tables, sender=request.sender,
                                              sender_dependent=self.sender_dependent, hostname=hostname,
                                              nexthop=hop.text)
            except SaslError as exc:
                raise SessionFailure(exc.dsn, exc.text) from None

        try:
            return await open_session(server, self.settings, policy=policy, hop=hop, credentials=credentials), False
        except PlaintextRetry:
            return await open_session(server, self.settings, policy=policy, hop=hop, credentials=credentials,
                                      plaintext=True), False

    async def _try_server(self, request: DeliveryRequest, hop: Nexthop, server: Server, policy: TlsPolicy,
                          pending: list[_Pending], finish: _Finish, timing: _Timing) -> tuple[list[_Pending], bool]:
        """One session with one server; returns the recipients still to try and
        whether a session was made (the server greeted)."""
        key = (self._cache_key(request, hop), server.addr, server.port)
        relay = server.relay
        try:
            session, _reused = await self._session(request, hop, server, policy)
        except SessionFailure as exc:
            greeted = exc.connected
            if exc.permanent:
                for p in pending:
                    finish(p, Outcome(Action.BOUNCED, exc.dsn, exc.text, exc.remote_reply), relay)
                return [], greeted
            for p in pending:
                p.last = Outcome(Action.DEFERRED, exc.dsn, exc.text, exc.remote_reply)
                p.relay = relay
            return pending, greeted
        timing.connected()
        try:
            outcomes = await session.transaction(request, [p.recipient for p in pending])
        except SessionFailure as exc:
            # Refused before MAIL FROM (SIZE, SMTPUTF8, 8BITMIME): the session is still good.
            outcomes = [Outcome(Action.BOUNCED if exc.permanent else Action.DEFERRED, exc.dsn, exc.text)
                        for _ in pending]
        finally:
            timing.sent()
        if session.usable and self.cache.policy.wanted(hop.text, hop.host):
            self.cache.put(key, session)
        elif session.usable:
            await session.quit()
        else:
            await session.close()
        left: list[_Pending] = []
        for p, outcome in zip(pending, outcomes):
            if outcome.soft:
                p.last = outcome
                p.relay = relay
                left.append(p)
            else:
                finish(p, outcome, relay)
        return left, True

    async def close(self) -> None:
        """Close idle cached sessions."""
        await self.cache.close()


class _Timing:
    """``delays=a/b/c/d`` parts c (connection setup) and d (transmission)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.setup = 0.0
        self.transmit = 0.0
        self._mark = started

    def connected(self) -> None:
        now = time.monotonic()
        self.setup += now - self._mark
        self._mark = now

    def sent(self) -> None:
        now = time.monotonic()
        self.transmit += now - self._mark
        self._mark = now

    def delays(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, self.setup, self.transmit)


def _soft(dsn: str) -> str:
    return "4" + dsn[1:] if dsn.startswith("5") else dsn


def make_agent(config: Config, service: str) -> SmtpAgent:
    """The SMTP client for a master.cf service whose command is ``smtp``.

    A service named ``lmtp`` is taken as the LMTP client (Postfix's default
    master.cf runs command ``lmtp`` under that name).
    """
    return SmtpAgent(config, service, lmtp=service == "lmtp")


def make_lmtp_agent(config: Config, service: str) -> SmtpAgent:
    """The LMTP client for a master.cf service whose command is ``lmtp``."""
    return SmtpAgent(config, service, lmtp=True)
