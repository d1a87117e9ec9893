"""Changes take effect at the next lookup: the lookup tables read committed rows.

The ``*.cf`` files are the guide's (seed 003), pointed at the test database;
for PostgreSQL and SQLite the Maildir expression is written with their string
functions. One opened table object serves every lookup of a test, as in a
running server, so nothing is reopened or reloaded between the changes.

The second half shows that without ``directory_database`` the commands use
the database of the ``*.cf`` file named by ``virtual_mailbox_domains``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.registry import open_table
from tests.directory.conftest import Backend
from tests.directory.util import Admin

#: The guide's queries; the Maildir expression per engine.
QUERIES = {
    "domains": "SELECT domain AS virtual FROM domains WHERE domain='%s'",
    "forwardings": "SELECT destination FROM forwardings WHERE source='%s'",
    "email2email": "SELECT email FROM users WHERE email='%s'",
    "transports": "SELECT transport FROM transport WHERE domain='%s'",
    "mailbox_limit_maps": "SELECT quota FROM users WHERE email='%s'",
}
MAILBOXES = {
    "mysql": ("SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') "
              "FROM users WHERE email='%s'"),
    "pgsql": "SELECT split_part(email,'@',2) || '/' || split_part(email,'@',1) || '/' FROM users WHERE email='%s'",
    "sqlite": ("SELECT substr(email, instr(email,'@')+1) || '/' || substr(email, 1, instr(email,'@')-1) || '/' "
               "FROM users WHERE email='%s'"),
}


def write_cf(backend: Backend, directory: Path, name: str) -> Path:
    """``{engine}-virtual_{name}.cf`` as the guide writes it, for the test database."""
    query = MAILBOXES[backend.engine] if name == "mailboxes" else QUERIES[name]
    if backend.engine == "sqlite":
        text = f"dbpath = {backend.target}\nquery = {query}\n"
    else:
        user = "root" if backend.engine == "mysql" else "postgres"
        port = 3306 if backend.engine == "mysql" else 5432
        text = f"user = {user}\npassword =\ndbname = {backend.target}\nquery = {query}\nhosts = 127.0.0.1:{port}\n"
    path = directory / f"{backend.engine}-virtual_{name}.cf"
    path.write_text(text)
    return path


@pytest.fixture
def maps(backend: Backend, confdir: Path) -> dict[str, str]:
    """name → ``proxy:ENGINE:/path/ENGINE-virtual_NAME.cf``."""
    return {name: f"proxy:{backend.engine}:{write_cf(backend, confdir, name)}"
            for name in [*QUERIES, "mailboxes"]}


def test_changes_seen_at_next_lookup(backend: Backend, confdir: Path, maps: dict[str, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (confdir / "main.cf").write_text(f"directory_database = {backend.url}\n")
    admin = Admin(confdir, capsys)
    admin.ok("domain", "add", "example.com")   # creates the tables the maps query
    config = Config(config_dir=str(confdir))
    mailboxes = open_table(maps["mailboxes"], config)
    forwardings = open_table(maps["forwardings"], config)
    transports = open_table(maps["transports"], config)
    limits = open_table(maps["mailbox_limit_maps"], config)
    domains = open_table(maps["domains"], config)

    assert domains.lookup("example.com") == "example.com"
    assert mailboxes.lookup("alice@example.com") is None
    admin.ok("user", "add", "alice@example.com", "--password", "x", "--quota", "20971520")
    assert mailboxes.lookup("alice@example.com") == "example.com/alice/"
    assert mailboxes.lookup("ALICE@Example.COM") == "example.com/alice/"   # keys are folded
    assert limits.lookup("alice@example.com") == "20971520"
    admin.ok("user", "quota", "alice@example.com", "1048576")
    assert limits.lookup("alice@example.com") == "1048576"

    assert forwardings.lookup("info@example.com") is None
    admin.ok("alias", "add", "info@example.com", "alice@example.com,billing@anotherdomain.tld")
    admin.ok("alias", "add", "@example.com", "alice@example.com")
    assert forwardings.lookup("info@example.com") == "alice@example.com,billing@anotherdomain.tld"
    assert forwardings.lookup("@example.com") == "alice@example.com"

    assert transports.lookup("example.com") is None
    admin.ok("transport", "add", "example.com", "smtp:[mail.example.com]:2025")
    assert transports.lookup("example.com") == "smtp:[mail.example.com]:2025"

    admin.ok("user", "del", "alice@example.com")
    admin.ok("alias", "del", "info@example.com")
    admin.ok("transport", "del", "example.com")
    assert mailboxes.lookup("alice@example.com") is None
    assert limits.lookup("alice@example.com") is None
    assert forwardings.lookup("info@example.com") is None
    assert forwardings.lookup("@example.com") == "alice@example.com"
    assert transports.lookup("example.com") is None
    admin.ok("domain", "del", "--force", "example.com")
    assert domains.lookup("example.com") is None
    assert forwardings.lookup("@example.com") is None


def test_database_from_virtual_mailbox_domains(backend: Backend, confdir: Path, maps: dict[str, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """No directory_database: the guide's main.cf alone says where the directory is."""
    (confdir / "main.cf").write_text(
        f"virtual_mailbox_domains = {maps['domains']}\n"
        f"virtual_mailbox_maps = {maps['mailboxes']}\n"
        f"virtual_alias_maps = {maps['forwardings']}, {maps['email2email'].removeprefix('proxy:')}\n"
    )
    admin = Admin(confdir, capsys)
    admin.ok("domain", "add", "d3xt3r01.tk")
    admin.ok("user", "add", "dexter@d3xt3r01.tk", "--password", "parolamail", "--quota", "10485760")
    admin.ok("alias", "add", "proba@d3xt3r01.tk", "dexter@d3xt3r01.tk")
    config = Config(config_dir=str(confdir))
    assert open_table(maps["domains"], config).lookup("d3xt3r01.tk") == "d3xt3r01.tk"
    assert open_table(maps["mailboxes"], config).lookup("dexter@d3xt3r01.tk") == "d3xt3r01.tk/dexter/"
    assert open_table(maps["email2email"], config).lookup("dexter@d3xt3r01.tk") == "dexter@d3xt3r01.tk"
    assert open_table(maps["forwardings"], config).lookup("proba@d3xt3r01.tk") == "dexter@d3xt3r01.tk"
    # The administrator's own view agrees.
    assert backend.sql("SELECT email FROM users") == [("dexter@d3xt3r01.tk",)]
