"""Virtual alias domains (address rewriting done by cleanup) and the virtual
mailbox delivery agent with its per-user paths, owners and size limit.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "virtual_alias_maps",
        Kind.LIST,
        "$virtual_maps",
        "Tables that rewrite recipient addresses to other addresses.",
    ),
    Param(
        "virtual_alias_domains",
        Kind.LIST,
        "$virtual_alias_maps",
        "Domains whose every address is an alias.",
    ),
    Param("virtual_alias_expansion_limit", Kind.INT, "1000", "The most addresses one address may expand to."),
    Param("virtual_alias_recursion_limit", Kind.INT, "1000", "The deepest nesting of alias expansion."),
    Param(
        "virtual_alias_address_length_limit",
        Kind.INT,
        "1000",
        "The longest address alias expansion may produce.",
    ),
    Param("virtual_mailbox_maps", Kind.LIST, "", "The mailbox path of each virtual mailbox user."),
    Param(
        "virtual_mailbox_domains",
        Kind.LIST,
        "$virtual_mailbox_maps",
        "Domains whose mail goes to virtual mailboxes.",
    ),
    Param("virtual_mailbox_base", Kind.STRING, "", "The directory prepended to virtual mailbox paths."),
    Param("virtual_mailbox_limit", Kind.INT, "51200000", "The largest virtual mailbox file, in bytes."),
    Param("virtual_mailbox_lock", Kind.LIST, "fcntl, dotlock", "How virtual mbox files are locked."),
    Param("virtual_uid_maps", Kind.LIST, "", "The user ID of each virtual mailbox."),
    Param("virtual_gid_maps", Kind.LIST, "", "The group ID of each virtual mailbox."),
    Param("virtual_minimum_uid", Kind.INT, "100", "The lowest user ID the virtual delivery agent accepts."),
    Param(
        "virtual_delivery_status_filter",
        Kind.STRING,
        "$default_delivery_status_filter",
        "Tables that rewrite virtual(8) delivery status codes and texts.",
    ),
)
