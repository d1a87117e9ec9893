"""Round trips with Dovecot's own ``doveadm pw`` (Debian package dovecot-core).

Every scheme both sides know: doveadm makes a hash that mailhorn verifies,
and mailhorn makes a hash that ``doveadm pw -t`` verifies.  The doveadm
listing and the ``-t`` output are compared with ``mailhorn pw``'s.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mailhorn.auth.passwords import hash_password, schemes, verify
from tests.auth.util import run_pw
from tests.conftest import require

USER = "jane.roe@example.com"
PASSWORDS = ["secret", "pässwörd ☃ with spaces"]


def doveadm() -> str:
    path = shutil.which("doveadm") or shutil.which("/usr/bin/doveadm")
    require(path is not None, "doveadm is not installed (Debian package dovecot-core)")
    assert path is not None
    return path


def doveadm_pw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([doveadm(), "pw", *args], capture_output=True, text=True, timeout=120)


def dovecot_schemes() -> list[str]:
    done = doveadm_pw("-l")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


# Everything mailhorn implements is a Dovecot scheme.
SHARED = schemes()


def test_every_mailhorn_scheme_is_a_dovecot_scheme() -> None:
    assert set(SHARED) <= set(dovecot_schemes())


@pytest.mark.parametrize("scheme", SHARED)
def test_doveadm_hashes_verify_in_mailhorn(scheme: str) -> None:
    doveadm()
    for password in PASSWORDS:
        done = doveadm_pw("-s", scheme, "-u", USER, "-p", password)
        assert done.returncode == 0, done.stderr
        stored = done.stdout.strip()
        assert stored.startswith("{" + scheme + "}")
        assert verify(password, stored, user=USER) is True, stored
        assert verify("wrong", stored, user=USER) is False


@pytest.mark.parametrize("scheme", SHARED)
def test_mailhorn_hashes_verify_in_doveadm(scheme: str) -> None:
    doveadm()
    for password in PASSWORDS:
        stored = hash_password(password, scheme, user=USER)
        ok = doveadm_pw("-t", stored, "-u", USER, "-p", password)
        assert ok.returncode == 0, (stored, ok.stderr)
        assert ok.stdout == f"{stored} (verified)\n"
        bad = doveadm_pw("-t", stored, "-u", USER, "-p", "wrong")
        assert bad.returncode != 0


@pytest.mark.parametrize("scheme", ["SHA256.HEX", "SHA512.B64", "SSHA.HEX", "PLAIN-MD5.B64", "PLAIN.BASE64",
                                    "CRAM-MD5.B64", "SHA512-CRYPT.HEX"])
def test_encoding_suffixes_both_ways(scheme: str) -> None:
    done = doveadm_pw("-s", scheme, "-p", "secret")
    assert done.returncode == 0, done.stderr
    assert verify("secret", done.stdout.strip()) is True
    ours = hash_password("secret", scheme)
    assert ours.startswith("{" + scheme + "}")
    assert doveadm_pw("-t", ours, "-p", "secret").returncode == 0


@pytest.mark.parametrize("args", [
    ("-s", "SHA512-CRYPT", "-r", "10000"), ("-s", "SHA256-CRYPT", "-r", "999"), ("-s", "BLF-CRYPT", "-r", "6"),
    ("-s", "CRYPT", "-r", "4"), ("-s", "ARGON2I", "-r", "3"), ("-s", "ARGON2ID", "-r", "2"),
    ("-s", "PBKDF2", "-r", "9"), ("-s", "SCRAM-SHA-256", "-r", "100"),
])
def test_rounds_give_the_same_parameters(args: tuple[str, ...]) -> None:
    """The cost part of the hash is what doveadm writes for the same -r."""
    theirs = doveadm_pw(*args, "-p", "secret")
    assert theirs.returncode == 0, theirs.stderr
    ours = run_pw(*args, "-p", "secret")
    assert ours.returncode == 0, ours.stderr

    def cost(stored: str) -> str:
        body = stored.strip()
        if "$argon2" in body:
            return body.split("$")[3]
        if body.startswith("{PBKDF2}"):
            return body.split("$")[3]
        if body.startswith("{SCRAM"):
            return body.split("}")[1].split(",")[0]
        return "$".join(body.split("$")[:3]) if "rounds=" in body or "$2y$" in body else body.split("$")[1]

    assert cost(ours.stdout) == cost(theirs.stdout)
    assert verify("secret", ours.stdout.strip())


def test_listing_format_matches_doveadm() -> None:
    theirs = doveadm_pw("-l")
    ours = run_pw("-l")
    assert ours.returncode == theirs.returncode == 0
    # One line, names separated by one space and ending with one, as doveadm prints it.
    assert theirs.stdout.endswith(" \n") and ours.stdout.endswith(" \n")
    assert ours.stdout.count("\n") == 1


@pytest.mark.parametrize("stored,password", [
    ("{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=", "secret"),
    ("$1$abcdefgh$T4IVkCSPcN.5HBE34QUpF1$junk", "parolamail"),
    ("{PLAIN.b64}c2VjcmV0", "secret"),
    ("{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=", "wrong"),
    ("{FOO}abc", "secret"),
    ("K7gNU3sdo", "secret"),
    ("{SHA256}!!!", "secret"),
    ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ", "secret"),
    ("{SHA}YWJj", "secret"),
    ("{SSHA}abcd", "secret"),
    ("{CRYPT}*0", "secret"),
])
def test_test_option_output_matches_doveadm(stored: str, password: str) -> None:
    theirs = doveadm_pw("-t", stored, "-p", password)
    ours = run_pw("-t", stored, "-p", password)
    assert ours.stdout == theirs.stdout
    assert ours.stderr == theirs.stderr
    assert ours.returncode == theirs.returncode
