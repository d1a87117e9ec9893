"""The local delivery agent: aliases, ``.forward`` files, mailbox and Maildir
delivery, ``|command`` and ``/file`` destinations, and the checks that guard
them (postconf(5) ``allow_mail_to_commands``, ``default_privs``).
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("alias_maps", Kind.LIST, "hash:/etc/aliases, nis:mail.aliases", "Tables of local(8) aliases."),
    Param("alias_database", Kind.LIST, "hash:/etc/aliases", "Alias tables that newaliases rebuilds."),
    Param(
        "local_recipient_maps",
        Kind.LIST,
        "proxy:unix:passwd.byname $alias_maps",
        "Valid recipients in the local domains.",
    ),
    Param(
        "home_mailbox",
        Kind.STRING,
        "",
        "The mailbox path relative to the user's home (a trailing / means Maildir).",
    ),
    Param(
        "mail_spool_directory",
        Kind.STRING,
        "/var/mail",
        "Where mbox mailboxes live when home_mailbox is empty.",
    ),
    Param(
        "mailbox_command",
        Kind.STRING,
        "",
        "The command that delivers to the mailbox instead of local(8).",
        raw=True,
    ),
    Param("mailbox_command_maps", Kind.LIST, "", "Per-user mailbox_command settings."),
    Param("mailbox_transport", Kind.STRING, "", "A transport that takes over mailbox delivery."),
    Param("mailbox_transport_maps", Kind.LIST, "", "Per-user mailbox_transport settings."),
    Param("fallback_transport", Kind.STRING, "", "The transport for recipients without a local account."),
    Param("fallback_transport_maps", Kind.LIST, "", "Per-user fallback_transport settings."),
    Param("luser_relay", Kind.STRING, "", "Where mail to an unknown local recipient is sent.", raw=True),
    Param(
        "mailbox_size_limit",
        Kind.INT,
        "51200000",
        "The largest mailbox or Maildir file local(8) writes, in bytes.",
    ),
    Param("mailbox_delivery_lock", Kind.LIST, "fcntl, dotlock", "How mbox files are locked."),
    Param(
        "forward_path",
        Kind.LIST,
        "$home/.forward${recipient_delimiter}${extension}, $home/.forward",
        "Where local(8) looks for a user's .forward file.",
        raw=True,
    ),
    Param(
        "allow_mail_to_commands",
        Kind.LIST,
        "alias, forward",
        "Which alias and forward sources may deliver to |command.",
    ),
    Param(
        "allow_mail_to_files",
        Kind.LIST,
        "alias, forward",
        "Which alias and forward sources may deliver to /file.",
    ),
    Param("allow_min_user", Kind.BOOL, "no", "Whether addresses starting with - are allowed."),
    Param("default_privs", Kind.STRING, "nobody", "The user that runs deliveries for aliases owned by root."),
    Param(
        "local_command_shell",
        Kind.STRING,
        "",
        "The shell that runs |command deliveries (empty = no shell for simple commands).",
    ),
    Param("command_time_limit", Kind.TIME, "1000s", "The time limit for a |command delivery.", unit="s"),
    Param(
        "command_expansion_filter",
        Kind.STRING,
        "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "The characters allowed in $name expansions of command lines.",
    ),
    Param("command_execution_directory", Kind.STRING, "", "The working directory of |command deliveries.", raw=True),
    Param(
        "execution_directory_expansion_filter",
        Kind.STRING,
        "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "The characters allowed in command_execution_directory expansions.",
    ),
    Param(
        "forward_expansion_filter",
        Kind.STRING,
        "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "The characters allowed in forward_path expansions.",
    ),
    Param(
        "prepend_delivered_header",
        Kind.LIST,
        "command, file, forward",
        "Delivery types that add a Delivered-To: header.",
    ),
    Param(
        "expand_owner_alias",
        Kind.BOOL,
        "no",
        "Whether owner-listname aliases are expanded instead of used as senders.",
    ),
    Param(
        "reset_owner_alias",
        Kind.BOOL,
        "no",
        "Whether an owner-listname alias resets the sender of forwarded mail.",
    ),
    Param(
        "owner_request_special",
        Kind.BOOL,
        "yes",
        "Whether listname-request and owner-listname are handled specially.",
    ),
    Param("require_home_directory", Kind.BOOL, "no", "Whether a user's home must exist before delivery."),
    Param(
        "strict_mailbox_ownership",
        Kind.BOOL,
        "yes",
        "Whether a mailbox owned by another user is refused.",
    ),
    Param("biff", Kind.BOOL, "yes", "Whether the biff service is told of new mail."),
    Param(
        "sun_mailtool_compatibility",
        Kind.BOOL,
        "no",
        "Whether mailbox locking follows the old Sun mailtool convention.",
    ),
    Param("deliver_lock_attempts", Kind.INT, "20", "How often to try to lock a mailbox before giving up."),
    Param("deliver_lock_delay", Kind.TIME, "1s", "How long to wait between mailbox lock attempts.", unit="s"),
    Param(
        "stale_lock_time",
        Kind.TIME,
        "500s",
        "How old a lock file must be before it is removed.",
        unit="s",
    ),
    Param(
        "frozen_delivered_to",
        Kind.BOOL,
        "yes",
        "Whether Delivered-To: is fixed at the start of delivery.",
    ),
    Param(
        "local_delivery_status_filter",
        Kind.STRING,
        "$default_delivery_status_filter",
        "Tables that rewrite local(8) delivery status codes and texts.",
    ),
    Param(
        "duplicate_filter_limit",
        Kind.INT,
        "1000",
        "How many recipients local(8) and cleanup remember to suppress duplicates.",
    ),
)
