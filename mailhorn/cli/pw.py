"""``mailhorn pw``: make and test password hashes, like ``doveadm pw``.

Usage
    ``mailhorn pw -l``
    ``mailhorn pw [-p password] [-r rounds] [-s scheme] [-u user] [-V]``
    ``mailhorn pw -t hash [-p password] [-u user]``

Options (doveadm-pw(1))
    ``-l``  list the password schemes on one line, space-separated.
    ``-p``  the password; without it the password is asked for twice on the
            terminal ("Enter new password:", "Retype new password:"), or
            once for ``-t``; a mismatch is reported and asked again.  When
            standard input is not a terminal, one line is read from it.
    ``-r``  rounds (cost) for schemes that have one.
    ``-s``  scheme, optionally with ``.HEX``/``.B64`` suffix; the default is
            ``ARGON2ID`` (Dovecot 2.3's is ``CRYPT``, bcrypt).
    ``-t``  test a ``{SCHEME}hash`` against the password: prints
            ``HASH (verified)`` and exits 0, or an error and exits 75.
    ``-u``  the user name, for DIGEST-MD5.
    ``-V``  verify the new hash internally and say so after it.

Output and exit status follow doveadm: errors are written as ``Fatal: …``
(or ``Error: …``) on standard error; usage errors exit 64 (EX_USAGE), other
failures 75 (EX_TEMPFAIL).  The password itself is never printed.
"""

from __future__ import annotations

import getopt
import getpass
import sys

from mailhorn.auth import passwords
from mailhorn.auth.crypt import CryptUnavailableError

EX_USAGE = 64
EX_TEMPFAIL = 75

USAGE = "usage: mailhorn pw [-l] [-p password] [-r rounds] [-s scheme] [-t hash] [-u user] [-V]"


class _Fatal(Exception):
    """A failure reported as ``Fatal: TEXT`` with exit status 75."""


def _read_password(confirm: bool) -> str:
    """Ask on the terminal (twice when ``confirm``), or read one stdin line."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\n").rstrip("\r")
    if not confirm:
        return getpass.getpass("Enter password to verify: ")
    while True:
        first = getpass.getpass("Enter new password: ")
        second = getpass.getpass("Retype new password: ")
        if first == second:
            return first
        # doveadm says so and asks again; end of input (EOFError) stops it.
        print("Error: Passwords don't match!", file=sys.stderr, flush=True)


def _test(hashed: str, password: str, user: str | None) -> None:
    """``-t``: verify ``hashed`` and print it with ``(verified)``."""
    name, data = passwords.split_scheme(hashed, "")
    if not name:
        raise _Fatal("Missing {scheme} prefix from hash")
    stored = "{" + name + "}" + data
    try:
        ok = passwords.verify(password, stored, user=user)
    except (passwords.UnknownSchemeError, passwords.DecodeError) as exc:
        raise _Fatal(f"reverse decode check failed: {exc}") from exc
    except passwords.PasswordError as exc:
        raise _Fatal(f"reverse password verification check failed: {exc}") from exc
    if not ok:
        raise _Fatal("reverse password verification check failed: Password mismatch")
    print(f"{stored} (verified)")


def _generate(password: str, scheme: str, rounds: int | None, user: str | None, check: bool) -> None:
    """Print a new hash, with ``(verified)`` after it for ``-V``."""
    try:
        passwords.lookup_scheme(scheme)
    except passwords.UnknownSchemeError as exc:
        raise _Fatal(f"Unknown scheme: {scheme}") from exc
    try:
        hashed = passwords.hash_password(password, scheme, rounds=rounds, user=user)
    except passwords.PasswordError as exc:
        raise _Fatal(str(exc)) from exc
    if not check:
        print(hashed)
        return
    try:
        ok = passwords.verify(password, hashed, user=user)
    except passwords.PasswordError as exc:
        raise _Fatal(f"reverse password verification check failed: {exc}") from exc
    if not ok:
        raise _Fatal("reverse password verification check failed: Password mismatch")
    print(f"{hashed} (verified)")


def run(argv: list[str]) -> int:
    """Entry point: ``argv`` without the program name."""
    try:
        opts, args = getopt.getopt(argv, "lp:r:s:t:u:V")
    except getopt.GetoptError as exc:
        if exc.opt and "requires argument" in exc.msg:
            print(f"pw: option requires an argument -- '{exc.opt}'", file=sys.stderr)
        else:
            print(f"pw: invalid option -- '{exc.opt}'", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return EX_USAGE
    if args:
        print(f"Error: Extraneous arguments found: {' '.join(args)}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return EX_USAGE

    password: str | None = None
    scheme = passwords.DEFAULT_HASH_SCHEME
    rounds: int | None = None
    test_hash: str | None = None
    user: str | None = None
    check = False
    for opt, value in opts:
        if opt == "-l":
            # doveadm ends the list with a space before the newline.
            print("".join(name + " " for name in passwords.schemes()))
            return 0
        if opt == "-p":
            password = value
        elif opt == "-r":
            if not value.isdigit():
                print(f"Fatal: Invalid number of rounds: {value}", file=sys.stderr)
                return EX_USAGE
            rounds = int(value)
        elif opt == "-s":
            scheme = value
        elif opt == "-t":
            test_hash = value
        elif opt == "-u":
            user = value
        elif opt == "-V":
            check = True

    try:
        if password is None:
            password = _read_password(confirm=test_hash is None)
        if test_hash is not None:
            _test(test_hash, password, user)
        else:
            _generate(password, scheme, rounds, user, check)
    except (_Fatal, CryptUnavailableError) as exc:
        print(f"Fatal: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        return EX_TEMPFAIL
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
