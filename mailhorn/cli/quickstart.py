"""``mailhorn quickstart ADDRESS``: a production configuration for a real domain.

Usage
    ``mailhorn quickstart user@domain [--hostname H] [--db URL] [--dir DIR]
    [--cert FILE --key FILE] [--queue-directory DIR] [--mailbox-base DIR]
    [--mail-owner NAME] [--password P] [--force]``

What it writes (into ``--dir``, default ``/etc/mailhorn``)
    ``main.cf`` and ``master.cf`` for a server on ports 25, 587, 465, 110,
    143, 993 and 995 (see :mod:`mailhorn.setup.templates`); the map files
    ``ENGINE-virtual_*.cf``; ``tls/cert.pem`` and ``tls/key.pem``, a
    self-signed certificate for the host name unless ``--cert`` and
    ``--key`` name existing files; ``dkim/DOMAIN.default.key``, a DKIM key
    (RSA 2048); ``mailhorn.service``, the systemd unit
    (:mod:`mailhorn.setup.systemd`; it is not installed, the output says
    how). Existing TLS and DKIM keys are kept, also with ``--force``: a DKIM
    key may already be published.

The directory
    ``--db`` is a database URL (:mod:`mailhorn.directory.url`); the default
    is ``sqlite:DIR/directory.sqlite``. For ``mysql://`` and
    ``postgresql://`` the database must exist; the guide's tables
    (``domains``, ``forwardings``, ``users``, ``transport``) are created if
    missing. The domain and the user are added, with ``postmaster@`` and
    ``abuse@`` forwarded to the user. The password is ``--password`` or a
    generated one, stored hashed (``{ARGON2ID}``) and printed once. A user
    that exists keeps its password (``mailhorn user passwd`` changes it).

Other defaults
    ``--hostname``: ``mail.DOMAIN``; ``--queue-directory``:
    ``/var/spool/mailhorn``; ``--mailbox-base``: ``/var/vmail``;
    ``--mail-owner``: ``postfix`` (Postfix's default). Started as root, the
    master hands its work to ``mail_owner``, which also owns the mailboxes;
    quickstart run as root creates that user (``useradd --system``) if it
    does not exist. Run as another user, everything belongs to that user
    (ports below 1024 then need to be moved with ``known_tcp_ports``).

Output
    The files written, the user and password, the DNS records to publish
    (:mod:`mailhorn.setup.dnsrecords`) and the next steps, on standard
    output. Errors: ``mailhorn-quickstart: fatal: TEXT`` on standard error
    and status 1; an existing ``main.cf`` or ``master.cf`` is never replaced
    without ``--force``.
"""

from __future__ import annotations

import getopt
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass

from mailhorn.directory.store import DirectoryError, address_domain, normalize_address
from mailhorn.directory.url import DatabaseURL, URLError, parse_url
from mailhorn.setup import dkim, dnsrecords, instance, systemd, templates, tls

PROGRAM = "mailhorn-quickstart"
USAGE = ("usage: mailhorn quickstart user@domain [--hostname H] [--db URL] [--dir DIR] [--cert FILE --key FILE]\n"
         "       [--queue-directory DIR] [--mailbox-base DIR] [--mail-owner NAME] [--password P] [--force]")
DEFAULT_DIR = "/etc/mailhorn"
DEFAULT_QUEUE = "/var/spool/mailhorn"
DEFAULT_MAILBOX_BASE = "/var/vmail"
DEFAULT_MAIL_OWNER = "postfix"


class Failure(Exception):
    """Quickstart cannot go on; the text says why."""


@dataclass
class Options:
    """The parsed command line."""

    address: str
    hostname: str | None = None
    db: str | None = None
    config_dir: str = DEFAULT_DIR
    cert: str | None = None
    key: str | None = None
    queue_directory: str = DEFAULT_QUEUE
    mailbox_base: str = DEFAULT_MAILBOX_BASE
    mail_owner: str = DEFAULT_MAIL_OWNER
    password: str | None = None
    force: bool = False


