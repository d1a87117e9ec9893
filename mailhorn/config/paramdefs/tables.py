"""How lookup tables are opened and matched: the default table type of postmap
and postalias, which features let a domain match its subdomains
(postconf(5) ``parent_domain_matches_subdomains``), and the tables the proxy
services may open.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "default_database_type",
        Kind.STRING,
        "hash",
        "The table type postmap and postalias use when none is given.",
    ),
    Param(
        "parent_domain_matches_subdomains",
        Kind.LIST,
        (
            "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
            "qmqpd_authorized_clients,relay_domains,smtpd_access_maps"
        ),
        "Features in which a domain also matches its subdomains.",
    ),
    Param(
        "proxy_read_maps",
        Kind.LIST,
        (
            "$local_recipient_maps $mydestination $virtual_alias_maps $virtual_alias_domains "
            "$virtual_mailbox_maps $virtual_mailbox_domains $relay_recipient_maps $relay_domains "
            "$canonical_maps $sender_canonical_maps $recipient_canonical_maps $relocated_maps "
            "$transport_maps $mynetworks $smtpd_sender_login_maps $sender_bcc_maps $recipient_bcc_maps "
            "$smtp_generic_maps $lmtp_generic_maps $alias_maps $smtpd_client_restrictions "
            "$smtpd_helo_restrictions $smtpd_sender_restrictions $smtpd_relay_restrictions "
            "$smtpd_recipient_restrictions $address_verify_sender_dependent_default_transport_maps "
            "$address_verify_sender_dependent_relayhost_maps $address_verify_transport_maps "
            "$fallback_transport_maps $lmtp_discard_lhlo_keyword_address_maps "
            "$lmtp_pix_workaround_maps $lmtp_sasl_password_maps $lmtp_tls_policy_maps "
            "$mailbox_command_maps $mailbox_transport_maps "
            "$postscreen_discard_ehlo_keyword_address_maps $rbl_reply_maps "
            "$sender_dependent_default_transport_maps $sender_dependent_relayhost_maps "
            "$smtp_discard_ehlo_keyword_address_maps $smtp_pix_workaround_maps "
            "$smtp_sasl_password_maps $smtp_tls_policy_maps $smtpd_discard_ehlo_keyword_address_maps "
            "$smtpd_milter_maps $virtual_gid_maps $virtual_uid_maps $local_login_sender_maps "
            "$postscreen_reject_footer_maps $smtpd_reject_footer_maps $tls_server_sni_maps "
            "$tlsproxy_client_policy_maps $default_delivery_status_filter $lmtp_delivery_status_filter "
            "$lmtp_dns_reply_filter $lmtp_reply_filter $local_delivery_status_filter "
            "$pipe_delivery_status_filter $postscreen_command_filter $smtp_delivery_status_filter "
            "$smtp_dns_reply_filter $smtp_reply_filter $smtpd_command_filter $smtpd_dns_reply_filter "
            "$virtual_delivery_status_filter $body_checks $header_checks $lmtp_body_checks "
            "$lmtp_header_checks $lmtp_mime_header_checks $lmtp_nested_header_checks "
            "$milter_header_checks $mime_header_checks $nested_header_checks $smtp_body_checks "
            "$smtp_header_checks $smtp_mime_header_checks $smtp_nested_header_checks"
        ),
        "Tables the read-only table proxy may open.",
    ),
    Param(
        "proxy_write_maps",
        Kind.LIST,
        "$smtp_sasl_auth_cache_name $lmtp_sasl_auth_cache_name $address_verify_map $postscreen_cache_map",
        "Tables the read-write table proxy may open.",
    ),
    # Referred to by the proxy_read_maps/proxy_write_maps defaults, so that
    # they expand as Postfix's do; mailhorn has no postscreen or tlsproxy
    # service and uses none of these for anything else.
    Param(
        "postscreen_cache_map",
        Kind.STRING,
        "btree:$data_directory/postscreen_cache",
        "Cache of client verdicts of Postfix's postscreen (named by proxy_write_maps).",
    ),
    Param("postscreen_command_filter", Kind.STRING, "", "Command rewriting table of postscreen (named by proxy_read_maps)."),
    Param(
        "postscreen_discard_ehlo_keyword_address_maps",
        Kind.LIST,
        "$smtpd_discard_ehlo_keyword_address_maps",
        "Per-client EHLO keywords postscreen hides (named by proxy_read_maps).",
    ),
    Param(
        "postscreen_reject_footer_maps",
        Kind.LIST,
        "$smtpd_reject_footer_maps",
        "Per-reply footer tables of postscreen (named by proxy_read_maps).",
    ),
    Param(
        "tlsproxy_client_policy_maps",
        Kind.LIST,
        "${tlsproxy_client_policy:$smtp_tls_policy_maps}",
        "TLS client policy of the TLS proxy (named by proxy_read_maps).",
    ),
)
