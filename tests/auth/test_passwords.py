"""Password schemes: known vectors, wrong passwords, encodings, malformed data.

The vectors below were made by Dovecot 2.3.19's ``doveadm pw`` for the
password ``secret`` (DIGEST-MD5 with ``-u user@example.com``); the live
round trips against doveadm are in test_dovecot.py.
"""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from mailhorn.auth import cram_md5, passwords
from mailhorn.auth.passwords import (
    DecodeError, HashGenerationError, InvalidHashError, PasswordError, UnknownSchemeError,
    hash_password, schemes, verify,
)

DOVECOT_VECTORS = [
    "{SHA1}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
    "{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==",
    "{SSHA}JyQ8IcOWbqFVAQYuL/PV2UB1PZQrVB9s",
    "{SSHA256}HgTbWCj8565bwjehg0U5UXQHKDI/2EFQLZbEUZw1aHVl19Ie",
    "{SSHA512}hWXa44zBPL7EGks+Oy5mHAL3Q6HGdSBlDzihVsNGTi4P361PaOhIOgtQe+0+lB8Yl4rOYrABnUlBtqvx8RN1c48RhyE=",
    "{SMD5}+nudUmjfHzs40dBmyoJBboXnwbE=",
    "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
    "{LDAP-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    "{MD5}$1$MC/4eGmY$JFb2soC88S4TqXoxRUqt9.",
    "{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
    "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    "{MD5-CRYPT}$1$vhLk7Rdj$JrMPU141.a4LrGqxPs2Up1",
    "{SHA256-CRYPT}$5$MwgUrAmNteFHkjaJ$qP3v9jKHQjLNqP88EP0IYNeVTV.Y/APVfXjw5Q6Ue/0",
    "{SHA512-CRYPT}$6$Um31qql8rgiOKNtN$P71K0fL1hJi8nufRj8soEKY2q0bRO7yj/nXDrfoodl3fMarNyTLE67wsEgxPSR9e1X9UPbI4tPrA2mTCRcgzv/",
    "{BLF-CRYPT}$2y$05$SXFR/txjLwHrmXyayFmXBelNullndmVUmFXja.XwNXxDnaRQ6k0im",
    "{CRYPT}$2y$05$JH9FUFQmtFzdFuiGT17jougbZ51hhl/g54nazk0XnxCq8EaaXNdpa",
    "{DES-CRYPT}YLx4uEvCdXzTI",
    "{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56",
    "{HMAC-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56",
    "{DIGEST-MD5}30969131580e626606ce70ceaab77719",
    "{PBKDF2}$1$yJ6pCT14SzE9YKI7$5000$55f342d131e6854104ce9fae2794c5f70711dad8",
    "{SCRAM-SHA-1}4096,PDcBs+l+0dxf2UZOmSqHWw==,ULxG/x6CQeCQj3BPT4a82n3IJ8k=,t+rnljFtAZrhVPlpSj9pd+KO7iY=",
    "{SCRAM-SHA-256}4096,KnQcedAY3DAf6dFmxfs3ZQ==,7Z68rvvoZmjycphOmw61UAul7eYRisyfwPMehTR1Rh0=,"
    "cYODx908aYq97POZhu2cEFF6D2dhw5JIL9dHy4yTOEg=",
    "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$gQRbTDXbMFoFVgm0cb1/MQ$kC4qd7zicD1o4ml5ghfrEsFYYAVk7pq9whdk53xCk2E",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$v3yARr7+Benpe51Oqx0Rxw$m/ksdvvVceO+1Sc2pPuvbjE75nY0QHsGwOgbDuMahI4",
    "{PLAIN}secret",
    "{CLEAR}secret",
    "{CLEARTEXT}secret",
    "{SHA256.HEX}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
    "{PLAIN.b64}c2VjcmV0",
    "{sha.hex}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4",
]
USER = "user@example.com"


@pytest.mark.parametrize("stored", DOVECOT_VECTORS)
def test_dovecot_vectors_verify(stored: str) -> None:
    assert verify("secret", stored, user=USER) is True
    assert verify(b"secret", stored, user=USER) is True
    assert verify("wrong", stored, user=USER) is False
    assert verify("Secret", stored, user=USER) is False
    assert verify("", stored, user=USER) is False


@pytest.mark.parametrize("scheme", schemes())
def test_every_scheme_round_trips_and_rejects_wrong(scheme: str) -> None:
    for password in ("right", "pässwörd ☃", ""):
        stored = hash_password(password, scheme, user=USER)
        assert stored.startswith("{" + scheme + "}")
        assert verify(password, stored, user=USER) is True
        if not (scheme == "DES-CRYPT" and len(password.encode()) >= 8):
            # Traditional DES reads 8 bytes only; tested on its own below.
            assert verify(password + "x", stored, user=USER) is False
        assert verify("wrong", stored, user=USER) is False


