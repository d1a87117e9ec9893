"""Identity, paths and logging: the parameters every part of mailhorn reads."""

from __future__ import annotations

from mailhorn.config import derived
from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("config_directory", Kind.STRING, "/etc/postfix", "Where main.cf and master.cf live."),
    Param("queue_directory", Kind.STRING, "/var/spool/postfix", "The root of the mail queue."),
    Param("data_directory", Kind.STRING, "/var/lib/postfix", "Where caches and other state live."),
    Param("myhostname", Kind.STRING, "", "This host's fully-qualified name.", derive=derived.myhostname),
    Param("mydomain", Kind.STRING, "", "This host's domain.", derive=derived.mydomain),
    Param("myorigin", Kind.STRING, "$myhostname", "Domain appended to unqualified sender addresses."),
    Param(
        "mydestination",
        Kind.LIST,
        "$myhostname, localhost.$mydomain, localhost",
        "Domains delivered by the local transport.",
    ),
    Param(
        "syslog_name",
        Kind.STRING,
        "${multi_instance_name?{$multi_instance_name}:{mailhorn}}",
        "The program name prefix of log records.",
    ),
    Param("maillog_file", Kind.STRING, "", "A file to log to instead of syslog."),
    Param("mail_name", Kind.STRING, "Postfix", "The mail system name in the SMTP greeting and headers."),
    Param("multi_instance_name", Kind.STRING, "", "This instance's name."),
    Param("alias_maps", Kind.LIST, "hash:/etc/aliases, nis:mail.aliases", "Tables of local(8) aliases."),
    Param("alias_database", Kind.LIST, "hash:/etc/aliases", "Alias tables that newaliases rebuilds."),
)
