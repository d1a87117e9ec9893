"""Address rewriting and resolving (Postfix's trivial-rewrite): which transport
and next hop an address goes to, which domains are local, relayed or virtual,
and the rewriting of incomplete addresses.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "local_transport",
        Kind.STRING,
        "local:$myhostname",
        "The transport (and optional next hop) for local domains.",
    ),
    Param("virtual_transport", Kind.STRING, "virtual", "The transport for virtual mailbox domains."),
    Param("relay_transport", Kind.STRING, "relay", "The transport for relay domains."),
    Param("default_transport", Kind.STRING, "smtp", "The transport for all other destinations."),
    Param(
        "transport_maps",
        Kind.LIST,
        "",
        "Tables that choose transport and next hop by recipient or domain.",
    ),
    Param(
        "sender_dependent_default_transport_maps",
        Kind.LIST,
        "",
        "Tables that choose the default transport by sender.",
    ),
    Param(
        "empty_address_default_transport_maps_lookup_key",
        Kind.STRING,
        "<>",
        "The sender_dependent_default_transport_maps key for the null sender.",
    ),
    Param(
        "relayhost",
        Kind.STRING,
        "",
        "The next hop for mail to non-local destinations (empty = direct delivery).",
    ),
    Param("sender_dependent_relayhost_maps", Kind.LIST, "", "Tables that choose the relay host by sender."),
    Param(
        "empty_address_relayhost_maps_lookup_key",
        Kind.STRING,
        "<>",
        "The sender_dependent_relayhost_maps key for the null sender.",
    ),
    Param(
        "relay_domains",
        Kind.LIST,
        "${{$compatibility_level} <level {2} ? {$mydestination} : {}}",
        "Domains this host relays mail to.",
    ),
    Param("relay_recipient_maps", Kind.LIST, "", "Valid recipients in relay domains."),
    Param(
        "append_at_myorigin",
        Kind.BOOL,
        "yes",
        "Whether myorigin is appended to a local address without a domain.",
    ),
    Param(
        "append_dot_mydomain",
        Kind.BOOL,
        "${{$compatibility_level} <level {1} ? {yes} : {no}}",
        "Whether .mydomain is appended to an address whose domain has no dot.",
    ),
    Param(
        "recipient_delimiter",
        Kind.STRING,
        "",
        "Characters that separate a user name from an address extension.",
    ),
    Param(
        "propagate_unmatched_extensions",
        Kind.LIST,
        "canonical, virtual",
        "Where an address extension is kept when a table matches without it.",
    ),
    Param("swap_bangpath", Kind.BOOL, "yes", "Whether site!user is rewritten as user@site."),
    Param("allow_percent_hack", Kind.BOOL, "yes", "Whether user%domain is rewritten as user@domain."),
    Param(
        "resolve_dequoted_address",
        Kind.BOOL,
        "yes",
        "Whether a quoted local part is resolved without its quotes.",
    ),
    Param(
        "resolve_null_domain",
        Kind.BOOL,
        "no",
        "Whether an address ending in @ resolves as a local address.",
    ),
    Param(
        "resolve_numeric_domain",
        Kind.BOOL,
        "no",
        "Whether user@ipaddress resolves as a local address when it is ours.",
    ),
    Param("empty_address_recipient", Kind.STRING, "MAILER-DAEMON", "Where mail to the null address is sent."),
    Param(
        "relocated_maps",
        Kind.LIST,
        "",
        "Tables of users or domains that moved, for the \"user has moved\" reply.",
    ),
    Param(
        "show_user_unknown_table_name",
        Kind.BOOL,
        "yes",
        "Whether \"user unknown\" replies name the table that failed.",
    ),
    Param(
        "best_mx_transport",
        Kind.STRING,
        "",
        "Where mail goes when this host is the best MX for its destination.",
    ),
    Param(
        "allow_untrusted_routing",
        Kind.BOOL,
        "no",
        "Whether sender-specified routing (user@x@y, x!y) is allowed from untrusted clients.",
    ),
)
