"""MariaDB's ENCRYPT() hashes, as seed 003 stores user passwords.

``INSERT INTO users … VALUES ('dexter@d3xt3r01.tk', ENCRYPT('parolamail'), …)``
stores a 13-character DES crypt with a random salt in a ``varchar(20)``;
``ENCRYPT(pw, '$6$salt')`` and friends store the other crypt(3) formats.  The
passdb reads those columns without a ``{SCHEME}`` prefix, so they go through
the default scheme CRYPT.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mailhorn.auth.passwords import hash_password, verify
from tests.conftest import require

pymysql = pytest.importorskip("pymysql")


@pytest.fixture
def db(mysql_server: dict[str, object]) -> Iterator[object]:
    conn = pymysql.connect(host=str(mysql_server["host"]), port=int(str(mysql_server["port"])),
                           user=str(mysql_server["user"]), password=str(mysql_server["password"]),
                           autocommit=True)
    name = f"mailhorn_auth_{os.getpid()}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
        cur.execute(f"USE {name}")
    try:
        yield conn
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def _encrypt(conn: object, password: str, salt: str | None = None) -> str:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        if salt is None:
            cur.execute("SELECT ENCRYPT(%s)", (password,))
        else:
            cur.execute("SELECT ENCRYPT(%s, %s)", (password, salt))
        (value,) = cur.fetchone()
    require(value is not None, "this MariaDB has no ENCRYPT() (built without crypt)")
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


@pytest.mark.mysql
def test_seed_003_users_table_with_encrypt(db: object) -> None:
    with db.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL,"
                    " quota INT(10) DEFAULT '10485760', PRIMARY KEY (email))")
        cur.execute("INSERT INTO users (email, password, quota) VALUES"
                    " ('dexter@d3xt3r01.tk', ENCRYPT('parolamail'), 10485760)")
        cur.execute("SELECT password FROM users WHERE email = %s", ("dexter@d3xt3r01.tk",))
        (stored,) = cur.fetchone()
    stored = stored.decode() if isinstance(stored, bytes) else stored
    assert len(stored) == 13
    assert verify("parolamail", stored) is True
    assert verify("parolamail", stored, default_scheme="DES-CRYPT") is True
    assert verify("parolamail", "{CRYPT}" + stored) is True
    assert verify("Parolamail", stored) is False
    assert verify("parolamail-more", stored) is True  # DES reads 8 characters, as crypt(3) does


@pytest.mark.mysql
@pytest.mark.parametrize("salt", [None, "ab", "$1$abcdefgh", "$5$abcdefghijklmnop", "$6$abcdefghijklmnop",
                                  "$6$rounds=7000$abcdefgh", "$2b$05$abcdefghijklmnopqrstuu",
                                  "$y$j9T$abcdefghijklmnopqrstu."])
def test_encrypt_formats_verify(db: object, salt: str | None) -> None:
    for password in ("parolamail", "pässwörd"):
        stored = _encrypt(db, password, salt)
        assert verify(password, stored) is True, stored
        assert verify("x" + password, stored) is False


@pytest.mark.mysql
def test_mailhorn_crypt_hashes_match_encrypt(db: object) -> None:
    """MariaDB recomputes mailhorn's hashes from their settings byte for byte."""
    for scheme in ("DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"):
        stored = hash_password("parolamail", scheme).split("}", 1)[1]
        assert _encrypt(db, "parolamail", stored) == stored
