"""``mailhorn domain|user|alias|transport``: administer the mail directory.

Usage
    ``mailhorn domain [options] add|del|list [DOMAIN]``
    ``mailhorn user [options] add ADDRESS [--password P] [--scheme S] [--quota BYTES]``
    ``mailhorn user [options] passwd ADDRESS [--password P] [--scheme S]``
    ``mailhorn user [options] del ADDRESS``
    ``mailhorn user [options] list [DOMAIN]``
    ``mailhorn user [options] quota ADDRESS BYTES``
    ``mailhorn alias [options] add SOURCE DESTINATION[,DESTINATION...]``
    ``mailhorn alias [options] del SOURCE``
    ``mailhorn alias [options] list [DOMAIN]``
    ``mailhorn transport [options] add KEY TRANSPORT``
    ``mailhorn transport [options] del KEY [TRANSPORT]``
    ``mailhorn transport [options] list [DOMAIN]``

Options (anywhere on the line)
    ``-c DIR``            configuration directory (default ``$MAIL_CONFIG``,
                          else /etc/postfix).
    ``--database URL``    the directory database, overriding main.cf
                          (see :mod:`mailhorn.directory.url`).
    ``--force``           ``domain del``: delete the domain's users and
                          forwardings with it.
    ``--password P``      the new password; without it the password is asked
                          for twice on the terminal, or one line is read from
                          standard input when that is not a terminal.
    ``--scheme S``        password scheme (default ``ARGON2ID``; any scheme
                          of ``mailhorn pw -l``, e.g. ``SHA512-CRYPT``).
    ``--quota BYTES``     mailbox size limit; without it the column default
                          (10485760 in the guide's schema) applies.

Sources of aliases may be ``@domain`` (catch-all) and their destination
``@otherdomain`` (domain to domain), as the guide's forwardings table holds
them. Transport keys are ``domain``, ``.domain``, ``user@domain`` or ``*``;
values are transport(5) results such as ``smtp:[mail.example.com]:2025``,
``lmtp:unix:/path`` or ``:``.

Output: ``list`` prints one record per line, fields separated by a tab,
sorted: domains; ``ADDRESS<TAB>QUOTA`` (``-`` when the quota is NULL);
``SOURCE<TAB>DESTINATIONS``; ``KEY<TAB>TRANSPORT``. Changes print nothing.
Exit status 0 on success, 1 with ``mailhorn-COMMAND: fatal: REASON`` on
standard error otherwise. The password is never printed.

Changes are committed rows: the mysql:/pgsql:/sqlite: lookup tables see them
at their next lookup, without a reload.
"""

from __future__ import annotations

import getopt
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.auth import passwords
from mailhorn.auth.crypt import CryptUnavailableError
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import DEFAULT_CONFIG_DIR, Config, load, main_cf_path
from mailhorn.directory.store import Directory, DirectoryError
from mailhorn.directory.url import URLError, from_config

USAGES: dict[str, str] = {
    "domain": "usage: mailhorn domain [-c config_dir] [--database URL] add|del [--force]|list [domain]",
    "user": ("usage: mailhorn user [-c config_dir] [--database URL] add|passwd|del|list|quota ...\n"
             "  user add ADDRESS [--password P] [--scheme S] [--quota BYTES]\n"
             "  user passwd ADDRESS [--password P] [--scheme S]\n"
             "  user del ADDRESS | user list [DOMAIN] | user quota ADDRESS BYTES"),
    "alias": ("usage: mailhorn alias [-c config_dir] [--database URL] add SOURCE DESTINATION[,...] | "
              "del SOURCE | list [DOMAIN]"),
    "transport": ("usage: mailhorn transport [-c config_dir] [--database URL] add KEY TRANSPORT | "
                  "del KEY [TRANSPORT] | list [DOMAIN]"),
}

#: Long options each command accepts besides ``--database``.
_LONG_OPTIONS: dict[str, list[str]] = {
    "domain": ["force"],
    "user": ["password=", "scheme=", "quota="],
    "alias": [],
    "transport": [],
}


class UsageError(Exception):
    """Wrong arguments: the usage line is printed after the message."""


class Failure(Exception):
    """A refused or failed request (``fatal:``)."""


