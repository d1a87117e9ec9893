"""Logins through passdb_maps: passwd-file and htpasswd lines, failures that look alike, limits.

Every configuration sets ``auth_failure_delay = 0`` so no test waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailhorn import log
from mailhorn.auth import passwords
from mailhorn.auth.limiter import Limiter
from mailhorn.auth.passdb import (
    AUTH_FAILED, AUTH_LIMITED, AUTH_TEMPFAIL, Authenticator, AuthStatus, format_username,
)
from mailhorn.auth.sasl import Credentials, check, plaintext_auth_allowed
from mailhorn.auth.shadow import ShadowEntry, shadow_entry, shadow_password, usable_password
from mailhorn.auth import cram_md5
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.tables.registry import TABLE_TYPES

ADDR = "127.0.0.2"


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(TABLE_TYPES, "passwd-file", "mailhorn.tables.passwdfile:open_passwd_file")
    yield


def config(confdir: Path, **params: str) -> Config:
    lines = {"auth_failure_delay": "0", **params}
    (confdir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
    return load(str(confdir))


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def passwd_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    des = passwords.hash_password("lamiapassword", "DES-CRYPT").removeprefix("{DES-CRYPT}")
    path.write_text(
        f"ana@example.org:{passwords.hash_password('secret', 'SHA512-CRYPT')}:5000:5000::/home/vmail/ana::\n"
        f"tex:{des}\n"                                             # htpasswd -d (crypt), bare: CRYPT
        "sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"                # htpasswd -s, password "secret"
        "apr:$apr1$JsYVq3V8$NxAbsqjLu1lUx4W0Zx3Mp/\n"            # htpasswd -m: Apache MD5, unsupported
        f"cram:{passwords.hash_password('secret', 'CRAM-MD5')}\n"
        "plain:{PLAIN}secret\n"
        "locked:\n"
    )
    return path


def test_passwd_file_logins(confdir: Path, passwd_file: Path) -> None:
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"))
    ok = run(auth.authenticate("Ana@Example.ORG", "secret", ADDR, "imap"))
    assert ok.status is AuthStatus.OK and ok.user == "ana@example.org"  # %Lu
    assert run(auth.authenticate("tex", "lamiapassword", ADDR, "pop3")).ok
    assert run(auth.authenticate("sha", "secret", ADDR, "pop3")).ok
    assert run(auth.authenticate("plain", "secret", ADDR, "smtp")).ok
    assert run(auth.authenticate("ana@example.org", "Secret", ADDR, "imap")) is AUTH_FAILED
    assert run(auth.authenticate("locked", "", ADDR, "imap")) is AUTH_FAILED


def test_unsupported_apr1_is_a_failure_logged_clearly(confdir: Path, passwd_file: Path, tmp_path: Path) -> None:
    maillog = tmp_path / "maillog"
    log.setup("imap", maillog_file=str(maillog), syslog_path=None)
    try:
        auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"))
        assert run(auth.authenticate("apr", "apr", ADDR, "imap")) is AUTH_FAILED
        assert run(auth.authenticate("ana@example.org", "not-logged", ADDR, "imap")) is AUTH_FAILED
    finally:
        log.setup("mailhorn", syslog_path=None)
    text = maillog.read_text()
    assert "error: auth: imap(apr,127.0.0.2): unsupported password scheme APR1" in text and "htpasswd -B" in text
    assert "auth: imap(ana@example.org,127.0.0.2): Password mismatch" in text
    assert "not-logged" not in text


def test_unknown_user_and_wrong_password_look_alike(confdir: Path, passwd_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"))
    assert run(auth.authenticate("ana@example.org", "secret", ADDR, "imap")).ok
    calls: list[str] = []
    real = passwords.verify

    def counting(password: str | bytes, stored: str, default_scheme: str = "CRYPT", user: str | None = None) -> bool:
        calls.append(stored.split("$")[1] if "$" in stored else stored)
        return real(password, stored, default_scheme, user)

    monkeypatch.setattr(passwords, "verify", counting)
    wrong = run(auth.authenticate("ana@example.org", "guess", ADDR, "imap"))
    unknown = run(auth.authenticate("nobody@example.org", "guess", ADDR, "imap"))
    invalid = run(auth.authenticate("bad\nname", "guess", ADDR, "imap"))
    assert wrong is unknown is invalid is AUTH_FAILED
    assert wrong.text == "Authentication failed."
    # One verification each, and of the same kind of hash (the last real one seen).
    assert calls == ["6", "6", "6"]


def test_failures_are_limited_per_client(confdir: Path, passwd_file: Path) -> None:
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"), limiter=Limiter(delay=0, limit=3))
    for _ in range(3):
        assert run(auth.authenticate("tex", "wrong", ADDR, "pop3")) is AUTH_FAILED
    assert auth.limiter.failures(ADDR) == 3
    # Even the right password is not looked at now, from this address only.
    assert run(auth.authenticate("tex", "lamiapassword", ADDR, "pop3")) is AUTH_LIMITED
    assert run(auth.authenticate("tex", "lamiapassword", "127.0.0.3", "pop3")).ok


def test_tempfail_is_distinct_and_not_counted(confdir: Path, passwd_file: Path) -> None:
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"))
    passwd_file.unlink()
    assert run(auth.authenticate("tex", "lamiapassword", ADDR, "pop3")) is AUTH_TEMPFAIL
    assert AUTH_TEMPFAIL.status is AuthStatus.TEMPFAIL and auth.limiter.failures(ADDR) == 0


def test_maps_searched_in_order(confdir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.write_text("a:{PLAIN}first\n")
    second.write_text("a:{PLAIN}second\nb:{PLAIN}bee\n")
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{first}, proxy:passwd-file:{second}",
                                default_pass_scheme="PLAIN"))
    assert run(auth.authenticate("a", "first", ADDR, "imap")).ok
    assert not run(auth.authenticate("a", "second", ADDR, "imap")).ok
    assert run(auth.authenticate("b", "bee", ADDR, "imap")).ok


def test_default_pass_scheme_applies_to_bare_values(confdir: Path, tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("u:5ebe2294ecd0e0f08eab7690d2a6ee69\n")
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{path}", default_pass_scheme="PLAIN-MD5"))
    assert run(auth.authenticate("u", "secret", ADDR, "imap")).ok


def test_cram_md5(confdir: Path, passwd_file: Path) -> None:
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"))
    challenge = b"<1.2@mail.example.com>"
    good = cram_md5.cram_md5_response(cram_md5.hmac_md5_context(b"secret"), challenge)
    for user in ("cram", "plain"):
        assert run(auth.cram_md5_context(user)) == cram_md5.hmac_md5_context(b"secret")
        result = run(check(auth, Credentials("CRAM-MD5", user, challenge=challenge, response=good), ADDR, "smtp"))
        assert result.ok and result.user == user
    # A one-way scheme cannot answer CRAM-MD5; an unknown user fails the same way.
    assert run(auth.cram_md5_context("ana@example.org")) is None
    assert run(auth.authenticate_cram_md5("ana@example.org", challenge, good, ADDR, "smtp")) is AUTH_FAILED
    assert run(auth.authenticate_cram_md5("nobody", challenge, good, ADDR, "smtp")) is AUTH_FAILED
    assert run(auth.authenticate_cram_md5("cram", challenge, "0" * 32, ADDR, "smtp")) is AUTH_FAILED


def test_check_with_plain_credentials(confdir: Path, passwd_file: Path) -> None:
    auth = Authenticator(config(confdir, passdb_maps=f"passwd-file:{passwd_file}"))
    assert run(check(auth, Credentials("PLAIN", "tex", password="lamiapassword"), ADDR, "smtp")).ok


def test_username_format() -> None:
    assert format_username("%Lu", "Dexter@D3XT3R01.tk") == "dexter@d3xt3r01.tk"
    assert format_username("%n", "tex@pippo.it") == "tex"
    assert format_username("%Ln@%Ud", "Tex@pippo.it") == "tex@PIPPO.IT"
    assert format_username("%{username}+%{domain}%%", "a@b") == "a+b%"
    assert format_username("%Ld", "tex") == ""
    with pytest.raises(ConfigError):
        format_username("%x", "a")


def test_bad_settings_are_config_errors(confdir: Path) -> None:
    with pytest.raises(ConfigError):
        Authenticator(config(confdir, auth_username_format="%q"))
    with pytest.raises(ConfigError):
        Authenticator(config(confdir, auth_failure_delay="soon"))


def test_plaintext_rule(confdir: Path) -> None:
    assert plaintext_auth_allowed(config(confdir), secured=True)
    assert not plaintext_auth_allowed(config(confdir), secured=False)
    assert plaintext_auth_allowed(config(confdir, disable_plaintext_auth="no"), secured=False)


def test_shadow_entries(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n"
                      "suporte:$6$abc$def:19000:0:99999:7:::\n"
                      "locked:!$6$abc$def:19000:0:99999:7:::\n"
                      "nopw::19000:0:99999:7:::\n"
                      "gone:$6$abc$def:19000:0:99999:7::1:\n")
    assert shadow_password("suporte", str(shadow)) == "$6$abc$def"
    for name in ("root", "locked", "nopw", "gone", "missing", "sup"):
        assert shadow_password(name, str(shadow)) is None, name
    assert shadow_entry("gone", str(shadow)) == ShadowEntry("gone", "$6$abc$def", 1)
    assert usable_password(ShadowEntry("x", "$6$a$b", 20000), now=19999 * 86400.0) == "$6$a$b"
    assert usable_password(ShadowEntry("x", "$6$a$b", 20000), now=20000 * 86400.0) is None


def test_shadow_table_in_passdb(confdir: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(f"suporte:{passwords.hash_password('suporte', 'SHA512-CRYPT').removeprefix('{SHA512-CRYPT}')}"
                      ":19000:0:99999:7:::\n")
    cfg = config(confdir, passdb_maps="unix:shadow.byname", mydestination="localhost, mail.example.com")
    auth = Authenticator(cfg, shadow_path=str(shadow))
    assert run(auth.authenticate("suporte", "suporte", ADDR, "pop3")).ok
    assert run(auth.authenticate("suporte@mail.example.com", "suporte", ADDR, "pop3")).ok
    assert run(auth.authenticate("suporte@elsewhere.example", "suporte", ADDR, "pop3")) is AUTH_FAILED
    shadow.chmod(0)
    unreadable = Authenticator(cfg, shadow_path=str(tmp_path / "missing"))
    assert run(unreadable.authenticate("suporte", "suporte", ADDR, "pop3")) is AUTH_TEMPFAIL
