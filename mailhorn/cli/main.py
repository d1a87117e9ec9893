"""``mailhorn [-c DIR] COMMAND [ARGS]`` and argv[0] dispatch.

The Postfix tools run as subcommands (``mailhorn postmap -q key hash:file``), as
prefixed console scripts (``mailhorn-postmap``), or under their own names
through links made by ``mailhorn install-links`` (``/usr/sbin/sendmail``). A
``-c DIR`` before the command sets ``MAIL_CONFIG``, which every tool honours as
Postfix's do.

Each command module exposes ``run(argv) -> int``; ``argv`` excludes the
program name.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

#: Every command, mapped to ``module[:function]`` implementing it (``run`` by default).
COMMANDS: dict[str, str] = {
    "postconf": "mailhorn.cli.postconf",
    "postmap": "mailhorn.cli.postmap",
    "postalias": "mailhorn.cli.postalias",
    "newaliases": "mailhorn.cli.newaliases",
    "maildirmake": "mailhorn.cli.maildirmake",
    "pw": "mailhorn.cli.pw",
    "postcat": "mailhorn.cli.postcat",
    "sendmail": "mailhorn.cli.sendmail",
    "mailq": "mailhorn.cli.mailq",
    "postqueue": "mailhorn.cli.postqueue",
    "postsuper": "mailhorn.cli.postsuper",
    "qshape": "mailhorn.cli.qshape",
    "domain": "mailhorn.cli.directory:run_domain",
    "user": "mailhorn.cli.directory:run_user",
    "alias": "mailhorn.cli.directory:run_alias",
    "transport": "mailhorn.cli.directory:run_transport",
    "start": "mailhorn.cli.control:run_start",
    "start-fg": "mailhorn.cli.control:run_start_fg",
    "stop": "mailhorn.cli.control:run_stop",
    "abort": "mailhorn.cli.control:run_abort",
    "reload": "mailhorn.cli.control:run_reload",
    "status": "mailhorn.cli.control:run_status",
    "check": "mailhorn.cli.control:run_check",
    "flush": "mailhorn.cli.control:run_flush",
    "quickstart": "mailhorn.cli.quickstart",
    "install-links": "mailhorn.cli.install_links",
}

USAGE = "usage: mailhorn [-c config_dir] command [args...]\ncommands: " + " ".join(sorted(COMMANDS))


def run_command(command: str, argv: list[str]) -> int:
    """Run one command by name with its arguments."""
    module_name, _, func = COMMANDS[command].partition(":")
    module = importlib.import_module(module_name)
    runner: Callable[[list[str]], int] = getattr(module, func or "run")
    try:
        return runner(argv)
    except BrokenPipeError:
        # A reader such as `head` went away; Postfix's tools exit quietly too.
        sys.stderr.close()
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mailhorn``; dispatches on argv[0] first."""
    args = list(sys.argv if argv is None else argv)
    prog = os.path.basename(args[0]) if args else "mailhorn"
    if prog.startswith("mailhorn-"):
        prog = prog[len("mailhorn-") :]
    if prog in COMMANDS:
        return run_command(prog, args[1:])
    rest = args[1:]
    while rest and rest[0] == "-c":
        if len(rest) < 2:
            print(USAGE, file=sys.stderr)
            return 1
        os.environ["MAIL_CONFIG"] = rest[1]
        rest = rest[2:]
    if not rest or rest[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 1
    return run_command(rest[0], rest[1:])


def _entry(command: str) -> Callable[[], int]:
    def entry() -> int:
        return run_command(command, sys.argv[1:])

    entry.__name__ = f"{command}_main"
    return entry


postconf_main = _entry("postconf")
postmap_main = _entry("postmap")
postalias_main = _entry("postalias")
newaliases_main = _entry("newaliases")
maildirmake_main = _entry("maildirmake")
postcat_main = _entry("postcat")
pw_main = _entry("pw")
sendmail_main = _entry("sendmail")
mailq_main = _entry("mailq")
postqueue_main = _entry("postqueue")
postsuper_main = _entry("postsuper")
qshape_main = _entry("qshape")

if __name__ == "__main__":
    sys.exit(main())