_LONG = ["hostname=", "db=", "dir=", "cert=", "key=", "queue-directory=", "mailbox-base=", "mail-owner=",
         "password=", "force"]


def parse_options(argv: list[str]) -> Options:
    """Options anywhere on the line; exactly one address."""
    try:
        opts, args = getopt.gnu_getopt(argv, "", _LONG)
    except getopt.GetoptError as exc:
        raise Failure(f"{exc}\n{USAGE}") from None
    if len(args) != 1:
        raise Failure(f"expected one address user@domain\n{USAGE}")
    options = Options(address=args[0])
    for opt, value in opts:
        if opt == "--hostname":
            options.hostname = value
        elif opt == "--db":
            options.db = value
        elif opt == "--dir":
            options.config_dir = value
        elif opt == "--cert":
            options.cert = value
        elif opt == "--key":
            options.key = value
        elif opt == "--queue-directory":
            options.queue_directory = value
        elif opt == "--mailbox-base":
            options.mailbox_base = value
        elif opt == "--mail-owner":
            options.mail_owner = value
        elif opt == "--password":
            options.password = value
        elif opt == "--force":
            options.force = True
    if (options.cert is None) != (options.key is None):
        raise Failure("--cert and --key go together")
    for name in ("config_dir", "queue_directory", "mailbox_base"):
        setattr(options, name, os.path.abspath(getattr(options, name)))
    return options


def ensure_mail_owner(name: str) -> instance.Owner:
    """The services' user; as root, create ``name`` as a system user when missing."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(name)
        except KeyError:
            command = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                       "--shell", "/usr/sbin/nologin", name]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise Failure(f"cannot create the user {name} (mail_owner): {done.stderr.strip()}") from None
            print(f"created the system user {name} (mail_owner)")
    return instance.current_owner(name)


def refuse_overwrite(options: Options) -> None:
    """An existing main.cf or master.cf stays unless ``--force``."""
    if options.force:
        return
    for name in ("main.cf", "master.cf"):
        path = os.path.join(options.config_dir, name)
        if os.path.exists(path):
            raise Failure(f"{path} exists: not replacing an existing configuration (use --force)")


def certificate(options: Options, hostname: str, owner: instance.Owner) -> tuple[str, str, str]:
    """The certificate and key paths, made when needed; and a description."""
    if options.cert is not None and options.key is not None:
        cert, key = os.path.abspath(options.cert), os.path.abspath(options.key)
        tls.check_pair(cert, key)
        return cert, key, "given"
    tls_dir = os.path.join(options.config_dir, "tls")
    os.makedirs(tls_dir, mode=0o755, exist_ok=True)
    cert, key = os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        try:
            tls.check_pair(cert, key)
            return cert, key, "kept"
        except tls.TlsSetupError:
            pass
    tls.make_self_signed(hostname, cert, key, owner.gid if owner.separate else None)
    return cert, key, f"self-signed for {hostname}"


def dkim_key(options: Options, domain: str, owner: instance.Owner) -> tuple[str, bytes, bool]:
    """The DKIM key's path and public key; True when it was made now."""
    directory = os.path.join(options.config_dir, "dkim")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, f"{domain}.{dkim.DEFAULT_SELECTOR}.key")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return path, dkim.public_der(f.read()), False
    return path, dkim.generate_key(path, owner.gid if owner.separate else None), True


