"""Mailbox quota settings of the Postfix VDA patch, as seed 003's main.cf sets them.

Stock Postfix does not know these names; the widely used VDA quota patch
added them to virtual(8), and sites built from guides like seed 003 still
carry them. mailhorn's virtual delivery honours them with Maildir++
``maildirsize`` quotas that Dovecot reads the same way.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "virtual_mailbox_limit_maps",
        Kind.LIST,
        "",
        "Per-recipient mailbox quota in bytes, looked up like virtual_mailbox_maps.",
        origin="vda",
    ),
    Param(
        "virtual_mailbox_limit_override",
        Kind.BOOL,
        "no",
        "Let virtual_mailbox_limit_maps values exceed virtual_mailbox_limit.",
        origin="vda",
    ),
    Param(
        "virtual_create_maildirsize",
        Kind.BOOL,
        "no",
        "Create and update the Maildir++ maildirsize file on delivery.",
        origin="vda",
    ),
    Param(
        "virtual_mailbox_extended",
        Kind.BOOL,
        "no",
        "Count the whole Maildir with its folders, not only the inbox, against the quota.",
        origin="vda",
    ),
    Param(
        "virtual_maildir_limit_message",
        Kind.STRING,
        "Sorry, the user's maildir has overdrawn his diskspace quota, please try again later.",
        "The text given when a delivery would exceed the quota.",
        origin="vda",
    ),
    Param(
        "virtual_overquota_bounce",
        Kind.BOOL,
        "no",
        "Bounce mail for a recipient over quota instead of deferring it.",
        origin="vda",
    ),
)