@dataclass
class Options:
    """A parsed command line."""

    command: str
    config_dir: str | None = None
    database: str | None = None
    force: bool = False
    password: str | None = None
    scheme: str = passwords.DEFAULT_HASH_SCHEME
    quota: int | None = None
    args: list[str] = field(default_factory=list)


def parse_quota(text: str) -> int:
    """A quota in bytes: a whole number, 0 or more."""
    if not text.isascii() or not text.isdigit():
        raise Failure(f"invalid quota {text!r}: expected a number of bytes")
    return int(text)


def parse_options(command: str, argv: list[str]) -> Options:
    """Options anywhere among the arguments (GNU style)."""
    try:
        opts, args = getopt.gnu_getopt(argv, "c:", ["database=", *_LONG_OPTIONS[command]])
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    options = Options(command, args=args)
    for opt, value in opts:
        if opt == "-c":
            options.config_dir = value
        elif opt == "--database":
            options.database = value
        elif opt == "--force":
            options.force = True
        elif opt == "--password":
            options.password = value
        elif opt == "--scheme":
            options.scheme = value
        elif opt == "--quota":
            options.quota = parse_quota(value)
    return options


def load_config(options: Options) -> Config:
    """main.cf of ``-c DIR`` / ``$MAIL_CONFIG``; with ``--database`` it may be absent."""
    directory = options.config_dir or os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIR
    if options.database and not os.path.exists(main_cf_path(directory)):
        return Config(config_dir=directory)
    return load(directory)


def open_directory(options: Options) -> Directory:
    """The directory the configuration (or ``--database``) names, its tables created if missing."""
    config = load_config(options)
    log.setup(f"mailhorn-{options.command}", syslog_name=config.get("syslog_name") or "mailhorn", stderr=True)
    return Directory.open(from_config(config, options.database))


def read_password(options: Options) -> str:
    """``--password``, or asked twice on a terminal, or one line of standard input."""
    if options.password is not None:
        password = options.password
    elif sys.stdin.isatty():
        password = getpass.getpass("Enter new password: ")
        if getpass.getpass("Retype new password: ") != password:
            raise Failure("passwords don't match")
    else:
        line = sys.stdin.readline()
        if not line:
            raise Failure("no password given on standard input")
        password = line.rstrip("\n").rstrip("\r")
    if not password:
        raise Failure("empty password")
    return password


def make_hash(options: Options, address: str) -> str:
    """The stored form of the new password (``{SCHEME}data``)."""
    try:
        passwords.lookup_scheme(options.scheme)
    except passwords.UnknownSchemeError:
        raise Failure(f"unknown password scheme {options.scheme!r} (see 'mailhorn pw -l')") from None
    password = read_password(options)
    try:
        return passwords.hash_password(password, options.scheme, user=address)
    except (passwords.PasswordError, CryptUnavailableError) as exc:
        raise Failure(f"cannot hash the password with {options.scheme}: {exc}") from None


def _arguments(options: Options, low: int, high: int) -> list[str]:
    """The arguments after the subcommand, checking their count."""
    rest = options.args[1:]
    if not low <= len(rest) <= high:
        raise UsageError(f"{options.command} {options.args[0]}: wrong number of arguments")
    return rest


def _refuse_options(options: Options, subcommand: str, allowed: set[str]) -> None:
    given = {name for name, on in (("force", options.force), ("password", options.password is not None),
                                   ("quota", options.quota is not None),
                                   ("scheme", options.scheme != passwords.DEFAULT_HASH_SCHEME)) if on}
    extra = sorted(given - allowed)
    if extra:
        raise UsageError(f"{options.command} {subcommand}: option --{extra[0]} does not apply")


# ---------------------------------------------------------------------------
# The four commands


def _domain(options: Options, directory: Directory) -> None:
    sub = options.args[0]
    _refuse_options(options, sub, {"force"} if sub == "del" else set())
    if sub == "list":
        _arguments(options, 0, 0)
        for name in directory.domains():
            print(name)
    elif sub == "add":
        (name,) = _arguments(options, 1, 1)
        directory.add_domain(name)
    elif sub == "del":
        (name,) = _arguments(options, 1, 1)
        directory.delete_domain(name, force=options.force)


