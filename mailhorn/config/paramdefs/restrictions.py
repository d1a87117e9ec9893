"""SMTP access restrictions: the ``smtpd_*_restrictions`` lists evaluated at each
stage of the dialogue, and the reply codes and actions the individual
restrictions use (postconf(5), "SMTPD ACCESS README").
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("smtpd_client_restrictions", Kind.LIST, "", "Restrictions applied when the client connects."),
    Param("smtpd_helo_restrictions", Kind.LIST, "", "Restrictions applied to HELO or EHLO."),
    Param("smtpd_sender_restrictions", Kind.LIST, "", "Restrictions applied to MAIL FROM."),
    Param(
        "smtpd_relay_restrictions",
        Kind.LIST,
        (
            "${{$compatibility_level} <level {1} ? {} : {permit_mynetworks, permit_sasl_authenticated, "
            "defer_unauth_destination}}"
        ),
        "Relay restrictions applied to RCPT TO before smtpd_recipient_restrictions.",
    ),
    Param("smtpd_recipient_restrictions", Kind.LIST, "", "Restrictions applied to RCPT TO."),
    Param("smtpd_data_restrictions", Kind.LIST, "", "Restrictions applied to DATA."),
    Param("smtpd_end_of_data_restrictions", Kind.LIST, "", "Restrictions applied at the end of the message."),
    Param("smtpd_etrn_restrictions", Kind.LIST, "", "Restrictions applied to ETRN."),
    Param(
        "smtpd_restriction_classes",
        Kind.LIST,
        "",
        "Names of restriction lists usable as access table results.",
    ),
    Param(
        "smtpd_relay_before_recipient_restrictions",
        Kind.BOOL,
        "${{$compatibility_level} <level {3.6} ? {no} : {yes}}",
        "Whether smtpd_relay_restrictions are evaluated before smtpd_recipient_restrictions.",
    ),
    Param(
        "smtpd_delay_reject",
        Kind.BOOL,
        "yes",
        "Whether rejections wait until RCPT TO, so that the recipient is logged.",
    ),
    Param("smtpd_null_access_lookup_key", Kind.STRING, "<>", "The access table key for the null sender."),
    Param(
        "smtpd_reject_unlisted_recipient",
        Kind.BOOL,
        "yes",
        "Whether recipients unknown in a domain we handle are refused.",
    ),
    Param(
        "smtpd_reject_unlisted_sender",
        Kind.BOOL,
        "no",
        "Whether senders unknown in a domain we handle are refused.",
    ),
    Param("smtpd_sender_login_maps", Kind.LIST, "", "Which SASL logins own which sender addresses."),
    Param("disable_vrfy_command", Kind.BOOL, "no", "Whether VRFY is refused."),
    Param(
        "strict_rfc821_envelopes",
        Kind.BOOL,
        "no",
        "Whether MAIL FROM and RCPT TO must use RFC 821 address syntax.",
    ),
    Param(
        "permit_mx_backup_networks",
        Kind.LIST,
        "",
        "Networks whose primary MX hosts qualify for permit_mx_backup.",
    ),
    Param(
        "relay_clientcerts",
        Kind.LIST,
        "",
        "Client certificate fingerprints allowed by permit_tls_clientcerts.",
    ),
    Param(
        "default_rbl_reply",
        Kind.STRING,
        (
            "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using "
            "$rbl_domain${rbl_reason?; $rbl_reason}"
        ),
        "The reply template for a DNS blocklist hit.",
        raw=True,
    ),
    Param("rbl_reply_maps", Kind.LIST, "", "Per-blocklist reply templates."),
    Param("access_map_reject_code", Kind.INT, "554", "The reply code of an access table REJECT."),
    Param("access_map_defer_code", Kind.INT, "450", "The reply code of an access table DEFER."),
    Param("defer_code", Kind.INT, "450", "The reply code of a defer restriction."),
    Param("reject_code", Kind.INT, "554", "The reply code of a reject restriction."),
    Param(
        "invalid_hostname_reject_code",
        Kind.INT,
        "501",
        "The reply code for a syntactically invalid host name.",
    ),
    Param("non_fqdn_reject_code", Kind.INT, "504", "The reply code for a name that is not fully qualified."),
    Param(
        "unknown_address_reject_code",
        Kind.INT,
        "450",
        "The reply code for an address whose domain does not resolve.",
    ),
    Param(
        "unknown_client_reject_code",
        Kind.INT,
        "450",
        "The reply code for a client without a valid host name.",
    ),
    Param(
        "unknown_hostname_reject_code",
        Kind.INT,
        "450",
        "The reply code for a HELO name that does not resolve.",
    ),
    Param(
        "unknown_local_recipient_reject_code",
        Kind.INT,
        "550",
        "The reply code for an unknown local recipient.",
    ),
    Param(
        "unknown_relay_recipient_reject_code",
        Kind.INT,
        "550",
        "The reply code for an unknown relay recipient.",
    ),
    Param(
        "unknown_virtual_alias_reject_code",
        Kind.INT,
        "550",
        "The reply code for an unknown virtual alias recipient.",
    ),
    Param(
        "unknown_virtual_mailbox_reject_code",
        Kind.INT,
        "550",
        "The reply code for an unknown virtual mailbox recipient.",
    ),
    Param("relay_domains_reject_code", Kind.INT, "554", "The reply code for relay access denied."),
    Param("maps_rbl_reject_code", Kind.INT, "554", "The reply code of a DNS blocklist hit."),
    Param(
        "multi_recipient_bounce_reject_code",
        Kind.INT,
        "550",
        "The reply code of reject_multi_recipient_bounce.",
    ),
    Param("plaintext_reject_code", Kind.INT, "450", "The reply code when TLS is required and absent."),
    Param(
        "reject_tempfail_action",
        Kind.STRING,
        "defer_if_permit",
        "What happens when a reject restriction fails temporarily.",
    ),
    Param(
        "unknown_address_tempfail_action",
        Kind.STRING,
        "$reject_tempfail_action",
        "What happens when an address domain lookup fails temporarily.",
    ),
    Param(
        "unknown_helo_hostname_tempfail_action",
        Kind.STRING,
        "$reject_tempfail_action",
        "What happens when a HELO name lookup fails temporarily.",
    ),
)
