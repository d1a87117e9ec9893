"""mailq(1): list the mail queue, as ``postqueue -p``.

``mailq [-v] [-c config_dir]`` (also ``-C config_dir``, the sendmail(1)
spelling) prints the sendmail-style listing of
:func:`mailhorn.cli.postqueue.show_queue`; see postqueue(1) for the format.

Parameters read: as ``postqueue -p``.

Exit status: 0; 69 for bad usage or an unreadable configuration.
"""

from __future__ import annotations

import sys

from mailhorn.cli import postqueue


def run(argv: list[str]) -> int:
    """Entry point: ``mailq [-v] [-c|-C config_dir]``."""
    args: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("-c", "-C") and rest:
            args += ["-c", rest.pop(0)]
        elif arg.startswith("-C") and len(arg) > 2:
            args += ["-c", arg[2:]]
        elif arg == "-v":
            args.append(arg)
        else:
            print(f"mailq: invalid argument: {arg}", file=sys.stderr)
            return postqueue.EX_UNAVAILABLE
    return postqueue.run([*args, "-p"])
