"""Address verification: the probes sent for ``reject_unverified_sender`` and
``reject_unverified_recipient``, their routing, the result cache, and the
replies the SMTP server gives while results are pending or negative.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "address_verify_map",
        Kind.STRING,
        "btree:$data_directory/verify_cache",
        "The table that caches verification results.",
    ),
    Param(
        "address_verify_sender",
        Kind.STRING,
        "$double_bounce_sender",
        "The sender of verification probes.",
    ),
    Param(
        "address_verify_sender_ttl",
        Kind.TIME,
        "0s",
        "How often the probe sender address changes (0 = fixed).",
        unit="s",
    ),
    Param(
        "address_verify_positive_expire_time",
        Kind.TIME,
        "31d",
        "How long a valid address stays in the cache.",
        unit="d",
    ),
    Param(
        "address_verify_positive_refresh_time",
        Kind.TIME,
        "7d",
        "How old a valid result is before it is checked again.",
        unit="d",
    ),
    Param("address_verify_negative_cache", Kind.BOOL, "yes", "Whether invalid results are cached."),
    Param(
        "address_verify_negative_expire_time",
        Kind.TIME,
        "3d",
        "How long an invalid address stays in the cache.",
        unit="d",
    ),
    Param(
        "address_verify_negative_refresh_time",
        Kind.TIME,
        "3h",
        "How old an invalid result is before it is checked again.",
        unit="h",
    ),
    Param(
        "address_verify_cache_cleanup_interval",
        Kind.TIME,
        "12h",
        "How often expired cache entries are removed.",
        unit="h",
    ),
    Param(
        "address_verify_poll_count",
        Kind.INT,
        "${stress?{1}:{3}}",
        "How often the SMTP server asks for a pending result.",
    ),
    Param(
        "address_verify_poll_delay",
        Kind.TIME,
        "3s",
        "How long the SMTP server waits between asking.",
        unit="s",
    ),
    Param("address_verify_pending_request_limit", Kind.INT, "5000", "The most probes pending at once."),
    Param(
        "address_verify_default_transport",
        Kind.STRING,
        "$default_transport",
        "The default_transport for probes.",
    ),
    Param(
        "address_verify_local_transport",
        Kind.STRING,
        "$local_transport",
        "The local_transport for probes.",
    ),
    Param(
        "address_verify_relay_transport",
        Kind.STRING,
        "$relay_transport",
        "The relay_transport for probes.",
    ),
    Param(
        "address_verify_virtual_transport",
        Kind.STRING,
        "$virtual_transport",
        "The virtual_transport for probes.",
    ),
    Param("address_verify_relayhost", Kind.STRING, "$relayhost", "The relayhost for probes."),
    Param("address_verify_transport_maps", Kind.LIST, "$transport_maps", "The transport_maps for probes."),
    Param(
        "address_verify_sender_dependent_default_transport_maps",
        Kind.LIST,
        "$sender_dependent_default_transport_maps",
        "The sender_dependent_default_transport_maps for probes.",
    ),
    Param(
        "address_verify_sender_dependent_relayhost_maps",
        Kind.LIST,
        "$sender_dependent_relayhost_maps",
        "The sender_dependent_relayhost_maps for probes.",
    ),
    Param(
        "unverified_recipient_reject_code",
        Kind.INT,
        "450",
        "The reply code when a recipient is known to be undeliverable.",
    ),
    Param(
        "unverified_recipient_defer_code",
        Kind.INT,
        "450",
        "The reply code when a recipient's status is not yet known.",
    ),
    Param(
        "unverified_recipient_reject_reason",
        Kind.STRING,
        "",
        "The reply text when a recipient is undeliverable (empty = the delivery error).",
    ),
    Param(
        "unverified_recipient_tempfail_action",
        Kind.STRING,
        "$reject_tempfail_action",
        "What happens when recipient verification fails temporarily.",
    ),
    Param(
        "unverified_sender_reject_code",
        Kind.INT,
        "450",
        "The reply code when a sender is known to be undeliverable.",
    ),
    Param(
        "unverified_sender_defer_code",
        Kind.INT,
        "450",
        "The reply code when a sender's status is not yet known.",
    ),
    Param(
        "unverified_sender_reject_reason",
        Kind.STRING,
        "",
        "The reply text when a sender is undeliverable (empty = the delivery error).",
    ),
    Param(
        "unverified_sender_tempfail_action",
        Kind.STRING,
        "$reject_tempfail_action",
        "What happens when sender verification fails temporarily.",
    ),
)
