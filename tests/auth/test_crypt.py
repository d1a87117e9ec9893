"""crypt(3) binding and crypt schemes against the system's own tools.

``openssl passwd`` (MD5-crypt, SHA-crypt) and ``mkpasswd`` from Debian's
``whois`` package (DES, bcrypt, yescrypt) make hashes that mailhorn must
verify, and must be able to recompute exactly.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mailhorn.auth import crypt as xcrypt
from mailhorn.auth.passwords import hash_password, verify
from tests.conftest import require

PASSWORDS = ["secret", "pässwörd ☃", "x" * 100, "sp ace"]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (Debian package {package})")
    assert path is not None
    return path


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("flag", ["-1", "-5", "-6"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_openssl_passwd_hashes_verify(flag: str, password: str) -> None:
    openssl = _tool("openssl", "openssl")
    stored = _run(openssl, "passwd", flag, "-salt", "abcdefgh", password)
    # The same setting gives the same hash: crypt(3) is called exactly.
    assert xcrypt.crypt(password.encode(), stored) == stored
    assert verify(password, stored) is True
    assert verify(password, "{CRYPT}" + stored) is True
    scheme = {"-1": "MD5-CRYPT", "-5": "SHA256-CRYPT", "-6": "SHA512-CRYPT"}[flag]
    assert verify(password, "{" + scheme + "}" + stored) is True
    assert verify(password + "!", stored) is False


@pytest.mark.parametrize("method", ["descrypt", "md5crypt", "sha256crypt", "sha512crypt", "bcrypt", "bcrypt-a",
                                    "yescrypt"])
def test_mkpasswd_hashes_verify(method: str) -> None:
    mkpasswd = _tool("mkpasswd", "whois")
    for password in ("secret", "pässwörd"):
        stored = _run(mkpasswd, "-m", method, password)
        assert verify(password, stored) is True, stored
        assert verify(password, "{CRYPT}" + stored) is True
        assert verify("wrong", stored) is False


def test_mkpasswd_with_rounds_and_salt() -> None:
    mkpasswd = _tool("mkpasswd", "whois")
    stored = _run(mkpasswd, "-m", "sha512crypt", "-R", "6000", "-S", "saltsalt", "secret")
    assert stored.startswith("$6$rounds=6000$saltsalt$")
    assert xcrypt.crypt(b"secret", "$6$rounds=6000$saltsalt$") == stored
    assert verify("secret", "{SHA512-CRYPT}" + stored)


def test_mailhorn_hashes_verify_with_mkpasswd_salt() -> None:
    """Hashes made here recompute identically through mkpasswd's crypt(3)."""
    mkpasswd = _tool("mkpasswd", "whois")
    for scheme, method in (("SHA512-CRYPT", "sha512crypt"), ("SHA256-CRYPT", "sha256crypt"),
                           ("MD5-CRYPT", "md5crypt"), ("DES-CRYPT", "descrypt")):
        stored = hash_password("secret", scheme).split("}", 1)[1]
        if method == "descrypt":
            salt = stored[:2]
        else:
            salt = stored.split("$")[2]
        assert _run(mkpasswd, "-m", method, "-S", salt, "secret") == stored


def test_gensalt_prefixes() -> None:
    assert xcrypt.gensalt("$6$").startswith("$6$")
    assert xcrypt.gensalt("$6$", 20000).startswith("$6$rounds=20000$")
    assert xcrypt.gensalt("$2y$", 7).startswith("$2y$07$")
    assert len(xcrypt.gensalt("")) == 2  # traditional DES: two salt characters
    assert xcrypt.gensalt("$y$").startswith("$y$")
    with pytest.raises(xcrypt.CryptError):
        xcrypt.gensalt("$2y$", 3)
    with pytest.raises(xcrypt.CryptError):
        xcrypt.gensalt("$nope$")


def test_crypt_failure_tokens_and_bad_input_raise() -> None:
    for setting in ("*0", "*1", "$6", "$2y$99$xxxxxxxxxxxxxxxxxxxxxx", "!", "$q$"):
        with pytest.raises(xcrypt.CryptError):
            xcrypt.crypt(b"secret", setting)
    with pytest.raises(xcrypt.CryptError):
        xcrypt.crypt(b"sec\0ret", "ab")
    with pytest.raises(xcrypt.CryptError):
        xcrypt.crypt(b"secret", "\u00e9\u00e9")


def test_crypt_is_reentrant_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    setting = "$5$rounds=1000$abcdefgh"
    expected = xcrypt.crypt(b"secret", setting)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: xcrypt.crypt(b"secret", setting), range(32)))
    assert set(results) == {expected}


def test_missing_library_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xcrypt, "_lib", None)
    monkeypatch.setattr(xcrypt, "LIBCRYPT_SONAME", "libcrypt-absent.so.9")
    with pytest.raises(xcrypt.CryptUnavailableError, match="libcrypt-absent.so.9.*libcrypt1"):
        xcrypt.crypt(b"secret", "ab")
    with pytest.raises(xcrypt.CryptUnavailableError):
        verify("secret", "{CRYPT}abNANd1rDfiNc")
