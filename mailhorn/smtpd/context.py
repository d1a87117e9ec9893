"""What every session of one smtpd service shares.

:class:`ServiceContext` bundles the settings, the TLS policy, the SASL
settings (:mod:`mailhorn.smtpd.auth`), the restriction engine, the peer-name resolver and the master's
:class:`~mailhorn.runtime.Runtime`.  :class:`Checks` is the interface of
the restriction engine (:mod:`mailhorn.smtpd.checks`): one call per SMTP
stage, answered with a :class:`~mailhorn.smtpd.state.CheckResult`.

Parameters read: ``smtpd_forbidden_commands`` (the rest through
:mod:`mailhorn.smtpd.settings`, :mod:`mailhorn.smtpd.tls` and
:mod:`mailhorn.smtpd.auth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailhorn.config.load import Config
from mailhorn.runtime import Runtime
from mailhorn.smtpd.auth import SmtpdSasl
from mailhorn.smtpd.peer import PeerResolver
from mailhorn.smtpd.settings import SmtpdSettings
from mailhorn.smtpd.state import CheckResult, SmtpdState, Stage
from mailhorn.smtpd.tls import SmtpdTls
from mailhorn.tables.matchlist import StringList, string_list_from_config

__all__ = ["Checks", "ServiceContext"]


class Checks(Protocol):
    """The restriction engine, as smtpd calls it at each stage."""

    async def check(self, stage: Stage, state: SmtpdState) -> CheckResult:
        ...


@dataclass
class ServiceContext:
    """Shared, read-only facilities of one smtpd service."""

    config: Config
    runtime: Runtime
    settings: SmtpdSettings
    tls: SmtpdTls
    checks: Checks
    resolver: PeerResolver | None
    forbidden_commands: StringList
    sasl: SmtpdSasl

    @classmethod
    def build(cls, config: Config, runtime: Runtime, service: str, checks: Checks,
              resolver: PeerResolver | None) -> ServiceContext:
        return cls(
            config=config,
            runtime=runtime,
            settings=SmtpdSettings.from_config(config, service),
            tls=SmtpdTls.from_config(config),
            checks=checks,
            resolver=resolver,
            forbidden_commands=string_list_from_config(config, "smtpd_forbidden_commands"),
            sasl=SmtpdSasl.from_config(config),
        )
