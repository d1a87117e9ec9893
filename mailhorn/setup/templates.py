"""main.cf, master.cf and the ``*.cf`` map files of a new instance.

The configuration is the one of the Postfix + MySQL guide (seed 003), with
mailhorn's own mail store in place of Courier:

* ``virtual_mailbox_domains``, ``virtual_alias_maps`` (forwardings, then
  email2email), ``virtual_mailbox_maps``, ``transport_maps`` and
  ``virtual_mailbox_limit_maps`` are ``mysql:``, ``pgsql:`` or ``sqlite:``
  tables, one ``ENGINE-virtual_NAME.cf`` file each, with the guide's
  queries (:data:`QUERIES`; for PostgreSQL and SQLite the guide's
  ``CONCAT``/``SUBSTRING_INDEX`` become ``split_part``/``substr``, same
  result); ``passdb_maps`` reads ``users.password`` for POP3, IMAP and
  SMTP AUTH (what Courier's authmysqlrc did in the guide);
* mailboxes are Maildirs ``virtual_mailbox_base/DOMAIN/USER/`` owned by
  ``virtual_uid_maps``/``virtual_gid_maps``, with Maildir++ quotas
  (``virtual_create_maildirsize``, ``virtual_mailbox_extended``, the user's
  ``quota`` column via ``virtual_mailbox_limit_maps``, over-quota mail
  bounced);
* TLS with the given certificate: opportunistic on port 25
  (``smtpd_tls_security_level = may``), required for logins.

master.cf: a production instance listens on 25 (smtp), 587 (submission,
STARTTLS and login required), 465 (submissions, TLS from the first byte),
110/995 (pop3/pop3s) and 143/993 (imap/imaps), by service name, so
``known_tcp_ports`` can move them. The demo listens on loopback ports given
as ``127.0.0.1:PORT``. The rest is Postfix's master.cf.proto
(:data:`mailhorn.services.DEFAULT_MASTER_CF`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mailhorn.directory.url import DatabaseURL, Engine
from mailhorn.services import DEFAULT_MASTER_CF

#: The map files, by short name.
MAP_NAMES: tuple[str, ...] = (
    "domains", "forwardings", "mailboxes", "email2email", "transports", "mailbox_limit_maps", "passwords",
)

_MAILBOX_QUERY: dict[Engine, str] = {
    "mysql": ("SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') "
              "FROM users WHERE email='%s'"),
    "pgsql": "SELECT split_part(email,'@',2) || '/' || split_part(email,'@',1) || '/' FROM users WHERE email='%s'",
    "sqlite": ("SELECT substr(email, instr(email,'@')+1) || '/' || substr(email, 1, instr(email,'@')-1) || '/' "
               "FROM users WHERE email='%s'"),
}


def query(engine: Engine, name: str) -> str:
    """The query of map ``name`` for ``engine`` (seed 003's, adapted)."""
    if name == "mailboxes":
        return _MAILBOX_QUERY[engine]
    return QUERIES[name]


#: The guide's queries that every engine understands as they are.
QUERIES: dict[str, str] = {
    "domains": "SELECT domain AS virtual FROM domains WHERE domain='%s'",
    "forwardings": "SELECT destination FROM forwardings WHERE source='%s'",
    "email2email": "SELECT email FROM users WHERE email='%s'",
    "transports": "SELECT transport FROM transport WHERE domain='%s'",
    "mailbox_limit_maps": "SELECT quota FROM users WHERE email='%s'",
    "passwords": "SELECT password FROM users WHERE email='%s'",
}


def map_file_name(engine: Engine, name: str) -> str:
    """``mysql-virtual_domains.cf`` and so on."""
    return f"{engine}-virtual_{name}.cf"


def connection_lines(url: DatabaseURL) -> list[str]:
    """The ``*.cf`` lines that say where the database is (``dbpath`` or hosts/user/password/dbname)."""
    if url.engine == "sqlite":
        return [f"dbpath = {url.path}"]
    if url.socket:
        hosts = f"unix:{url.socket}"
    elif url.engine == "pgsql":
        hosts = f"inet:{url.host}:{url.port}" if url.port else f"inet:{url.host}"
    else:
        hosts = url.host if not url.port or url.port == 3306 else f"{url.host}:{url.port}"
    return [f"user = {url.user}", f"password = {url.password}", f"dbname = {url.database}", f"hosts = {hosts}"]


def map_files(url: DatabaseURL) -> dict[str, str]:
    """File name → content of every map file for the directory at ``url``."""
    files = {}
    for name in MAP_NAMES:
        body = [*connection_lines(url), f"query = {query(url.engine, name)}"]
        files[map_file_name(url.engine, name)] = "".join(line + "\n" for line in body)
    return files


@dataclass(frozen=True)
class Layout:
    """Where an instance keeps things, and who it runs as."""

    config_dir: str
    queue_directory: str
    mailbox_base: str
    hostname: str
    domain: str
    cert_file: str
    key_file: str
    database: DatabaseURL
    #: Owner of the mailboxes (``virtual_uid_maps``/``virtual_gid_maps``).
    uid: int
    gid: int
    #: ``mail_owner`` to write, or None to leave Postfix's default.
    mail_owner: str | None = None
    #: Demo: loopback only, nothing leaves the machine; ``ports`` holds service → port.
    demo: bool = False
    ports: dict[str, int] = field(default_factory=dict)

    def map_spec(self, name: str) -> str:
        """``ENGINE:/path/ENGINE-virtual_NAME.cf``."""
        engine = self.database.engine
        return f"{engine}:{os.path.join(self.config_dir, map_file_name(engine, name))}"


def main_cf(layout: Layout, header: str) -> str:
    """The main.cf text; ``header`` is the first comment line."""
    m = layout.map_spec
    lines = [
        f"# {header}",
        "# Parameters are Postfix's (postconf(5)); `mailhorn postconf -n` lists them.",
        "compatibility_level = 3.6",
        f"myhostname = {layout.hostname}",
        f"mydomain = {layout.domain}",
        "myorigin = $mydomain",
        f"queue_directory = {layout.queue_directory}",
    ]
    if layout.mail_owner is not None:
        lines.append(f"mail_owner = {layout.mail_owner}")
    if layout.demo:
        lines += [
            "",
            "# The demo: loopback only; mail for other domains is refused, never sent out.",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "mydestination =",
            "smtpd_peername_lookup = no",
            "default_transport = error:5.7.1 this demo does not send mail off this machine",
            "relay_transport = $default_transport",
        ]
    else:
        lines += [
            "",
            "inet_interfaces = all",
            "inet_protocols = all",
            "mynetworks = 127.0.0.0/8 [::1]/128",
            "mydestination = localhost",
        ]
    lines += [
        "alias_maps =",
        "alias_database =",
        "smtpd_helo_required = yes",
        "disable_vrfy_command = yes",
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
        "",
        "# TLS: offered on port 25, required for logins (submission, POP3, IMAP).",
        f"smtpd_tls_cert_file = {layout.cert_file}",
        f"smtpd_tls_key_file = {layout.key_file}",
        "smtpd_tls_security_level = may",
        "smtpd_tls_auth_only = yes",
        "smtp_tls_security_level = may",
        "",
        "# The mail directory (tables domains, forwardings, users, transport;",
        "# `mailhorn domain|user|alias|transport` change it).",
        f"virtual_mailbox_domains = {m('domains')}",
        f"virtual_alias_maps = {m('forwardings')}, {m('email2email')}",
        f"virtual_mailbox_maps = {m('mailboxes')}",
        f"transport_maps = {m('transports')}",
        f"virtual_mailbox_base = {layout.mailbox_base}",
        f"virtual_uid_maps = static:{layout.uid}",
        f"virtual_gid_maps = static:{layout.gid}",
    ]
    if layout.uid < 100:
        lines.append(f"virtual_minimum_uid = {layout.uid}")
    lines += [
        f"virtual_mailbox_limit_maps = {m('mailbox_limit_maps')}",
        "virtual_mailbox_limit_override = yes",
        "virtual_create_maildirsize = yes",
        "virtual_mailbox_extended = yes",
        "virtual_overquota_bounce = yes",
        "",
        "# Logins (SMTP AUTH, POP3, IMAP) check users.password.",
        f"passdb_maps = {m('passwords')}",
        "auth_mechanisms = plain login",
    ]
    return "".join(line + "\n" for line in lines)


#: The -o overrides of a submission service (master.cf.proto's, with the restriction lists filled in).
SUBMISSION_OPTIONS: tuple[str, ...] = (
    "smtpd_sasl_auth_enable=yes",
    "smtpd_reject_unlisted_recipient=no",
    "smtpd_client_restrictions=permit_sasl_authenticated,reject",
    "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
    "milter_macro_daemon_name=ORIGINATING",
)


def _entry(name: str, command: str, options: list[str]) -> list[str]:
    lines = [f"{name:<20} inet  n       -       n       -       -       {command}"]
    lines += [f"  -o {option}" for option in options]
    return lines


def network_services(layout: Layout) -> list[str]:
    """master.cf lines of the listening services."""
    syslog = "mailhorn"
    lines: list[str] = []
    if layout.demo:
        def name(service: str) -> str:
            return f"127.0.0.1:{layout.ports[service]}"

        lines += _entry(name("smtp"), "smtpd", [])
        lines += _entry(name("submission"), "smtpd", [f"syslog_name={syslog}/submission",
                                                      "smtpd_tls_security_level=encrypt", *SUBMISSION_OPTIONS])
        lines += _entry(name("pop3"), "pop3d", [])
        lines += _entry(name("imap"), "imapd", [])
        return lines
    lines += _entry("smtp", "smtpd", [])
    lines += _entry("submission", "smtpd", [f"syslog_name={syslog}/submission", "smtpd_tls_security_level=encrypt",
                                            *SUBMISSION_OPTIONS])
    lines += _entry("submissions", "smtpd", [f"syslog_name={syslog}/submissions", "smtpd_tls_wrappermode=yes",
                                             *SUBMISSION_OPTIONS])
    lines += _entry("pop3", "pop3d", [])
    lines += _entry("pop3s", "pop3d", ["pop3_tls_wrappermode=yes"])
    lines += _entry("imap", "imapd", [])
    lines += _entry("imaps", "imapd", ["imap_tls_wrappermode=yes"])
    return lines


def master_cf(layout: Layout, header: str) -> str:
    """The master.cf text."""
    lines = [
        f"# {header}",
        "# service type  private unpriv  chroot  wakeup  maxproc command + args",
        *network_services(layout),
    ]
    for line in DEFAULT_MASTER_CF.splitlines():
        fields = line.split()
        if fields[:2] == ["smtp", "inet"]:
            continue
        lines.append(line)
    return "".join(line + "\n" for line in lines)
