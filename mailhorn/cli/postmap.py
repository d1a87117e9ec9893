"""postmap(1): build, query, list and change lookup tables.

``postmap [-bfhinNoprsuUvw] [-c config_dir] [-d key] [-q key] [type:]file...``

Without ``-q``/``-s``/``-d`` each ``type:file`` source (``key whitespace
value`` lines, see :mod:`mailhorn.tables.source`) is built into its index; for
hash: and btree: that is ``file.sqlite`` (not Postfix's ``file.db``). A bare
``file`` has type ``default_database_type``.

Options as Postfix's: ``-q key`` prints the value from the first table that
has it (``-q -`` reads keys from stdin and prints ``key<TAB>value``; with
``-h``/``-b`` it reads a message and looks up its headers/body lines);
``-s`` lists every entry; ``-d key`` deletes; ``-i`` adds entries from stdin;
``-r`` replaces duplicates silently (else the first wins with a warning);
``-w`` drops duplicate warnings; ``-f`` keeps key case; ``-c DIR`` reads
``DIR/main.cf``; ``-N``/``-n``/``-o``/``-p``/``-u``/``-U``/``-v`` are accepted.

Exit status: 0 success or key found, 1 not found (``-q``, ``-d``) or a fatal
error. ``-m`` (MIME header queries) is refused.
"""

from __future__ import annotations

import getopt

from mailhorn import log
from mailhorn.cli.tabletool import ToolOptions, run_tool

USAGE = "usage: postmap [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."
OPTSTRING = "bc:d:fFhimnNopq:rsuUvw"


def parse_args(program: str, argv: list[str], optstring: str, usage: str, aliases: bool) -> ToolOptions:
    """Decode a postmap/postalias command line; bad usage is fatal."""
    log.setup(program, stderr=True)
    opts = ToolOptions(program=program, aliases=aliases)
    try:
        pairs, maps = getopt.gnu_getopt(argv, optstring)
    except getopt.GetoptError:
        log.fatal(usage)
    for flag, value in pairs:
        if flag == "-c":
            opts.config_dir = value
        elif flag == "-d":
            if opts.mode != "build":
                log.fatal("specify only one of -s -q or -d")
            opts.mode, opts.key = "delete", value
        elif flag in ("-q", "-s"):
            if opts.mode != "build":
                log.fatal("specify only one of -s or -q or -d")
            opts.mode = "query" if flag == "-q" else "dump"
            opts.key = value
        elif flag == "-f":
            opts.fold = False
        elif flag == "-i":
            opts.incremental = True
        elif flag == "-r":
            opts.replace = True
        elif flag == "-w":
            opts.warn_duplicates = False
        elif flag == "-o":
            opts.change_owner = False
        elif flag == "-h":
            opts.headers = True
        elif flag == "-b":
            opts.bodies = True
        elif flag == "-m":
            log.fatal("-m (MIME header queries) is not supported")
    if (opts.headers or opts.bodies) and not (opts.mode == "query" and opts.key == "-"):
        log.fatal('specify -b -h or -m only with "-q -"')
    if not maps:
        log.fatal(usage)
    opts.maps = maps
    return opts


def run(argv: list[str]) -> int:
    """Entry point: ``postmap ARGS``."""
    return run_tool(parse_args("postmap", argv, OPTSTRING, USAGE, aliases=False))
