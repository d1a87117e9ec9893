"""What the master loads before it forks: SQL table clients only when main.cf names them.

pymysql pulls in ``cryptography`` (several MB of native code) and psycopg its
own libcrypto; a mail system without SQL tables should not carry them in
every process, and one with them must have them loaded before the workers
give up root.
"""

from __future__ import annotations

from pathlib import Path

from mailhorn.tables.registry import table_modules
from tests.helpers.ports import reserve_port
from tests.master.util import Instance, wait_for

SQL_MODULES = {"mailhorn.tables.mysql", "mailhorn.tables.pgsql", "mailhorn.tables.sqlite"}


def test_table_modules_names_sql_clients_only_when_used() -> None:
    light = set(table_modules(["hash:/etc/aliases", "cidr:/etc/postfix/clients /etc/postfix/mysql:x"]))
    assert "mailhorn.tables.indexed" in light and "mailhorn.tables.cidr" in light
    assert not light & SQL_MODULES
    used = set(table_modules(["proxy:mysql:/etc/postfix/mysql-virtual.cf", "$virtual_alias_maps",
                              "check_recipient_access pgsql:/etc/postfix/pg.cf"]))
    assert {"mailhorn.tables.mysql", "mailhorn.tables.pgsql"} <= used
    assert "mailhorn.tables.sqlite" not in used


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_master_without_sql_tables_does_not_load_their_clients() -> None:
    port = reserve_port()
    mh = Instance(master_cf=f"127.0.0.1:{port} inet n - n - - smtpd\n")
    try:
        assert mh.ctl("start").returncode == 0
        workers = mh.started_workers()
        master = mh.master_pid()
        assert master is not None
        for pid in (master, *workers.values()):
            assert "cryptography" not in _maps(pid) and "psycopg" not in _maps(pid)
        assert mh.ctl("stop").returncode == 0
        mh.write_main(f"virtual_alias_maps = mysql:{mh.etc}/mysql-aliases.cf\n")
        (mh.etc / "mysql-aliases.cf").write_text("hosts = 127.0.0.1\nuser = x\npassword = y\ndbname = z\n"
                                                  "query = SELECT goto FROM alias WHERE address='%s'\n")
        assert wait_for(lambda: mh.master_pid() is None)
        assert mh.ctl("start").returncode == 0
        mh.started_workers()
        master = mh.master_pid()
        assert master is not None and "cryptography" in _maps(master)
        assert mh.ctl("stop").returncode == 0
    finally:
        mh.remove()


def test_spawner_loads_session_code_only_for_running_protocols() -> None:
    from mailhorn.master.spawner import preload_modules

    bare = preload_modules([], ["hash:/etc/aliases"])
    assert not any(m.startswith(("mailhorn.imap", "mailhorn.pop3")) for m in bare)
    assert "mailhorn.delivery.privs" in bare and "mailhorn.tables.mysql" not in bare
    imap = preload_modules(["imap"], ["mysql:/etc/postfix/users.cf"])
    assert "mailhorn.imap.server" in imap and "mailhorn.imap.fetch" in imap
    assert not any(m.startswith("mailhorn.pop3") for m in imap) and "mailhorn.tables.mysql" in imap
    assert "mailhorn.pop3.session" in preload_modules(["imap", "pop3"], [])
