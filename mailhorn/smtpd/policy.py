"""check_policy_service: the client side of Postfix's policy delegation protocol.

SMTPD_POLICY_README: for each request smtpd writes ``name=value`` lines
ending in an empty line; the server answers ``action=...`` (and possibly
other attributes) ending in an empty line.  The action is any access(5)
result, applied as an access table result would be.

Services are named ``inet:host:port``, ``inet:[::1]:port`` or
``unix:/path`` (a relative unix path is taken below ``queue_directory``,
as ``unix:private/policy``).  Postfix 3.x per-service options may be given
with braces: ``{ inet:host:port, timeout=10s, default_action=DUNNO,
max_idle=..., max_ttl=..., try_limit=..., retry_delay=..., request_limit=...,
policy_context=... }``; otherwise the ``smtpd_policy_service_*``
parameters apply.

Connections are reused: an idle connection is closed after ``max_idle``,
any connection after ``max_ttl`` or ``request_limit`` requests.  A request
that cannot be completed (connect error, timeout after ``timeout``, garbled
reply) is tried again on a new connection after ``retry_delay``, up to
``try_limit`` times; then ``default_action`` is the answer (Postfix's
default ``451 4.3.5 Server configuration problem``).

Parameters read: ``smtpd_policy_service_timeout``, ``_max_idle``,
``_max_ttl``, ``_try_limit``, ``_retry_delay``, ``_request_limit``,
``_default_action``, ``_policy_context``, ``queue_directory``,
``compatibility_level``, ``mail_version``.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from typing import Final

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.smtpd.state import SmtpdState, Stage

__all__ = ["PolicyClients", "PolicyService", "ServiceOptions", "request_attributes"]

#: The largest reply the client accepts (a policy reply is a few lines).
MAX_REPLY: Final = 65536

_TIME_RE: Final = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(text: str, what: str) -> float:
    match = _TIME_RE.match(text.strip().lower())
    if not match:
        raise ConfigError(f"check_policy_service: bad {what} value: {text}")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class ServiceOptions:
    """One policy service and its settings."""

    endpoint: str
    timeout: float
    max_idle: float
    max_ttl: float
    try_limit: int
    retry_delay: float
    request_limit: int
    default_action: str
    policy_context: str

    @classmethod
    def parse(cls, spec: str, config: Config) -> ServiceOptions:
        """``inet:host:port`` or ``{ endpoint, name=value, ... }``."""
        values = {
            "timeout": str(config.time("smtpd_policy_service_timeout")),
            "max_idle": str(config.time("smtpd_policy_service_max_idle")),
            "max_ttl": str(config.time("smtpd_policy_service_max_ttl")),
            "try_limit": config.get("smtpd_policy_service_try_limit"),
            "retry_delay": str(config.time("smtpd_policy_service_retry_delay")),
            "request_limit": config.get("smtpd_policy_service_request_limit"),
            "default_action": config.get("smtpd_policy_service_default_action"),
            "policy_context": config.get("smtpd_policy_service_policy_context"),
        }
        spec = spec.strip()
        endpoint = spec
        if spec.startswith("{"):
            if not spec.endswith("}"):
                raise ConfigError(f"check_policy_service: missing '}}' in {spec}")
            items = [item.strip() for item in spec[1:-1].split(",") if item.strip()]
            if not items:
                raise ConfigError("check_policy_service: no service name in { }")
            endpoint = items[0]
            for item in items[1:]:
                name, eq, value = item.partition("=")
                name = name.strip()
                if not eq or name not in values:
                    raise ConfigError(f"check_policy_service: unknown option: {item}")
                values[name] = value.strip()
        try:
            try_limit = int(values["try_limit"])
            request_limit = int(values["request_limit"])
        except ValueError:
            raise ConfigError(f"check_policy_service: bad number in {spec}") from None
        return cls(
            endpoint=endpoint,
            timeout=_seconds(values["timeout"], "timeout"),
            max_idle=_seconds(values["max_idle"], "max_idle"),
            max_ttl=_seconds(values["max_ttl"], "max_ttl"),
            try_limit=max(1, try_limit),
            retry_delay=_seconds(values["retry_delay"], "retry_delay"),
            request_limit=request_limit,
            default_action=values["default_action"],
            policy_context=values["policy_context"],
        )


def request_attributes(stage: Stage, state: SmtpdState, options: ServiceOptions, config: Config) -> list[tuple[str, str]]:
    """The attributes of one request, in Postfix 3.7's order."""
    st = state
    sender = st.sender or ""
    recipient = st.recipient or "" if stage in (Stage.RCPT, Stage.VRFY) else ""
    return [
        ("request", "smtpd_access_policy"),
        ("protocol_state", stage.value),
        ("protocol_name", st.protocol),
        ("helo_name", st.helo_name or ""),
        ("queue_id", st.queue_id),
        ("sender", sender),
        ("recipient", recipient),
        ("recipient_count", str(st.recipient_count)),
        ("client_address", st.client_addr),
        ("client_name", st.client_name),
        ("reverse_client_name", st.reverse_client_name),
        ("instance", st.instance),
        ("sasl_method", st.sasl_method),
        ("sasl_username", st.sasl_username),
        ("sasl_sender", st.sasl_sender),
        ("size", str(st.size)),
        ("ccert_subject", st.tls_peer_subject),
        ("ccert_issuer", st.tls_peer_issuer),
        ("ccert_fingerprint", st.tls_peer_fingerprint),
        ("ccert_pubkey_fingerprint", st.tls_peer_pubkey_fingerprint),
        ("encryption_protocol", st.tls_protocol),
        ("encryption_cipher", st.tls_cipher),
        ("encryption_keysize", str(st.encryption_keysize or st.tls_cipher_bits)),
        ("etrn_domain", st.etrn_domain or ""),
        ("stress", "yes" if st.stress else ""),
        ("compatibility_level", config.get("compatibility_level")),
        ("mail_version", config.get("mail_version")),
        ("client_port", st.client_port),
        ("policy_context", options.policy_context),
        ("server_address", st.server_addr),
        ("server_port", st.server_port),
    ]


