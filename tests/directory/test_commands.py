"""Every directory command and every refusal, on SQLite, MariaDB and PostgreSQL.

The database is named by ``directory_database`` in main.cf; the tables are
created by the first command. Results are read back through the commands'
own listings and, for passwords, through ``mailhorn.auth.passwords.verify``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailhorn.auth import passwords
from tests.directory.conftest import Backend
from tests.directory.util import Admin


@pytest.fixture
def admin(backend: Backend, confdir: Path, capsys: pytest.CaptureFixture[str]) -> Admin:
    (confdir / "main.cf").write_text(f"directory_database = {backend.url}\n")
    return Admin(confdir, capsys)


def stored_password(backend: Backend, email: str) -> str:
    rows = backend.sql(f"SELECT password FROM users WHERE email = '{email}'")
    assert len(rows) == 1
    return str(rows[0][0])


def test_domains(admin: Admin, backend: Backend) -> None:
    assert admin.ok("domain", "list") == ""
    admin.ok("domain", "add", "example.com")
    admin.ok("domain", "add", "Example.ORG")
    admin.ok("domain", "add", "bücher.example")
    assert admin.ok("domain", "list") == "example.com\nexample.org\nxn--bcher-kva.example\n"
    assert admin.fails("domain", "add", "EXAMPLE.com") == "domain example.com already exists"
    assert admin.fails("domain", "add", "xn--bcher-kva.example") == "domain xn--bcher-kva.example already exists"
    admin.ok("domain", "del", "example.org")
    assert admin.fails("domain", "del", "example.org") == "domain example.org does not exist"
    assert admin.ok("domain", "list") == "example.com\nxn--bcher-kva.example\n"
    # The rows are what the guide's domains map reads.
    assert sorted(str(r[0]) for r in backend.sql("SELECT domain FROM domains")) == ["example.com",
                                                                               "xn--bcher-kva.example"]


@pytest.mark.parametrize("bad", ["", "exa mple.com", "-example.com", "example-.com", "exa_mple.com",
                                 "example..com", "example.com.", "1.2.3.4", "[1.2.3.4]", "a" * 64 + ".com",
                                 "tab\t.com", "ctl\x01.com", "xn--zz.example"])
def test_domain_malformed(admin: Admin, bad: str) -> None:
    assert admin.fails("domain", "add", "--", bad).startswith(f"invalid domain name {bad!r}")


def test_users(admin: Admin, backend: Backend) -> None:
    admin.ok("domain", "add", "example.com")
    admin.ok("domain", "add", "example.net")
    admin.ok("user", "add", "Alice@Example.com", "--password", "s3cret", "--quota", "20971520")
    admin.ok("user", "--password=pw-bob", "add", "bob@example.com")
    admin.ok("user", "add", "carol@example.net", "--password", "pw-carol", "--scheme", "SHA512-CRYPT",
             "--quota", "0")
    assert admin.ok("user", "list") == ("alice@example.com\t20971520\nbob@example.com\t10485760\n"
                                        "carol@example.net\t0\n")
    assert admin.ok("user", "list", "example.net") == "carol@example.net\t0\n"
    assert admin.ok("user", "list", "EXAMPLE.NET") == "carol@example.net\t0\n"
    assert admin.ok("user", "list", "example.org") == ""

    alice = stored_password(backend, "alice@example.com")
    assert alice.startswith("{ARGON2ID}$argon2id$")
    assert passwords.verify("s3cret", alice)
    assert not passwords.verify("wrong", alice)
    carol = stored_password(backend, "carol@example.net")
    assert carol.startswith("{SHA512-CRYPT}$6$")
    assert passwords.verify("pw-carol", carol)

    admin.ok("user", "passwd", "alice@example.com", "--password", "n3w", "--scheme", "BLF-CRYPT")
    alice = stored_password(backend, "alice@example.com")
    assert alice.startswith("{BLF-CRYPT}$2y$") and passwords.verify("n3w", alice)
    assert not passwords.verify("s3cret", alice)

    admin.ok("user", "quota", "alice@example.com", "5368709120")  # 5 GiB: beyond a 32-bit INT
    admin.ok("user", "del", "bob@example.com")
    assert admin.ok("user", "list") == "alice@example.com\t5368709120\ncarol@example.net\t0\n"


def test_user_errors(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    admin.ok("user", "add", "alice@example.com", "--password", "x")
    assert admin.fails("user", "add", "ALICE@example.com", "--password", "y") == \
        "user alice@example.com already exists"
    assert admin.fails("user", "add", "dan@example.org", "--password", "y") == \
        "unknown domain example.org: add it first with 'mailhorn domain add example.org'"
    assert admin.fails("user", "passwd", "nobody@example.com", "--password", "y") == \
        "user nobody@example.com does not exist"
    assert admin.fails("user", "del", "nobody@example.com") == "user nobody@example.com does not exist"
    assert admin.fails("user", "quota", "nobody@example.com", "10") == "user nobody@example.com does not exist"
    assert admin.fails("user", "quota", "alice@example.com", "10M") == \
        "invalid quota '10M': expected a number of bytes"
    assert admin.fails("user", "add", "bob@example.com", "--quota", "-1", "--password", "x") == \
        "invalid quota '-1': expected a number of bytes"
    assert admin.fails("user", "add", "bob@example.com", "--password", "x", "--scheme", "NOPE") == \
        "unknown password scheme 'NOPE' (see 'mailhorn pw -l')"
    assert admin.fails("user", "add", "bob@example.com", "--password", "") == "empty password"
    assert admin.ok("user", "list") == "alice@example.com\t10485760\n"


@pytest.mark.parametrize("bad, why", [
    ("alice", "expected local@domain"),
    ("@example.com", "empty local part"),
    ("alice@", "no domain"),
    ("al ice@example.com", "contains U+0020"),
    ("alice@example.com\n", "contains U+000A"),
    ("al\x7fice@example.com", "contains U+007F"),
    (".alice@example.com", "misplaced '.' in the local part"),
    ("al..ice@example.com", "misplaced '.' in the local part"),
    ('"al"@example.com', "character '\"' not allowed in the local part"),
    ("al(ice@example.com", "character '(' not allowed in the local part"),
    ("a" * 65 + "@example.com", "local part longer than 64 octets"),
    ("alice@exa_mple.com", "invalid domain name 'exa_mple.com'"),
    ("alice@[127.0.0.1]", "invalid domain name '[127.0.0.1]'"),
])
def test_user_malformed(admin: Admin, bad: str, why: str) -> None:
    message = admin.fails("user", "add", bad, "--password", "x")
    assert message.startswith(f"invalid address {bad!r}: {why}"), message


def test_password_from_stdin(admin: Admin, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    admin.ok("domain", "add", "example.com")
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    admin.ok("user", "add", "alice@example.com")
    assert passwords.verify("from stdin", stored_password(backend, "alice@example.com"))
    monkeypatch.setattr("sys.stdin", io.StringIO("again\r\n"))
    admin.ok("user", "passwd", "alice@example.com", "--scheme", "SSHA512")
    stored = stored_password(backend, "alice@example.com")
    assert stored.startswith("{SSHA512}") and passwords.verify("again", stored)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert admin.fails("user", "passwd", "alice@example.com") == "no password given on standard input"


def test_idn_user(admin: Admin, backend: Backend) -> None:
    admin.ok("domain", "add", "bücher.example")
    admin.ok("user", "add", "Jörg@BÜCHER.example", "--password", "x")
    # ASCII letters are lowered, the rest of the UTF-8 local part is kept (RFC 6531).
    assert admin.ok("user", "list", "bücher.example") == "jörg@xn--bcher-kva.example\t10485760\n"
    admin.ok("user", "del", "jörg@xn--bcher-kva.example")


def test_aliases(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    admin.ok("domain", "add", "old.example")
    admin.ok("alias", "add", "info@example.com", "sales@example.com")
    admin.ok("alias", "add", "team@example.com", "a@example.com, b@anotherdomain.tld", "c@example.net")
    admin.ok("alias", "add", "@example.com", "thomas@example.com")          # catch-all
    admin.ok("alias", "add", "@old.example", "@example.com")                # domain to domain
    assert admin.ok("alias", "list") == (
        "@example.com\tthomas@example.com\n"
        "@old.example\t@example.com\n"
        "info@example.com\tsales@example.com\n"
        "team@example.com\ta@example.com,b@anotherdomain.tld,c@example.net\n"
    )
    assert admin.ok("alias", "list", "old.example") == "@old.example\t@example.com\n"
    admin.ok("alias", "del", "@example.com")
    admin.ok("alias", "del", "INFO@example.com")
    assert admin.ok("alias", "list", "example.com") == \
        "team@example.com\ta@example.com,b@anotherdomain.tld,c@example.net\n"


def test_alias_errors(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    admin.ok("alias", "add", "info@example.com", "sales@example.com")
    assert admin.fails("alias", "add", "info@example.com", "other@example.com") == \
        "alias info@example.com already exists"
    assert admin.fails("alias", "add", "info@example.org", "x@example.com") == \
        "unknown domain example.org: add it first with 'mailhorn domain add example.org'"
    assert admin.fails("alias", "add", "x@example.com", "@example.net") == \
        "invalid address '@example.net': empty local part"
    assert admin.fails("alias", "add", "@example.com", "@example.net,a@example.net") == \
        "alias @example.com: a domain destination (@example.net) must be the only destination"
    assert admin.fails("alias", "add", "x@example.com", "x@example.com") == "alias x@example.com: forwards to itself"
    assert admin.fails("alias", "add", "x@example.com", "bad dest") == \
        "invalid address 'bad': expected local@domain"
    assert admin.fails("alias", "add", "x@example.com", ",") == "alias x@example.com: no destination given"
    assert admin.fails("alias", "del", "nobody@example.com") == "alias nobody@example.com does not exist"
    assert admin.ok("alias", "list") == "info@example.com\tsales@example.com\n"


def test_transports(admin: Admin) -> None:
    for key, value in [("example.com", "smtp:[mail.example.com]"), (".example.com", "smtp:mail.anotherdomain.tld"),
                       ("joe@example.com", "smtp:[1.2.3.4]:2025"), ("*", "smtp:mail.anotherdomain.tld"),
                       ("local.example", ":"), ("lmtp.example", "lmtp:unix:private/dovecot-lmtp"),
                       ("gone.example", "error:5.1.1 mailbox unavailable")]:
        admin.ok("transport", "add", key, value)
    admin.ok("transport", "add", "split.example", "error:5.7.1", "no", "mail", "here")
    assert admin.ok("transport", "list") == (
        "*\tsmtp:mail.anotherdomain.tld\n"
        ".example.com\tsmtp:mail.anotherdomain.tld\n"
        "example.com\tsmtp:[mail.example.com]\n"
        "gone.example\terror:5.1.1 mailbox unavailable\n"
        "joe@example.com\tsmtp:[1.2.3.4]:2025\n"
        "lmtp.example\tlmtp:unix:private/dovecot-lmtp\n"
        "local.example\t:\n"
        "split.example\terror:5.7.1 no mail here\n"
    )
    assert admin.ok("transport", "list", "example.com") == (
        ".example.com\tsmtp:mail.anotherdomain.tld\n"
        "example.com\tsmtp:[mail.example.com]\n"
        "joe@example.com\tsmtp:[1.2.3.4]:2025\n"
    )
    assert admin.fails("transport", "add", "example.com", "smtp:other") == "transport for example.com already exists"
    assert admin.fails("transport", "del", "example.com", "smtp:other") == \
        "transport for example.com is smtp:[mail.example.com], not smtp:other"
    admin.ok("transport", "del", "example.com", "smtp:[mail.example.com]")
    admin.ok("transport", "del", "*")
    assert admin.fails("transport", "del", "example.com") == "transport for example.com does not exist"
    assert admin.fails("transport", "add", "x.example", "smtp") == \
        "invalid transport 'smtp': expected transport:nexthop (transport(5))"
    assert admin.fails("transport", "add", "x.example", "bad name:host") == \
        "invalid transport 'bad name:host': bad transport name 'bad name'"
    assert admin.fails("transport", "add", "x.example", "smtp:[host") == \
        "invalid transport 'smtp:[host': unterminated '[' in the next hop"
    assert admin.fails("transport", "add", "x.example", "smtp:a\x07b") == \
        "invalid transport 'smtp:a\\x07b': contains a control character"
    assert admin.fails("transport", "add", "exa mple", "smtp:x").startswith("invalid domain name 'exa mple'")


def test_domain_delete_refused_while_used(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    admin.ok("domain", "add", "example.net")
    admin.ok("user", "add", "alice@example.com", "--password", "x")
    admin.ok("user", "add", "bob@example.net", "--password", "x")
    admin.ok("alias", "add", "@example.com", "alice@example.com")
    admin.ok("alias", "add", "info@example.com", "bob@example.net")
    admin.ok("transport", "add", "example.com", "smtp:[relay.example]")
    assert admin.fails("domain", "del", "example.com") == \
        "domain example.com still has 1 user(s) and 2 alias(es); delete them first or use --force"
    assert admin.ok("user", "list") == "alice@example.com\t10485760\nbob@example.net\t10485760\n"
    admin.ok("domain", "del", "--force", "example.com")
    assert admin.ok("domain", "list") == "example.net\n"
    assert admin.ok("user", "list") == "bob@example.net\t10485760\n"
    assert admin.ok("alias", "list") == ""
    # The transport table is keyed independently of hosted domains (relays): kept.
    assert admin.ok("transport", "list") == "example.com\tsmtp:[relay.example]\n"
    admin.ok("user", "del", "bob@example.net")
    admin.ok("domain", "del", "example.net")


def test_usage_errors(admin: Admin) -> None:
    result = admin("domain")
    assert result.status == 1 and "usage: mailhorn domain" in result.err
    result = admin("domain", "add")
    assert result.status == 1 and "domain add: wrong number of arguments" in result.err
    result = admin("domain", "add", "--force", "example.com")
    assert result.status == 1 and "domain add: option --force does not apply" in result.err
    result = admin("user", "list", "--quota", "5")
    assert result.status == 1 and "user list: option --quota does not apply" in result.err
    result = admin("alias", "--bogus", "list")
    assert result.status == 1 and "option --bogus not recognized" in result.err