def _user(options: Options, directory: Directory) -> None:
    sub = options.args[0]
    allowed = {"add": {"password", "scheme", "quota"}, "passwd": {"password", "scheme"}}.get(sub, set())
    _refuse_options(options, sub, allowed)
    if sub == "list":
        rest = _arguments(options, 0, 1)
        for user in directory.users(rest[0] if rest else None):
            print(f"{user.email}\t{'-' if user.quota is None else user.quota}")
    elif sub == "add":
        (address,) = _arguments(options, 1, 1)
        # Check the name and domain before asking for a password.
        directory.check_new_user(address)
        directory.add_user(address, make_hash(options, address), options.quota)
    elif sub == "passwd":
        (address,) = _arguments(options, 1, 1)
        if directory.user(address) is None:
            raise DirectoryError(f"user {address} does not exist")
        directory.set_password(address, make_hash(options, address))
    elif sub == "del":
        (address,) = _arguments(options, 1, 1)
        directory.delete_user(address)
    elif sub == "quota":
        address, quota = _arguments(options, 2, 2)
        directory.set_quota(address, parse_quota(quota))


def _alias(options: Options, directory: Directory) -> None:
    sub = options.args[0]
    _refuse_options(options, sub, set())
    if sub == "list":
        rest = _arguments(options, 0, 1)
        for forwarding in directory.forwardings(rest[0] if rest else None):
            print(f"{forwarding.source}\t{forwarding.destination}")
    elif sub == "add":
        rest = _arguments(options, 2, 10_000)
        directory.add_forwarding(rest[0], rest[1:])
    elif sub == "del":
        (source,) = _arguments(options, 1, 1)
        directory.delete_forwarding(source)


def _transport(options: Options, directory: Directory) -> None:
    sub = options.args[0]
    _refuse_options(options, sub, set())
    if sub == "list":
        rest = _arguments(options, 0, 1)
        for entry in directory.transports(rest[0] if rest else None):
            print(f"{entry.domain}\t{entry.transport}")
    elif sub == "add":
        rest = _arguments(options, 2, 10_000)
        # "error:5.1.1 mailbox unavailable" may arrive as several words.
        directory.add_transport(rest[0], " ".join(rest[1:]))
    elif sub == "del":
        rest = _arguments(options, 1, 10_000)
        directory.delete_transport(rest[0], " ".join(rest[1:]) if len(rest) > 1 else None)


Handler = Callable[[Options, Directory], None]

#: Command → (handler, subcommands).
COMMANDS: dict[str, tuple[Handler, frozenset[str]]] = {
    "domain": (_domain, frozenset({"add", "del", "list"})),
    "user": (_user, frozenset({"add", "passwd", "del", "list", "quota"})),
    "alias": (_alias, frozenset({"add", "del", "list"})),
    "transport": (_transport, frozenset({"add", "del", "list"})),
}


def run_command(command: str, argv: list[str]) -> int:
    """Run ``mailhorn COMMAND ARGV``; 0 on success, 1 on any error."""
    program = f"mailhorn-{command}"
    log.setup(program, stderr=True)
    handler, subcommands = COMMANDS[command]
    try:
        options = parse_options(command, argv)
        if not options.args or options.args[0] not in subcommands:
            raise UsageError(f"expected one of: {', '.join(sorted(subcommands))}")
        with open_directory(options) as directory:
            handler(options, directory)
    except UsageError as exc:
        print(f"{program}: fatal: {exc}", file=sys.stderr)
        print(USAGES[command], file=sys.stderr)
        return 1
    except (Failure, DirectoryError, URLError, ConfigError) as exc:
        return _fatal(str(exc))
    except (EOFError, KeyboardInterrupt):
        return _fatal("interrupted")
    return 0


def _fatal(text: str) -> int:
    """Report ``fatal: text`` the way every mailhorn command does; the exit status."""
    try:
        log.fatal(text)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 1


def run_domain(argv: list[str]) -> int:
    """``mailhorn domain ARGV``."""
    return run_command("domain", argv)


def run_user(argv: list[str]) -> int:
    """``mailhorn user ARGV``."""
    return run_command("user", argv)


def run_alias(argv: list[str]) -> int:
    """``mailhorn alias ARGV``."""
    return run_command("alias", argv)


def run_transport(argv: list[str]) -> int:
    """``mailhorn transport ARGV``."""
    return run_command("transport", argv)


def main(argv: list[str]) -> int:
    """``python -m mailhorn.cli.directory COMMAND ARGS``."""
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m mailhorn.cli.directory domain|user|alias|transport ...", file=sys.stderr)
        return 1
    return run_command(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
