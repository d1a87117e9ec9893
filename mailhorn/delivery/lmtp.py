"""The LMTP delivery agent: master.cf command ``lmtp`` (Postfix lmtp(8)).

The LMTP client is the SMTP client speaking RFC 2033 (LHLO, one reply per
recipient after the message) and reading ``lmtp_*`` parameters; see
:mod:`mailhorn.delivery.smtp`.
"""

from __future__ import annotations

from mailhorn.config.load import Config
from mailhorn.delivery.smtp import SmtpAgent, make_lmtp_agent

__all__ = ["make_agent"]


def make_agent(config: Config, service: str) -> SmtpAgent:
    """The LMTP client for the master.cf service ``service``."""
    return make_lmtp_agent(config, service)
