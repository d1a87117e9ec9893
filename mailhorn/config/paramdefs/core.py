"""Identity, logging and compatibility: the parameters every part of mailhorn reads.

Defaults are Postfix 3.7's, exactly as ``postconf -d`` prints them, with one
deliberate difference: ``syslog_name`` defaults to ``mailhorn`` (or the
instance name), so that log records say which program wrote them.

``myhostname``, ``mydomain`` and ``mynetworks`` depend on the host and are
computed by :mod:`mailhorn.config.derived`; so are ``process_id`` and
``process_name``, which describe the running program. ``mail_version`` and
``mail_release_date`` name the Postfix release whose configuration language
and defaults mailhorn follows (postconf(5) ``mail_version``), not mailhorn's
own version.
"""

from __future__ import annotations

from mailhorn.config import derived
from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "myhostname",
        Kind.STRING,
        "",
        "This host's fully-qualified domain name.",
        derive=derived.myhostname,
    ),
    Param("mydomain", Kind.STRING, "", "The domain this host belongs to.", derive=derived.mydomain),
    Param(
        "myorigin",
        Kind.STRING,
        "$myhostname",
        "The domain appended to locally posted mail whose sender or recipient lacks one.",
    ),
    Param(
        "mydestination",
        Kind.LIST,
        "$myhostname, localhost.$mydomain, localhost",
        "Domains whose mail is delivered by the local transport.",
    ),
    Param(
        "mynetworks",
        Kind.LIST,
        "",
        "Trusted client networks that may relay and skip some checks.",
        derive=derived.mynetworks,
    ),
    Param(
        "mynetworks_style",
        Kind.STRING,
        "${{$compatibility_level} <level {2} ? {subnet} : {host}}",
        "How the mynetworks default is computed: host, subnet or class.",
    ),
    Param(
        "mail_name",
        Kind.STRING,
        "Postfix",
        "The mail system's name, shown in the SMTP greeting and in generated headers.",
    ),
    Param(
        "mail_version",
        Kind.STRING,
        "3.7.11",
        "The Postfix version whose configuration language this system follows.",
    ),
    Param(
        "mail_release_date",
        Kind.STRING,
        "20240304",
        "The release date of that Postfix version, as YYYYMMDD.",
    ),
    Param("compatibility_level", Kind.STRING, "0", "The Postfix release whose default settings apply."),
    Param("multi_instance_name", Kind.STRING, "", "The name of this instance, used in log records."),
    Param(
        "multi_instance_enable",
        Kind.BOOL,
        "no",
        "Whether the multi-instance manager starts this instance.",
    ),
    Param("multi_instance_directories", Kind.LIST, "", "Configuration directories of the extra instances."),
    Param("multi_instance_group", Kind.STRING, "", "The group this instance belongs to."),
    Param("process_id", Kind.STRING, "", "The process ID of the running program.", derive=derived.process_id),
    Param("process_name", Kind.STRING, "", "The name of the running program.", derive=derived.process_name),
    Param(
        "syslog_name",
        Kind.STRING,
        "${multi_instance_name?{$multi_instance_name}:{mailhorn}}",
        "The program name prefix of log records.",
    ),
    Param("syslog_facility", Kind.STRING, "mail", "The syslog facility of log records."),
    Param("maillog_file", Kind.STRING, "", "A file to log to instead of syslog."),
    Param(
        "maillog_file_prefixes",
        Kind.LIST,
        "/var, /dev/stdout",
        "Path prefixes under which maillog_file must be.",
    ),
    Param(
        "maillog_file_rotate_suffix",
        Kind.STRING,
        "%Y%m%d-%H%M%S",
        "The strftime() suffix appended when the log file is rotated.",
    ),
    Param("maillog_file_compressor", Kind.STRING, "gzip", "The program that compresses a rotated log file."),
    Param(
        "postlog_service_name",
        Kind.STRING,
        "postlog",
        "The service that writes maillog_file for unprivileged programs.",
    ),
    Param(
        "postlogd_watchdog_timeout",
        Kind.TIME,
        "10s",
        "How long a log writer may block before it is killed.",
        unit="s",
    ),
    Param(
        "info_log_address_format",
        Kind.STRING,
        "external",
        "How addresses are written in informational log records: external or internal.",
    ),
    Param(
        "respectful_logging",
        Kind.BOOL,
        "${{$compatibility_level} <level {3.6} ? {no} : {yes}}",
        "Whether log records avoid words some people find offensive.",
    ),
    Param("helpful_warnings", Kind.BOOL, "yes", "Whether to warn about configuration and usage problems."),
    Param("debug_peer_level", Kind.INT, "2", "How much more verbose logging is for debug_peer_list peers."),
    Param("debug_peer_list", Kind.LIST, "", "Remote hosts or networks whose sessions are logged in detail."),
    Param(
        "debugger_command",
        Kind.STRING,
        "",
        "The command run when a program is started with debugging enabled.",
    ),
    Param("stress", Kind.STRING, "", "Set to yes by the master when services run out of processes."),
    Param(
        "soft_bounce",
        Kind.BOOL,
        "no",
        "Turn permanent delivery errors into temporary ones (for testing).",
    ),
    Param(
        "smtputf8_enable",
        Kind.BOOL,
        "${{$compatibility_level} <level {1} ? {no} : {yes}}",
        "Whether SMTPUTF8 (RFC 6531) support is enabled.",
    ),
    Param(
        "smtputf8_autodetect_classes",
        Kind.LIST,
        "sendmail, verify",
        "Mail sources whose non-ASCII content is flagged SMTPUTF8 automatically.",
    ),
    Param(
        "strict_smtputf8",
        Kind.BOOL,
        "no",
        "Whether non-ASCII mail needs the SMTPUTF8 flag to be accepted.",
    ),
    Param(
        "enable_idna2003_compatibility",
        Kind.BOOL,
        "no",
        "Whether domain names are converted with IDNA2003 rules instead of UTS 46.",
    ),
    Param(
        "message_size_limit",
        Kind.INT,
        "10240000",
        "The largest message, in bytes, including envelope information.",
    ),
    Param(
        "line_length_limit",
        Kind.INT,
        "2048",
        "The longest line kept whole; longer lines are broken when mail is received.",
    ),
)