def quickstart(options: Options) -> int:
    """Do it; print what was done and what comes next."""
    address = normalize_address(options.address)
    domain = address_domain(address)
    hostname = (options.hostname or f"mail.{domain}").rstrip(".").lower()
    refuse_overwrite(options)
    try:
        owner = ensure_mail_owner(options.mail_owner)
    except KeyError:
        raise Failure(f"unknown user name value: {options.mail_owner}") from None
    os.makedirs(options.config_dir, mode=0o755, exist_ok=True)
    url = parse_url(options.db or f"sqlite:{os.path.join(options.config_dir, 'directory.sqlite')}",
                    options.config_dir)
    cert, key, cert_note = certificate(options, hostname, owner)
    dkim_path, dkim_public, dkim_new = dkim_key(options, domain, owner)
    layout = templates.Layout(
        config_dir=options.config_dir, queue_directory=options.queue_directory,
        mailbox_base=options.mailbox_base, hostname=hostname, domain=domain, cert_file=cert, key_file=key,
        database=url, uid=owner.uid, gid=owner.gid,
        mail_owner=owner.name if owner.separate else None,
    )
    instance.make_directories(layout, owner)
    password = options.password or instance.generate_password()
    user = instance.populate_directory(url, domain, address, password, reset_password=options.password is not None)
    instance.share_sqlite(url, owner)
    written = instance.write_configuration(layout, owner, f"Written by mailhorn quickstart for {domain}.")
    unit_path = os.path.join(options.config_dir, systemd.UNIT_NAME)
    instance.write_file(unit_path, systemd.unit_text(systemd.mailhorn_command(), options.config_dir))
    report(options, layout, url, written, cert_note, dkim_path, dkim_new, dkim_public, user, password, unit_path)
    return 0


def report(options: Options, layout: templates.Layout, url: DatabaseURL, written: list[str], cert_note: str,
           dkim_path: str, dkim_new: bool, dkim_public: bytes, user: instance.UserResult, password: str,
           unit_path: str) -> None:
    """What was done, the DNS records and the next steps."""
    out: list[str] = [f"mailhorn quickstart: configuration for {layout.domain} in {options.config_dir}"]
    out += [f"  wrote {path}" for path in written]
    out += [
        f"  systemd unit {unit_path}",
        f"  directory    {url.display()}",
        f"  certificate  {layout.cert_file} ({cert_note})",
        f"  key          {layout.key_file}",
        f"  DKIM key     {dkim_path} ({'new' if dkim_new else 'kept'}; selector {dkim.DEFAULT_SELECTOR})",
        f"  queue        {layout.queue_directory}",
        f"  mailboxes    {layout.mailbox_base}",
        "",
        f"User:     {user.address}",
    ]
    if user.password_set:
        out.append(f"Password: {password}")
    else:
        out.append(f"Password: unchanged (the user existed; `mailhorn -c {options.config_dir} user passwd "
                   f"{user.address}` sets a new one)")
    out += ["", "DNS records to publish:", *dnsrecords.records(layout.domain, layout.hostname, dkim_public), ""]
    config = options.config_dir
    steps = [
        "Publish the DNS records above (replace the <...> hints with this server's addresses).",
        f"Check the configuration: mailhorn -c {config} check",
        f"Start it: mailhorn -c {config} start   (or run it under systemd:)",
        *[f"    {line}" for line in systemd.install_hint(unit_path)],
        f"Add users and aliases: mailhorn -c {config} user add USER@{layout.domain}; "
        f"mailhorn -c {config} alias add ...",
    ]
    if cert_note.startswith("self-signed"):
        steps.append(f"Replace the self-signed certificate with one from a CA "
                     f"(smtpd_tls_cert_file, smtpd_tls_key_file in {config}/main.cf), then mailhorn -c {config} reload.")
    out.append("Next steps:")
    number = 0
    for step in steps:
        if step.startswith("    "):
            out.append("   " + step)
            continue
        number += 1
        out.append(f"  {number}. {step}")
    sys.stdout.write("".join(line + "\n" for line in out))
    sys.stdout.flush()


def run(argv: list[str]) -> int:
    """``mailhorn quickstart ARGV``; 0 on success, 1 on any error."""
    try:
        return quickstart(parse_options(argv))
    except (Failure, DirectoryError, URLError, tls.TlsSetupError) as exc:
        print(f"{PROGRAM}: fatal: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"{PROGRAM}: fatal: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: fatal: interrupted", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