@pytest.mark.parametrize("scheme", [s for s in schemes() if s not in ("PLAIN", "CLEAR", "CLEARTEXT")])
def test_hashes_are_salted_or_deterministic_as_dovecot(scheme: str) -> None:
    deterministic = {"SHA", "SHA1", "SHA256", "SHA512", "PLAIN-MD5", "LDAP-MD5", "DIGEST-MD5",
                     "CRAM-MD5", "HMAC-MD5"}
    a = hash_password("correct-horse-battery", scheme, user=USER)
    b = hash_password("correct-horse-battery", scheme, user=USER)
    assert (a == b) == (scheme in deterministic)
    assert "correct-horse" not in a


def test_default_new_scheme_is_argon2id() -> None:
    stored = hash_password("pw")
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")
    assert verify("pw", stored)


def test_encoding_suffixes() -> None:
    hexed = hash_password("secret", "sha256.hex")
    assert hexed == "{SHA256.HEX}" + hashlib.sha256(b"secret").hexdigest()
    b64 = hash_password("secret", "SHA256.B64")
    assert b64 == "{SHA256.B64}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols="
    assert hash_password("secret", "PLAIN.BASE64") == "{PLAIN.BASE64}c2VjcmV0"
    salted = hash_password("secret", "SSHA.HEX")
    assert len(salted) == len("{SSHA.HEX}") + 48
    assert verify("secret", salted)
    # Without a suffix, hex is recognised by its length for fixed-size digests.
    assert verify("secret", "{SHA256}" + hashlib.sha256(b"secret").hexdigest().upper())
    assert verify("secret", "{SHA512}" + hashlib.sha512(b"secret").hexdigest())
    with pytest.raises(UnknownSchemeError):
        verify("secret", "{SHA256.ROT13}abc")
    with pytest.raises(UnknownSchemeError):
        hash_password("secret", "SHA256.ROT13")


def test_unprefixed_uses_default_scheme_crypt() -> None:
    # Dovecot's default_pass_scheme is CRYPT: any crypt(3) hash verifies.
    for stored in (
        "$6$Um31qql8rgiOKNtN$P71K0fL1hJi8nufRj8soEKY2q0bRO7yj/nXDrfoodl3fMarNyTLE67wsEgxPSR9e1X9UPbI4tPrA2mTCRcgzv/",
        "$5$MwgUrAmNteFHkjaJ$qP3v9jKHQjLNqP88EP0IYNeVTV.Y/APVfXjw5Q6Ue/0",
        "$2y$05$SXFR/txjLwHrmXyayFmXBelNullndmVUmFXja.XwNXxDnaRQ6k0im",
        "YLx4uEvCdXzTI",
    ):
        assert verify("secret", stored) is True
        assert verify("wrong", stored) is False
    assert verify("secret", "secret", default_scheme="PLAIN") is True
    assert verify("secret", "5ebe2294ecd0e0f08eab7690d2a6ee69", default_scheme="plain-md5") is True
    with pytest.raises(UnknownSchemeError):
        verify("secret", "secret", default_scheme="NOPE")


def test_unprefixed_md5_crypt_whatever_the_default() -> None:
    # Dovecot: "$1$salt$hash[$ignored]" is MD5-CRYPT even under another default.
    stored = "$1$vhLk7Rdj$JrMPU141.a4LrGqxPs2Up1"
    assert verify("secret", stored, default_scheme="PLAIN") is True
    assert verify("secret", stored + "$trailing", default_scheme="SHA256") is True
    assert passwords.split_scheme(stored + "$x") == ("MD5-CRYPT", stored)


def test_unknown_scheme_is_an_error_never_a_match() -> None:
    for stored in ("{FOO}secret", "{}secret", "{SHA3}secret"):
        with pytest.raises(UnknownSchemeError):
            verify("secret", stored)
    with pytest.raises(UnknownSchemeError):
        hash_password("secret", "FOO")
    assert issubclass(UnknownSchemeError, PasswordError)


