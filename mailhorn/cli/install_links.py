"""``mailhorn install-links``: the sendmail, mailq and newaliases commands every MTA provides.

Usage
    ``mailhorn install-links [--prefix DIR] [--target PATH] [--force]``

What it does
    Makes ``PREFIX/usr/sbin/sendmail``, ``PREFIX/usr/bin/mailq`` and
    ``PREFIX/usr/bin/newaliases`` symbolic links to the ``mailhorn``
    console script (``--target``, default: the one installed beside this
    Python, else the first on PATH). ``mailhorn`` looks at the name it was
    run under (argv[0]) and acts as that command, so programs that call
    ``/usr/sbin/sendmail -t`` (cron, mail(1), PHP) submit through mailhorn.
    ``--prefix`` (default ``/``) puts the links under another root, for
    packaging and tests; missing directories under it are created.

    A link that already points at the target is left alone. Anything else
    at those paths (Postfix's own ``sendmail``, another MTA's, a file of
    unknown origin) is refused, naming it, unless ``--force``: then the old
    file is renamed to ``PATH.mailhorn-orig`` (kept once: an existing backup
    is not overwritten, and what replaced it is then dropped) and the link
    put in its place.

Output: one line per path on standard output (``created``, ``already
installed``, ``replaced ... (saved as ...)``). Errors: ``mailhorn-install-links:
fatal: TEXT`` on standard error; the status is 1 when any path was
refused or failed, the others are still done.
"""

from __future__ import annotations

import getopt
import os
import sys

from mailhorn.setup.systemd import mailhorn_script

PROGRAM = "mailhorn-install-links"
USAGE = "usage: mailhorn install-links [--prefix DIR] [--target PATH] [--force]"
#: Paths under the prefix, each linked to the mailhorn script.
LINKS: tuple[str, ...] = ("usr/sbin/sendmail", "usr/bin/mailq", "usr/bin/newaliases")
BACKUP_SUFFIX = ".mailhorn-orig"
#: How much of a file is read to tell what it is.
SNIFF_BYTES = 4 * 1024 * 1024


class Refused(Exception):
    """A path that is not replaced; the text says what is there."""


def describe(path: str) -> str:
    """What is at ``path``, for the refusal message."""
    if os.path.islink(path):
        target = os.readlink(path)
        resolved = os.path.realpath(path)
        if "postfix" in target or "postfix" in resolved:
            return f"a link to Postfix's {os.path.basename(path)} ({target})"
        return f"a link to {target}"
    if os.path.isdir(path):
        return "a directory"
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        return f"a file that cannot be read ({exc.strerror})"
    if b"postfix" in head.lower():
        return f"Postfix's {os.path.basename(path)}"
    if b"sendmail" in head.lower() and b"exim" in head.lower():
        return f"Exim's {os.path.basename(path)}"
    return "a file that is not mailhorn's"


def same_target(path: str, target: str) -> bool:
    """Whether ``path`` is a link that resolves to ``target``."""
    return os.path.islink(path) and os.path.realpath(path) == os.path.realpath(target)


def install(path: str, target: str, force: bool) -> str:
    """Make one link; the line that reports it."""
    if same_target(path, target):
        return f"{path}: already installed"
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    saved = None
    kept = None
    if os.path.lexists(path):
        what = describe(path)
        if not force or os.path.isdir(path) and not os.path.islink(path):
            raise Refused(f"{path}: refusing to replace {what} (use --force to replace it; "
                          f"the original is kept as {path}{BACKUP_SUFFIX})")
        backup = path + BACKUP_SUFFIX
        if not os.path.lexists(backup):
            os.rename(path, backup)
            saved = backup
        else:
            kept = backup
    tmp = f"{path}.mailhorn-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
    if saved is not None:
        return f"{path}: replaced (the original is saved as {saved})"
    if kept is not None:
        return f"{path}: replaced (an earlier original stays in {kept})"
    return f"{path}: created, -> {target}"


def run(argv: list[str]) -> int:
    """``mailhorn install-links ARGV``."""
    try:
        opts, args = getopt.gnu_getopt(argv, "", ["prefix=", "target=", "force"])
    except getopt.GetoptError as exc:
        print(f"{PROGRAM}: fatal: {exc}\n{USAGE}", file=sys.stderr)
        return 1
    if args:
        print(f"{PROGRAM}: fatal: unexpected argument {args[0]!r}\n{USAGE}", file=sys.stderr)
        return 1
    prefix, target, force = "/", None, False
    for opt, value in opts:
        if opt == "--prefix":
            prefix = value
        elif opt == "--target":
            target = value
        elif opt == "--force":
            force = True
    target = target or mailhorn_script()
    if target is None:
        print(f"{PROGRAM}: fatal: no mailhorn command found beside {sys.executable} or on PATH; "
              "name it with --target", file=sys.stderr)
        return 1
    target = os.path.abspath(target)
    if not os.access(target, os.X_OK):
        print(f"{PROGRAM}: fatal: {target}: not an executable file", file=sys.stderr)
        return 1
    status = 0
    for relative in LINKS:
        path = os.path.join(os.path.abspath(prefix), relative)
        try:
            print(install(path, target, force), flush=True)
        except Refused as exc:
            print(f"{PROGRAM}: fatal: {exc}", file=sys.stderr)
            status = 1
        except OSError as exc:
            print(f"{PROGRAM}: fatal: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