def _encode(attrs: list[tuple[str, str]]) -> bytes:
    lines = []
    for name, value in attrs:
        # A newline in a value would end the attribute early; Postfix's
        # attributes never hold one, so peer text is cleaned here.
        clean = value.replace("\r", "?").replace("\n", "?")
        lines.append(f"{name}={clean}\n")
    lines.append("\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)
    requests: int = 0

    def close(self) -> None:
        self.writer.close()


class PolicyError(Exception):
    """The request could not be completed."""


class PolicyService:
    """One policy endpoint with its idle connections."""

    def __init__(self, options: ServiceOptions, config: Config) -> None:
        self.options = options
        self.config = config
        self.idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        endpoint = self.options.endpoint
        kind, sep, rest = endpoint.partition(":")
        if not sep:
            kind, rest = ("inet", endpoint) if ":" in endpoint else ("unix", endpoint)
        if kind == "inet":
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            if not port.isdigit():
                raise ConfigError(f"check_policy_service: bad service: {endpoint}")
            reader, writer = await asyncio.open_connection(host or "127.0.0.1", int(port), limit=MAX_REPLY)
        elif kind == "unix":
            path = rest if rest.startswith("/") else os.path.join(self.config.get("queue_directory"), rest)
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_REPLY)
        else:
            raise ConfigError(f"check_policy_service: unsupported transport: {endpoint}")
        return _Connection(reader, writer)

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.used > self.options.max_idle or now - conn.opened > self.options.max_ttl:
                conn.close()
                continue
            return conn
        return None

    async def _exchange(self, conn: _Connection, data: bytes) -> dict[str, str]:
        conn.writer.write(data)
        await conn.writer.drain()
        reply: dict[str, str] = {}
        total = 0
        while True:
            line = await conn.reader.readline()
            if not line.endswith(b"\n"):
                raise PolicyError("connection closed before the end of the reply")
            total += len(line)
            if total > MAX_REPLY:
                raise PolicyError("reply too long")
            text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
            if not text:
                return reply
            name, eq, value = text.partition("=")
            if not eq:
                raise PolicyError(f"malformed reply line: {text[:100]}")
            reply[name] = value

    async def request(self, attrs: list[tuple[str, str]]) -> str:
        """Send one request and return its action (or default_action)."""
        data = _encode(attrs)
        opts = self.options
        for attempt in range(opts.try_limit):
            if attempt:
                await asyncio.sleep(opts.retry_delay)
            conn = self._take()
            try:
                async with asyncio.timeout(opts.timeout):
                    if conn is None:
                        conn = await self._connect()
                    reply = await self._exchange(conn, data)
            except (OSError, TimeoutError, PolicyError, asyncio.IncompleteReadError, ValueError) as exc:
                if conn is not None:
                    conn.close()
                log.warning(f"problem talking to server {opts.endpoint}: {exc or type(exc).__name__}")
                continue
            conn.requests += 1
            conn.used = time.monotonic()
            if opts.request_limit and conn.requests >= opts.request_limit:
                conn.close()
            else:
                self.idle.append(conn)
            action = reply.get("action")
            if action is None:
                log.warning(f"{opts.endpoint}: policy reply without action attribute")
                continue
            return action
        log.warning(f"access policy {opts.endpoint}: using default_action {opts.default_action}")
        return opts.default_action

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class PolicyClients:
    """The policy services of one smtpd configuration, by their specification."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.services: dict[str, PolicyService] = {}

    def service(self, spec: str) -> PolicyService:
        svc = self.services.get(spec)
        if svc is None:
            svc = self.services[spec] = PolicyService(ServiceOptions.parse(spec, self.config), self.config)
        return svc

    async def query(self, spec: str, stage: Stage, state: SmtpdState) -> str:
        """The action the service at ``spec`` chooses for this request."""
        svc = self.service(spec)
        return await svc.request(request_attributes(stage, state, svc.options, self.config))

    def close(self) -> None:
        for svc in self.services.values():
            svc.close()

