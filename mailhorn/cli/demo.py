"""``python -m mailhorn.cli.demo`` (``make run``): a complete mail server to try, in the foreground.

What it does
    Creates, on the first run, an instance directory (default
    ``./.mailhorn-demo``, or ``$MAILHORN_DEMO_DIR``)::

        etc/            main.cf, master.cf, sqlite-virtual_*.cf, directory.sqlite, tls/
        queue/          the mail queue
        mail/           the Maildirs (mail/example.test/demo/)
        demo-password   the user's password (mode 0600)

    with the domain ``example.test`` and the user ``demo@example.test``
    (a generated password, stored hashed in the directory). Each run
    rewrites main.cf and master.cf, picks the ports, and runs the master in
    the foreground on 127.0.0.1: SMTP, submission (STARTTLS and login), POP3
    and IMAP (STARTTLS offered), with a self-signed certificate. Mail for
    ``example.test`` is delivered into the Maildirs; mail for other domains
    is refused (nothing leaves the machine). Once the listeners are bound
    it prints the ports, the user, the password, a ``swaks`` line that
    sends a message and ``curl`` lines that read it; the log follows on
    standard error. Ctrl-C (SIGINT) stops the master and its workers. A
    second run reuses the instance, the mail and the password.

Ports
    2525 (SMTP), 2587 (submission), 2110 (POP3), 2143 (IMAP); a port that is
    taken is replaced by a free one. ``MAILHORN_DEMO_PORTS`` sets them:
    ``smtp=N,submission=N,pop3=N,imap=N`` (any subset; ``0`` means any free
    port).

Privileges
    Run as an ordinary user, everything runs as that user. Run as root, the
    master's workers run as ``mail_owner`` (``postfix`` when that user
    exists, else ``nobody``), which owns the mailboxes and must be able to
    reach the instance directory; when a parent directory is closed to it
    (a checkout under /root), the instance goes to
    ``/var/tmp/mailhorn-demo-HASH`` instead, HASH naming the checkout, and
    the banner says so.

Exit status: 0 after Ctrl-C, 1 when the master cannot start (its ``fatal:``
line says why).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import socket
import stat
import sys

from mailhorn.directory.url import DatabaseURL
from mailhorn.master.supervisor import run_master
from mailhorn.setup import instance, templates, tls

DOMAIN = "example.test"
USER = f"demo@{DOMAIN}"
HOSTNAME = f"mail.{DOMAIN}"
DIR_ENV = "MAILHORN_DEMO_DIR"
PORTS_ENV = "MAILHORN_DEMO_PORTS"
DEFAULT_DIR = ".mailhorn-demo"
PASSWORD_FILE = "demo-password"
#: Service → default port, in the order the banner lists them.
DEFAULT_PORTS: dict[str, int] = {"smtp": 2525, "submission": 2587, "pop3": 2110, "imap": 2143}
ROOT_OWNERS = ("postfix", "nobody")
HEADER = "Written by the mailhorn demo; rewritten at each start."


class DemoError(Exception):
    """The demo cannot start; the text says why."""


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def any_free_port() -> int:
    """A port the kernel picks as free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_ports(text: str) -> dict[str, int]:
    """``smtp=N,submission=N,...`` → service → port."""
    wanted: dict[str, int] = {}
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq or name not in DEFAULT_PORTS or not value.isdigit() or int(value) > 65535:
            raise DemoError(f"{PORTS_ENV}: bad item {item!r}: expected SERVICE=PORT with SERVICE one of "
                            + ", ".join(DEFAULT_PORTS))
        wanted[name] = int(value)
    return wanted


def choose_ports(environ: dict[str, str]) -> dict[str, int]:
    """The port of each service: asked for, else the default; a taken one becomes a free one."""
    wanted = dict(DEFAULT_PORTS)
    wanted.update(parse_ports(environ.get(PORTS_ENV, "")))
    chosen: dict[str, int] = {}
    for service, port in wanted.items():
        if port == 0 or port in chosen.values() or not port_free(port):
            port = any_free_port()
            while port in chosen.values():
                port = any_free_port()
        chosen[service] = port
    return chosen