def test_decode_errors_as_dovecot_words_them() -> None:
    with pytest.raises(DecodeError, match="Input isn't valid base64 encoded data"):
        verify("secret", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ")  # padding missing
    with pytest.raises(DecodeError, match="Input isn't valid base64 encoded data"):
        verify("secret", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ==")
    with pytest.raises(DecodeError, match="Input isn't valid HEX encoded data"):
        verify("secret", "{SHA.HEX}zz")
    with pytest.raises(DecodeError, match=r"Input length isn't valid \(3 instead of 20\)"):
        verify("secret", "{SHA}YWJj")
    with pytest.raises(InvalidHashError, match="SSHA password is too short"):
        verify("x", "{SSHA}abcd")
    with pytest.raises(InvalidHashError, match="Not a valid MD5-CRYPT or PLAIN-MD5"):
        verify("x", "{MD5}nothex!")


def test_crypt_failures_are_no_match() -> None:
    # libxcrypt failure tokens and unusable settings never match.
    for stored in ("{CRYPT}*0", "{CRYPT}*1", "{CRYPT}", "{CRYPT}!", "{CRYPT}$6$", "{SHA512-CRYPT}!locked",
                   "{CRYPT}$2y$99$abcdefghijklmnopqrstuu", "{DES-CRYPT}x"):
        assert verify("", stored) is False
        assert verify("secret", stored) is False
    # A NUL cannot reach crypt(3): refused rather than cut short.
    assert verify("secret\0junk", "{DES-CRYPT}YLx4uEvCdXzTI") is False


def test_des_uses_eight_characters_as_crypt3_does() -> None:
    stored = hash_password("12345678", "DES-CRYPT")
    assert len(stored) == len("{DES-CRYPT}") + 13
    assert verify("12345678-and-more", stored) is True


def test_digest_md5_needs_user() -> None:
    with pytest.raises(HashGenerationError):
        verify("secret", "{DIGEST-MD5}30969131580e626606ce70ceaab77719")
    with pytest.raises(HashGenerationError):
        hash_password("secret", "DIGEST-MD5")
    assert hash_password("secret", "DIGEST-MD5", user="bob") == \
        "{DIGEST-MD5}" + hashlib.md5(b"bob::secret").hexdigest()
    assert verify("secret", "{DIGEST-MD5}30969131580e626606ce70ceaab77719", user="other@example.com") is False


def test_rounds() -> None:
    assert hash_password("x", "SHA512-CRYPT", rounds=10000).startswith("{SHA512-CRYPT}$6$rounds=10000$")
    assert hash_password("x", "SHA256-CRYPT", rounds=5000).startswith("{SHA256-CRYPT}$5$")
    assert "rounds=" not in hash_password("x", "SHA256-CRYPT", rounds=5000)
    assert hash_password("x", "SHA256-CRYPT", rounds=999).startswith("{SHA256-CRYPT}$5$rounds=1000$")
    assert hash_password("x", "BLF-CRYPT", rounds=6).startswith("{BLF-CRYPT}$2y$06$")
    assert hash_password("x", "CRYPT").startswith("{CRYPT}$2y$05$")
    for bad in (3, 32):
        with pytest.raises(HashGenerationError):
            hash_password("x", "BLF-CRYPT", rounds=bad)
    assert hash_password("x", "MD5-CRYPT", rounds=9).startswith("{MD5-CRYPT}$1$")
    assert "$9$" in hash_password("x", "PBKDF2", rounds=9)
    assert hash_password("x", "SCRAM-SHA-1", rounds=10).startswith("{SCRAM-SHA-1}4096,")
    assert "$m=32768,t=3,p=1$" in hash_password("x", "ARGON2I", rounds=3)
    assert "$m=65536,t=3,p=1$" in hash_password("x", "ARGON2ID", rounds=1)
    with pytest.raises(HashGenerationError):
        hash_password("x", "ARGON2I", rounds=2)


def test_argon2_variant_read_from_the_string() -> None:
    argon2i = DOVECOT_VECTORS[25].split("}", 1)[1]
    assert verify("secret", "{ARGON2ID}" + argon2i) is True
    with pytest.raises(InvalidHashError):
        verify("secret", "{ARGON2ID}$argon2d$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
    with pytest.raises(InvalidHashError):
        verify("secret", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$$")


def test_cram_md5_rfc2195_example() -> None:
    # RFC 2195 §2: key "tanstaaftanstaaf", this challenge, this digest.
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    stored = hash_password("tanstaaftanstaaf", "CRAM-MD5")
    context = passwords.cram_md5_context(stored)
    assert context is not None
    assert cram_md5.cram_md5_response(context, challenge) == "b913a602c7eda7a495b4e6e7334d3890"
    plain_context = passwords.cram_md5_context("{PLAIN}tanstaaftanstaaf")
    assert plain_context == context
    assert passwords.cram_md5_context("tanstaaftanstaaf", default_scheme="CLEAR") == context
    assert passwords.cram_md5_context("{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=") is None


def test_cram_md5_context_matches_hmac_for_any_key_and_challenge() -> None:
    rng = random.Random(2195)
    for _ in range(40):
        key = rng.randbytes(rng.randrange(0, 150))
        challenge = rng.randbytes(rng.randrange(0, 300))
        context = cram_md5.hmac_md5_context(key)
        assert cram_md5.cram_md5_digest(context, challenge) == hmac.new(key, challenge, "md5").digest()
    with pytest.raises(ValueError):
        cram_md5.cram_md5_digest(b"short", b"x")


@pytest.mark.parametrize("scheme", schemes())
def test_malformed_data_never_crashes(scheme: str) -> None:
    rng = random.Random(scheme)
    alphabet = "abcXYZ019+/=$.,{}!*\0\xe9\u2603"
    samples = ["", "$", "$$$", "*0", "=", "{", "}", "a" * 200, "$1$", "$argon2id$", "4096,,,", "$1$s$0$00"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 90))) for _ in range(30)]
    for data in samples:
        try:
            result = verify("secret", "{" + scheme + "}" + data, user=USER)
        except PasswordError:
            continue
        assert result is False or data == "secret"


def test_schemes_listing() -> None:
    names = schemes()
    for required in ("SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "CRYPT", "DES-CRYPT",
                     "SSHA", "SSHA256", "SSHA512", "SHA", "SHA256", "SHA512", "PLAIN", "CLEAR",
                     "CLEARTEXT", "PLAIN-MD5", "MD5", "CRAM-MD5", "ARGON2I", "ARGON2ID"):
        assert required in names
    assert len(names) == len(set(names))
