"""postalias(1): build, query, list and change alias tables.

``postalias [-finNoprsuUvw] [-c config_dir] [-d key] [-q key] [type:]file...``

Like postmap(1), but the source is aliases(5) (``name: value, value``, see
:mod:`mailhorn.tables.aliases`): names are unquoted and folded, values stored
in canonical RFC 822 form, and a full build adds Postfix's ``@`` sentinel and
the ``YP_LAST_MODIFIED``/``YP_MASTER_NAME`` entries. Listings (``-s``, ``-q -``)
print ``key:<TAB>value``. hash:/btree: indexes are ``file.sqlite``.

Parameters read: ``default_database_type``, ``myhostname``,
``smtputf8_enable``. Exit status as postmap(1).
"""

from __future__ import annotations

from mailhorn.cli.postmap import parse_args
from mailhorn.cli.tabletool import run_tool

USAGE = "usage: postalias [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."
OPTSTRING = "c:d:finNopq:rsuUvw"


def run(argv: list[str]) -> int:
    """Entry point: ``postalias ARGS``."""
    return run_tool(parse_args("postalias", argv, OPTSTRING, USAGE, aliases=True))
