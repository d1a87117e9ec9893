"""The cleanup service: missing-header repair, header and body checks, canonical
and masquerade rewriting, automatic blind copies, MIME limits, and the
switches and filters applied to every incoming message.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("header_checks", Kind.LIST, "", "Pattern tables applied to each message header."),
    Param(
        "mime_header_checks",
        Kind.LIST,
        "$header_checks",
        "Pattern tables applied to MIME headers (default: header_checks).",
    ),
    Param(
        "nested_header_checks",
        Kind.LIST,
        "$header_checks",
        "Pattern tables applied to headers of attached messages (default: header_checks).",
    ),
    Param("body_checks", Kind.LIST, "", "Pattern tables applied to each body line."),
    Param(
        "body_checks_size_limit",
        Kind.INT,
        "51200",
        "How much of each body part is given to body_checks, in bytes.",
    ),
    Param("canonical_maps", Kind.LIST, "", "Tables that rewrite sender and recipient addresses."),
    Param("sender_canonical_maps", Kind.LIST, "", "Tables that rewrite sender addresses."),
    Param("recipient_canonical_maps", Kind.LIST, "", "Tables that rewrite recipient addresses."),
    Param(
        "canonical_classes",
        Kind.LIST,
        "envelope_sender, envelope_recipient, header_sender, header_recipient",
        "Which addresses canonical_maps rewrites: envelope and/or header.",
    ),
    Param(
        "sender_canonical_classes",
        Kind.LIST,
        "envelope_sender, header_sender",
        "Which addresses sender_canonical_maps rewrites.",
    ),
    Param(
        "recipient_canonical_classes",
        Kind.LIST,
        "envelope_recipient, header_recipient",
        "Which addresses recipient_canonical_maps rewrites.",
    ),
    Param("masquerade_domains", Kind.LIST, "", "Domains whose subdomains are hidden in rewritten addresses."),
    Param("masquerade_exceptions", Kind.LIST, "", "Users whose addresses are not masqueraded."),
    Param(
        "masquerade_classes",
        Kind.LIST,
        "envelope_sender, header_sender, header_recipient",
        "Which addresses are masqueraded: envelope and/or header.",
    ),
    Param("always_bcc", Kind.STRING, "", "An address that gets a blind copy of every message."),
    Param("sender_bcc_maps", Kind.LIST, "", "Tables of blind copy addresses by sender."),
    Param("recipient_bcc_maps", Kind.LIST, "", "Tables of blind copy addresses by recipient."),
    Param(
        "always_add_missing_headers",
        Kind.BOOL,
        "no",
        "Whether missing From:, To:, Date: and Message-ID: are added to mail from anywhere.",
    ),
    Param(
        "remote_header_rewrite_domain",
        Kind.STRING,
        "",
        (
            "The domain appended to incomplete header addresses in mail from remote clients (empty = "
            "leave them)."
        ),
    ),
    Param(
        "local_header_rewrite_clients",
        Kind.LIST,
        "permit_inet_interfaces",
        "Clients whose mail has its header addresses rewritten.",
    ),
    Param("header_size_limit", Kind.INT, "102400", "The longest header kept whole, in bytes."),
    Param("header_address_token_limit", Kind.INT, "10240", "The most tokens in an address header."),
    Param(
        "hopcount_limit",
        Kind.INT,
        "50",
        "The most Received: headers a message may carry before it is returned.",
    ),
    Param(
        "message_drop_headers",
        Kind.LIST,
        "bcc, content-length, resent-bcc, return-path",
        "Headers removed from every message.",
    ),
    Param("message_reject_characters", Kind.STRING, "", "Characters that make a message be refused."),
    Param("message_strip_characters", Kind.STRING, "", "Characters removed from message content."),
    Param(
        "undisclosed_recipients_header",
        Kind.STRING,
        "",
        "The header added when a message has no recipient headers.",
    ),
    Param("header_from_format", Kind.STRING, "standard", "How the From: header added by cleanup is written."),
    Param(
        "enable_original_recipient",
        Kind.BOOL,
        "yes",
        "Whether the original recipient address is kept for DSN and logs.",
    ),
    Param(
        "receive_override_options",
        Kind.LIST,
        "",
        "Switches that turn off cleanup and smtpd processing, e.g. for content filters.",
    ),
    Param(
        "content_filter",
        Kind.STRING,
        "",
        "The transport that receives every message for after-queue filtering.",
    ),
    Param(
        "internal_mail_filter_classes",
        Kind.LIST,
        "",
        "Internally generated mail that passes through content inspection.",
    ),
    Param(
        "cleanup_replace_stray_cr_lf",
        Kind.BOOL,
        "yes",
        "Whether stray CR and LF characters in message content are replaced.",
    ),
    Param("strict_7bit_headers", Kind.BOOL, "no", "Whether 8-bit header text is refused."),
    Param(
        "strict_8bitmime",
        Kind.BOOL,
        "no",
        "Whether strict_7bit_headers and strict_8bitmime_body both apply.",
    ),
    Param(
        "strict_8bitmime_body",
        Kind.BOOL,
        "no",
        "Whether 8-bit body text in a message not declared 8-bit is refused.",
    ),
    Param(
        "strict_mime_encoding_domain",
        Kind.BOOL,
        "no",
        "Whether invalid Content-Transfer-Encoding values are refused.",
    ),
    Param("mime_nesting_limit", Kind.INT, "100", "The deepest MIME multipart or attachment nesting."),
    Param("mime_boundary_length_limit", Kind.INT, "2048", "The longest MIME boundary string."),
    Param("disable_mime_input_processing", Kind.BOOL, "no", "Whether MIME structure is ignored on input."),
    Param(
        "disable_mime_output_conversion",
        Kind.BOOL,
        "no",
        "Whether 8-bit to 7-bit conversion is turned off.",
    ),
    Param(
        "detect_8bit_encoding_header",
        Kind.BOOL,
        "yes",
        "Whether 8-bit body encoding is guessed from Content-Transfer-Encoding.",
    ),
)
