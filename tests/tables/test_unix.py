"""unix:passwd.byname and unix:group.byname."""

from __future__ import annotations

import grp
import pwd

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError
from mailhorn.tables.registry import open_table


def test_passwd_line() -> None:
    pw = pwd.getpwuid(0)
    table = open_table("unix:passwd.byname", Config())
    want = f"{pw.pw_name}:{pw.pw_passwd}:0:{pw.pw_gid}:{pw.pw_gecos}:{pw.pw_dir}:{pw.pw_shell}"
    assert table.lookup(pw.pw_name.upper()) == want
    assert open_table("unix:passwd.byname", Config(), OpenOptions(fold_case=False)).lookup(pw.pw_name.upper()) is None
    assert table.lookup("no-such-user-here") is None


def test_group_line() -> None:
    gr = grp.getgrgid(0)
    assert open_table("unix:group.byname", Config()).lookup(gr.gr_name) == f"{gr.gr_name}:{gr.gr_passwd}:0:{','.join(gr.gr_mem)}"


def test_unknown_map() -> None:
    with pytest.raises(TableConfigError, match="unknown table: unix:foo"):
        open_table("unix:foo", Config())
