"""TLS in the SMTP server (STARTTLS and wrapper mode on port 465) and the
settings shared by every TLS user: cipher grades, curves and library options.

The obsolete ``smtpd_use_tls`` and ``smtpd_enforce_tls`` are declared because
existing configurations still set them; postconf(5) explains how they map to
``smtpd_tls_security_level``.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("smtpd_tls_security_level", Kind.STRING, "", "The SMTP server's TLS policy: none, may or encrypt."),
    Param(
        "smtpd_use_tls",
        Kind.BOOL,
        "no",
        "Whether the SMTP server offers STARTTLS (obsolete; see smtpd_tls_security_level).",
    ),
    Param(
        "smtpd_enforce_tls",
        Kind.BOOL,
        "no",
        "Whether the SMTP server requires TLS (obsolete; see smtpd_tls_security_level).",
    ),
    Param(
        "smtpd_tls_wrappermode",
        Kind.BOOL,
        "no",
        "Whether the SMTP server speaks TLS from the start (port 465).",
    ),
    Param("smtpd_tls_auth_only", Kind.BOOL, "no", "Whether AUTH is offered only inside TLS."),
    Param("smtpd_tls_cert_file", Kind.STRING, "", "The SMTP server's RSA certificate file."),
    Param(
        "smtpd_tls_key_file",
        Kind.STRING,
        "$smtpd_tls_cert_file",
        "The SMTP server's RSA private key file.",
    ),
    Param("smtpd_tls_eccert_file", Kind.STRING, "", "The SMTP server's ECDSA certificate file."),
    Param(
        "smtpd_tls_eckey_file",
        Kind.STRING,
        "$smtpd_tls_eccert_file",
        "The SMTP server's ECDSA private key file.",
    ),
    Param(
        "smtpd_tls_chain_files",
        Kind.LIST,
        "",
        "Files holding the SMTP server's keys and certificate chains.",
    ),
    Param("smtpd_tls_CAfile", Kind.STRING, "", "A file of CA certificates for verifying clients."),
    Param("smtpd_tls_CApath", Kind.STRING, "", "A directory of CA certificates for verifying clients."),
    Param("smtpd_tls_ask_ccert", Kind.BOOL, "no", "Whether clients are asked for a certificate."),
    Param("smtpd_tls_req_ccert", Kind.BOOL, "no", "Whether clients must present a verified certificate."),
    Param("smtpd_tls_ccert_verifydepth", Kind.INT, "9", "The longest client certificate chain checked."),
    Param(
        "smtpd_tls_protocols",
        Kind.LIST,
        ">=TLSv1",
        "TLS protocols the SMTP server accepts when TLS is optional.",
    ),
    Param(
        "smtpd_tls_mandatory_protocols",
        Kind.LIST,
        ">=TLSv1",
        "TLS protocols the SMTP server accepts when TLS is required.",
    ),
    Param("smtpd_tls_ciphers", Kind.STRING, "medium", "The cipher grade when TLS is optional."),
    Param("smtpd_tls_mandatory_ciphers", Kind.STRING, "medium", "The cipher grade when TLS is required."),
    Param("smtpd_tls_exclude_ciphers", Kind.LIST, "", "Ciphers never used by the SMTP server."),
    Param("smtpd_tls_mandatory_exclude_ciphers", Kind.LIST, "", "Ciphers excluded when TLS is required."),
    Param("smtpd_tls_dh1024_param_file", Kind.STRING, "", "A file of Diffie-Hellman parameters."),
    Param(
        "smtpd_tls_eecdh_grade",
        Kind.STRING,
        "auto",
        "The strength of ephemeral elliptic-curve key exchange.",
    ),
    Param(
        "smtpd_tls_fingerprint_digest",
        Kind.STRING,
        "${{$compatibility_level} <level {3.6} ? {md5} : {sha256}}",
        "The digest used for client certificate fingerprints.",
    ),
    Param("smtpd_tls_loglevel", Kind.INT, "0", "How much TLS activity the SMTP server logs."),
    Param(
        "smtpd_tls_received_header",
        Kind.BOOL,
        "no",
        "Whether TLS details are recorded in the Received: header.",
    ),
    Param("smtpd_tls_session_cache_database", Kind.STRING, "", "The SMTP server's TLS session cache."),
    Param(
        "smtpd_tls_session_cache_timeout",
        Kind.TIME,
        "3600s",
        "How long a cached TLS session stays valid.",
        unit="s",
    ),
    Param(
        "smtpd_tls_always_issue_session_ids",
        Kind.BOOL,
        "yes",
        "Whether session IDs are issued without a session cache.",
    ),
    Param(
        "tls_high_cipherlist",
        Kind.STRING,
        "aNULL:-aNULL:HIGH:@STRENGTH",
        "The ciphers of the \"high\" grade.",
    ),
    Param(
        "tls_medium_cipherlist",
        Kind.STRING,
        "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
        "The ciphers of the \"medium\" grade.",
    ),
    Param(
        "tls_low_cipherlist",
        Kind.STRING,
        "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH",
        "The ciphers of the \"low\" grade.",
    ),
    Param(
        "tls_export_cipherlist",
        Kind.STRING,
        "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH",
        "The ciphers of the \"export\" grade.",
    ),
    Param("tls_null_cipherlist", Kind.STRING, "eNULL:!aNULL", "The ciphers of the \"null\" grade."),
    Param("tls_preempt_cipherlist", Kind.BOOL, "no", "Whether the server's cipher preference wins."),
    Param(
        "tls_eecdh_auto_curves",
        Kind.LIST,
        "X25519 X448 prime256v1 secp521r1 secp384r1",
        "The elliptic curves offered for key exchange.",
    ),
    Param("tls_ssl_options", Kind.LIST, "", "Extra TLS library options."),
    Param("tls_disable_workarounds", Kind.LIST, "", "TLS bug workarounds that are turned off."),
    Param(
        "tls_session_ticket_cipher",
        Kind.STRING,
        "aes-256-cbc",
        "The cipher protecting TLS session tickets.",
    ),
    Param(
        "tls_server_sni_maps",
        Kind.LIST,
        "",
        "Keys and certificates chosen by the client's server name indication.",
    ),
    Param(
        "tls_append_default_CA",
        Kind.BOOL,
        "no",
        "Whether the system CA certificates are trusted in addition to the configured ones.",
    ),
    Param(
        "tls_wildcard_matches_multiple_labels",
        Kind.BOOL,
        "yes",
        "Whether a certificate wildcard matches several name labels.",
    ),
    Param(
        "tls_fast_shutdown_enable",
        Kind.BOOL,
        "yes",
        "Whether TLS sessions end without waiting for the peer's close notice.",
    ),
    Param(
        "tls_legacy_public_key_fingerprints",
        Kind.BOOL,
        "no",
        "Whether public key fingerprints use the pre-2.9.5 form.",
    ),
)
