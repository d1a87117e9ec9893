"""The parameters cleanup reads, read once per configuration, and small helpers.

Parameters read: see :class:`Settings` (each field is the postconf(5)
parameter of the same name, or as noted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailhorn.config.load import Config
from mailhorn.queue.queuefile import DsnNotify

_NOTIFY: Final = {"NEVER": DsnNotify.NEVER, "SUCCESS": DsnNotify.SUCCESS,
           "FAILURE": DsnNotify.FAILURE, "DELAY": DsnNotify.DELAY}


@dataclass(frozen=True)
class Settings:
    """The parameters one cleanup configuration reads, read once."""

    myhostname: str
    myorigin: str
    mail_name: str
    header_size_limit: int
    line_length_limit: int
    hopcount_limit: int
    body_checks_size_limit: int
    mime_nesting_limit: int
    mime_boundary_length_limit: int
    mime_disabled: bool
    always_add: bool
    drop_headers: frozenset[str]
    undisclosed: str
    header_from_format: str
    original_recipient: bool
    long_ids: bool
    override_options: frozenset[str]
    content_filter: str
    sasl_header: bool
    tls_header: bool
    detect_8bit_header: bool

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(
            myhostname=config.get("myhostname"),
            myorigin=config.get("myorigin"),
            mail_name=config.get("mail_name"),
            header_size_limit=config.int("header_size_limit"),
            line_length_limit=max(config.int("line_length_limit"), 1),
            hopcount_limit=config.int("hopcount_limit"),
            body_checks_size_limit=config.int("body_checks_size_limit"),
            mime_nesting_limit=config.int("mime_nesting_limit"),
            mime_boundary_length_limit=config.int("mime_boundary_length_limit"),
            mime_disabled=config.bool("disable_mime_input_processing"),
            always_add=config.bool("always_add_missing_headers"),
            drop_headers=frozenset(h.lower() for h in config.list("message_drop_headers")),
            undisclosed=config.get("undisclosed_recipients_header"),
            header_from_format=config.get("header_from_format").lower(),
            original_recipient=config.bool("enable_original_recipient"),
            long_ids=config.bool("enable_long_queue_ids"),
            override_options=frozenset(o.lower() for o in config.list("receive_override_options")),
            content_filter=config.get("content_filter"),
            sasl_header=config.bool("smtpd_sasl_authenticated_header"),
            tls_header=config.bool("smtpd_tls_received_header"),
            detect_8bit_header=config.bool("detect_8bit_encoding_header"),
        )


def qualify(address: str, myorigin: str) -> str:
    """Append ``@$myorigin`` to a bare local part (postconf(5) append_at_myorigin)."""
    if not address or "@" in address:
        return address
    return f"{address}@{myorigin}"


def notify_flags(names: frozenset[str]) -> DsnNotify | None:
    """RFC 3461 NOTIFY keywords as the queue file's bit mask."""
    bits = DsnNotify(0)
    for name in names:
        flag = _NOTIFY.get(name.upper())
        if flag is not None:
            bits |= flag
    return bits or None