def can_reach(path: str, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` may traverse every directory down to ``path``."""
    current = os.path.abspath(path)
    parents = []
    while True:
        parents.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in parents:
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            continue
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def services_owner() -> instance.Owner:
    """Who runs the services: ourselves, or under root ``postfix``/``nobody``."""
    if os.geteuid() != 0:
        return instance.current_owner("")
    for name in ROOT_OWNERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return instance.current_owner(name)
    raise DemoError("running as root, but neither of the users " + " and ".join(ROOT_OWNERS)
                    + " exists to run the services as; run the demo as an ordinary user")


def instance_dir(environ: dict[str, str], owner: instance.Owner) -> tuple[str, str | None]:
    """The instance directory, and why it is not the usual one (or None)."""
    if environ.get(DIR_ENV):
        return os.path.abspath(environ[DIR_ENV]), None
    wanted = os.path.abspath(DEFAULT_DIR)
    if not owner.separate or can_reach(wanted, owner.uid, owner.gid):
        return wanted, None
    digest = hashlib.sha256(os.path.dirname(wanted).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    fallback = os.path.join("/var/tmp", f"mailhorn-demo-{digest}")
    return fallback, f"{wanted} cannot be reached by the user {owner.name}, who runs the services"


def read_password(path: str) -> str | None:
    """The stored password, or None when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return text or None


def prepare(base: str, owner: instance.Owner, ports: dict[str, int]) -> tuple[templates.Layout, str]:
    """Create or refresh the instance under ``base``; the layout and the user's password."""
    os.makedirs(base, mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    etc = os.path.join(base, "etc")
    tls_dir = os.path.join(etc, "tls")
    os.makedirs(tls_dir, mode=0o755, exist_ok=True)
    url = DatabaseURL("sqlite", path=os.path.join(etc, "directory.sqlite"))
    layout = templates.Layout(
        config_dir=etc, queue_directory=os.path.join(base, "queue"), mailbox_base=os.path.join(base, "mail"),
        hostname=HOSTNAME, domain=DOMAIN, cert_file=os.path.join(tls_dir, "cert.pem"),
        key_file=os.path.join(tls_dir, "key.pem"), database=url, uid=owner.uid, gid=owner.gid,
        mail_owner=owner.name if owner.separate else None, demo=True, ports=ports,
    )
    instance.make_directories(layout, owner)
    group = owner.gid if owner.separate else None
    try:
        tls.check_pair(layout.cert_file, layout.key_file)
    except tls.TlsSetupError:
        tls.make_self_signed(HOSTNAME, layout.cert_file, layout.key_file, group, ("localhost", "127.0.0.1"))
    password_path = os.path.join(base, PASSWORD_FILE)
    password = read_password(password_path)
    reset = password is None
    if password is None:
        password = instance.generate_password()
    instance.populate_directory(url, DOMAIN, USER, password, reset_password=reset)
    if reset:
        instance.write_file(password_path, password + "\n", 0o600)
    instance.share_sqlite(url, owner)
    instance.write_configuration(layout, owner, HEADER)
    return layout, password


def banner(layout: templates.Layout, password: str, base: str, note: str | None) -> str:
    """What the user reads once the demo listens."""
    p = layout.ports
    lines = [
        "",
        f"mailhorn demo is running; instance {base}",
    ]
    if note:
        lines.append(f"  (not in the checkout: {note})")
    lines += [
        "",
        f"  SMTP        127.0.0.1:{p['smtp']}",
        f"  submission  127.0.0.1:{p['submission']}   (STARTTLS, then login)",
        f"  POP3        127.0.0.1:{p['pop3']}   (STARTTLS offered)",
        f"  IMAP        127.0.0.1:{p['imap']}   (STARTTLS offered)",
        "",
        f"  user        {USER}",
        f"  password    {password}",
        "",
        "Send a message:",
        f"  swaks --server 127.0.0.1:{p['smtp']} --from someone@example.org --to {USER}",
        "Send one as the user, through submission:",
        f"  swaks --server 127.0.0.1:{p['submission']} --tls --auth PLAIN --auth-user {USER} "
        f"--auth-password {password} --from {USER} --to {USER}",
        "Read it with IMAP, or with POP3:",
        f"  curl -k --ssl-reqd -u {USER}:{password} 'imap://127.0.0.1:{p['imap']}/INBOX;UID=1'",
        f"  curl -k --ssl-reqd -u {USER}:{password} 'pop3://127.0.0.1:{p['pop3']}/1'",
        "",
        f"Mail is in {layout.mailbox_base}/{DOMAIN}/demo/. The log follows; Ctrl-C stops the demo.",
        "",
    ]
    return "".join(line + "\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare the instance and run the master until Ctrl-C."""
    environ = dict(os.environ)
    try:
        owner = services_owner()
        base, note = instance_dir(environ, owner)
        ports = choose_ports(environ)
        layout, password = prepare(base, owner, ports)
    except DemoError as exc:
        print(f"mailhorn-demo: fatal: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mailhorn-demo: fatal: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    failed: list[str] = []

    def ready(error: str | None) -> None:
        if error is not None:
            failed.append(error)
            print(f"mailhorn-demo: fatal: {error}", file=sys.stderr, flush=True)
            return
        sys.stdout.write(banner(layout, password, base, note))
        sys.stdout.flush()

    try:
        status = run_master(layout.config_dir, True, ready)
    except KeyboardInterrupt:
        return 130
    if not failed:
        print("mailhorn demo stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
