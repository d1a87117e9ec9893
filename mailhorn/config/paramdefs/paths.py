"""Directories, program paths and ownership that mailhorn uses or reports.

The defaults are those of Debian's Postfix package, so that an existing
``/etc/postfix`` installation and the programs that read these parameters
(``postconf -d``, ``postfix-files``, package scripts) see the same values.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("config_directory", Kind.STRING, "/etc/postfix", "Where main.cf and master.cf live."),
    Param("queue_directory", Kind.STRING, "/var/spool/postfix", "The root of the mail queue."),
    Param(
        "data_directory",
        Kind.STRING,
        "/var/lib/postfix",
        "Where caches, locks and other writable state live.",
    ),
    Param(
        "meta_directory",
        Kind.STRING,
        "/etc/postfix",
        "Where non-executable support files such as postfix-files live.",
    ),
    Param("command_directory", Kind.STRING, "/usr/sbin", "Where the administrative commands are installed."),
    Param(
        "daemon_directory",
        Kind.STRING,
        "/usr/lib/postfix/sbin",
        "Where the server programs are installed.",
    ),
    Param(
        "shlib_directory",
        Kind.STRING,
        "/usr/lib/postfix",
        "Where shared libraries and map plugins are installed.",
    ),
    Param(
        "html_directory",
        Kind.STRING,
        "/usr/share/doc/postfix/html",
        "Where the HTML documentation is installed (no = not installed).",
    ),
    Param("manpage_directory", Kind.STRING, "/usr/share/man", "Where the manual pages are installed."),
    Param(
        "readme_directory",
        Kind.STRING,
        "/usr/share/doc/postfix",
        "Where the README files are installed (no = not installed).",
    ),
    Param(
        "sample_directory",
        Kind.STRING,
        "/etc/postfix",
        "Where the sample configuration files are installed.",
    ),
    Param("sendmail_path", Kind.STRING, "/usr/sbin/sendmail", "The path of the sendmail-compatible command."),
    Param("newaliases_path", Kind.STRING, "/usr/bin/newaliases", "The path of the newaliases command."),
    Param("mailq_path", Kind.STRING, "/usr/bin/mailq", "The path of the mailq command."),
    Param("openssl_path", Kind.STRING, "openssl", "The openssl(1) command used by certificate tools."),
    Param(
        "setgid_group",
        Kind.STRING,
        "postdrop",
        "The group that owns the mail submission and queue query commands.",
    ),
    Param(
        "mail_owner",
        Kind.STRING,
        "postfix",
        "The user that owns the queue and runs the network-facing services.",
    ),
    Param(
        "process_id_directory",
        Kind.STRING,
        "pid",
        "Where the master's process ID file lives, relative to the queue directory.",
    ),
    Param(
        "alternate_config_directories",
        Kind.LIST,
        "",
        "Extra configuration directories that unprivileged users may name with -c.",
    ),
    Param(
        "import_environment",
        Kind.LIST,
        "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME",
        "Environment variables kept (or set) when programs start.",
    ),
    Param(
        "export_environment",
        Kind.LIST,
        "TZ MAIL_CONFIG LANG",
        "Environment variables passed to external commands run for delivery.",
    ),
)
