"""newaliases(1): rebuild every alias table named in ``alias_database``.

``newaliases [-c config_dir] [-v]`` (or ``MAIL_CONFIG``) reads main.cf and
builds each ``alias_database`` entry (default ``hash:/etc/aliases``) as
``postalias`` would, a bare file name having ``default_database_type``.

Exit status: 0 when every table was built; 75 (EX_TEMPFAIL, as Postfix's
sendmail-compatible newaliases) when one could not be.
"""

from __future__ import annotations

import getopt

from mailhorn import log
from mailhorn.cli.tabletool import ToolOptions, build, load_config, setup_streams

USAGE = "usage: newaliases [-c config_dir] [-v]"

#: sysexits.h EX_TEMPFAIL, the status of Postfix's newaliases on failure.
EX_TEMPFAIL = 75


def run(argv: list[str]) -> int:
    """Entry point: ``newaliases ARGS``."""
    log.setup("newaliases", stderr=True)
    opts = ToolOptions(program="newaliases", aliases=True)
    try:
        pairs, rest = getopt.getopt(argv, "c:v")
    except getopt.GetoptError:
        log.error(USAGE)
        return EX_TEMPFAIL
    if rest:
        log.error(USAGE)
        return EX_TEMPFAIL
    for flag, value in pairs:
        if flag == "-c":
            opts.config_dir = value
    setup_streams()
    try:
        config = load_config(opts)
        for spec in config.list("alias_database"):
            build(opts, config, spec)
    except SystemExit as exc:
        return EX_TEMPFAIL if exc.code else 0
    return 0
