"""Password schemes: verify and make stored passwords as Dovecot does.

What it does
    A stored password reads ``{SCHEME}data`` (Dovecot's password schemes, the
    LDAP ``userPassword`` convention) or just ``data``, in which case the
    passdb's default scheme applies (Dovecot ``default_pass_scheme``, whose
    default is ``CRYPT``).  As in Dovecot, an unprefixed ``$1$salt$hash`` is
    always MD5-crypt, whatever the default.

    :func:`verify` checks a password against a stored value, in constant
    time; :func:`hash_password` makes a new one (``{ARGON2ID}`` unless told
    otherwise) with the ``{SCHEME}`` prefix, as ``doveadm pw`` prints it;
    :func:`schemes` lists the scheme names; :func:`cram_md5_context` gives
    SASL CRAM-MD5 the HMAC-MD5 state it needs from a stored password.

Schemes
    crypt(3) through the system libxcrypt (:mod:`mailhorn.auth.crypt`):
    ``SHA512-CRYPT`` ``$6$``, ``SHA256-CRYPT`` ``$5$``, ``MD5-CRYPT`` ``$1$``,
    ``BLF-CRYPT`` ``$2y$``, ``DES-CRYPT`` (13 characters, as MariaDB's
    ``ENCRYPT()`` makes them) and ``CRYPT``, which verifies any hash the
    system's crypt(3) knows (DES, ``$1$ $5$ $6$ $2a$ $2b$ $2y$ $y$``) and,
    like Dovecot 2.3, makes ``$2y$`` bcrypt.  Digests: ``SHA``/``SHA1``,
    ``SHA256``, ``SHA512``, salted ``SSHA`` ``SSHA256`` ``SSHA512`` ``SMD5``
    (digest + 4-byte salt), ``PLAIN-MD5`` (hex), ``LDAP-MD5`` (base64),
    ``MD5`` (MD5-crypt when the data starts with ``$1$``, else PLAIN-MD5, as
    Dovecot reads it; new ones are MD5-crypt), ``DIGEST-MD5`` (RFC 2831
    ``MD5(user:realm:password)``, needs the user name), ``CRAM-MD5`` /
    ``HMAC-MD5`` (:mod:`mailhorn.auth.cram_md5`), ``PBKDF2`` (Dovecot's
    ``$1$salt$rounds$hex``, PBKDF2-HMAC-SHA1), ``SCRAM-SHA-1`` and
    ``SCRAM-SHA-256`` (RFC 5802 ``iterations,salt,StoredKey,ServerKey``),
    ``ARGON2I`` and ``ARGON2ID`` (argon2-cffi, the PHC string
    ``$argon2id$v=19$m=…,t=…,p=…$salt$hash``), and plaintext ``PLAIN``
    ``CLEAR`` ``CLEARTEXT``.

Encodings
    Binary schemes have a default encoding (base64 or hex).  A ``.HEX``,
    ``.B64`` or ``.BASE64`` suffix on the scheme name (``{SHA256.HEX}``)
    forces one.  Without a suffix, data of a fixed-size scheme whose length
    is twice the raw size is read as hex, else as base64 (strict, padded),
    exactly as Dovecot guesses.

Errors
    :class:`UnknownSchemeError` for a scheme name not listed (never a match);
    :class:`InvalidHashError` (and its :class:`DecodeError`) for stored data
    that cannot be a hash of its scheme; :class:`HashGenerationError` when a
    hash cannot be made (rounds out of range, missing user name).  All are
    :class:`PasswordError`.  A password that merely does not match is
    ``False``.  No password ever appears in an exception or a log record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import argon2.exceptions
import argon2.low_level

from mailhorn.auth import cram_md5
from mailhorn.auth.crypt import CryptError, crypt, gensalt

#: Scheme used for new hashes when none is asked for (design.md §6).
DEFAULT_HASH_SCHEME = "ARGON2ID"
#: Dovecot's ``default_pass_scheme`` default.
DEFAULT_PASS_SCHEME = "CRYPT"

Encoding = Literal["none", "base64", "hex"]


class PasswordError(Exception):
    """Base class of the errors of this module."""


class UnknownSchemeError(PasswordError):
    """A ``{SCHEME}`` (or default scheme) that this module does not know."""


class InvalidHashError(PasswordError):
    """Stored data that is not a valid hash of its scheme."""


class DecodeError(InvalidHashError):
    """Stored data whose hex or base64 encoding (or length) is wrong."""


class HashGenerationError(PasswordError):
    """A hash that cannot be made with the given parameters."""


@dataclass(frozen=True)
class _Params:
    """What a scheme may need besides the password."""

    user: str | None = None
    rounds: int | None = None


@dataclass(frozen=True)
class _Scheme:
    """One password scheme: its encoding and its two operations.

    ``verify(password, raw, params)`` gets the decoded stored data;
    ``generate(password, params)`` returns raw data, encoded afterwards.
    ``raw_len`` is the fixed decoded size, 0 when it varies.
    """

    name: str
    encoding: Encoding
    raw_len: int
    verify: Callable[[bytes, bytes, _Params], bool]
    generate: Callable[[bytes, _Params], bytes]


def _to_bytes(password: str | bytes) -> bytes:
    # surrogatepass: any str encodes, so a stray surrogate is a mismatch, not a crash.
    return password.encode("utf-8", "surrogatepass") if isinstance(password, str) else password


# --- crypt(3) schemes ------------------------------------------------------


def _crypt_verify(password: bytes, raw: bytes, params: _Params) -> bool:
    """Hash with the stored value as setting and compare (crypt(3) idiom)."""
    if not raw:
        # An empty setting would make libxcrypt pick a default; never a match.
        return False
    try:
        stored = raw.decode("ascii")
        computed = crypt(password, stored)
    except (UnicodeDecodeError, CryptError):
        return False
    return hmac.compare_digest(computed.encode("ascii"), raw)


def _crypt_generator(prefix: str, default_cost: int, takes_rounds: bool,
                     lowest: int = 0, highest: int = 0) -> Callable[[bytes, _Params], bytes]:
    """A generator making ``prefix`` hashes with a fresh libxcrypt salt.

    ``lowest``/``highest`` bound the cost (doveadm-pw(1) table: BLF-CRYPT
    4..31); SHA-crypt rounds are clamped by libxcrypt itself to
    1000..999999999 as glibc does.
    """

    def generate(password: bytes, params: _Params) -> bytes:
        cost = default_cost
        if takes_rounds and params.rounds is not None:
            cost = params.rounds
            if highest and not lowest <= cost <= highest:
                raise HashGenerationError(
                    f"rounds must be between {lowest} and {highest} for this scheme"
                )
            if cost < 0:
                raise HashGenerationError("rounds must not be negative")
        try:
            return crypt(password, gensalt(prefix, cost)).encode("ascii")
        except CryptError as exc:
            raise HashGenerationError(str(exc)) from exc

    return generate


# --- digests ---------------------------------------------------------------

_SALT_LEN = 4  # Dovecot's salt for SSHA, SSHA256, SSHA512, SMD5


def _digest_scheme(algorithm: str) -> tuple[Callable[[bytes, bytes, _Params], bool],
                                             Callable[[bytes, _Params], bytes]]:
    def verify(password: bytes, raw: bytes, params: _Params) -> bool:
        return hmac.compare_digest(hashlib.new(algorithm, password).digest(), raw)

    def generate(password: bytes, params: _Params) -> bytes:
        return hashlib.new(algorithm, password).digest()

    return verify, generate


def _salted_scheme(algorithm: str, name: str) -> tuple[Callable[[bytes, bytes, _Params], bool],
                                                       Callable[[bytes, _Params], bytes]]:
    """``digest(password + salt) + salt`` (RFC 2307 style salted digests)."""
    size = hashlib.new(algorithm).digest_size

    def verify(password: bytes, raw: bytes, params: _Params) -> bool:
        if len(raw) <= size:
            raise InvalidHashError(f"{name} password is too short")
        salt = raw[size:]
        return hmac.compare_digest(hashlib.new(algorithm, password + salt).digest(), raw[:size])

    def generate(password: bytes, params: _Params) -> bytes:
        salt = os.urandom(_SALT_LEN)
        return hashlib.new(algorithm, password + salt).digest() + salt

    return verify, generate


def _md5_verify(password: bytes, raw: bytes, params: _Params) -> bool:
    """Dovecot's ``{MD5}``: MD5-crypt if it starts with ``$1$``, else PLAIN-MD5."""
    if raw.startswith(b"$1$"):
        return _crypt_verify(password, raw, params)
    try:
        digest = _decode(raw.decode("ascii"), _SCHEMES["PLAIN-MD5"], None)
    except (UnicodeDecodeError, DecodeError) as exc:
        raise InvalidHashError("Not a valid MD5-CRYPT or PLAIN-MD5 password") from exc
    return hmac.compare_digest(hashlib.md5(password).digest(), digest)


def _digest_md5_secret(password: bytes, params: _Params) -> bytes:
    """RFC 2831 §2.1.2.1 ``H({ username ":" realm ":" passwd })``.

    Dovecot splits the login at ``@``: ``user@realm`` gives ``user`` and
    ``realm``; a login without ``@`` has an empty realm.
    """
    if not params.user:
        raise HashGenerationError("DIGEST-MD5 needs the user name")
    user, _, realm = params.user.partition("@")
    return hashlib.md5(user.encode("utf-8") + b":" + realm.encode("utf-8") + b":" + password).digest()


def _digest_md5_verify(password: bytes, raw: bytes, params: _Params) -> bool:
    return hmac.compare_digest(_digest_md5_secret(password, params), raw)


def _cram_verify(password: bytes, raw: bytes, params: _Params) -> bool:
    return hmac.compare_digest(cram_md5.hmac_md5_context(password), raw)


def _cram_generate(password: bytes, params: _Params) -> bytes:
    return cram_md5.hmac_md5_context(password)


def _plain_verify(password: bytes, raw: bytes, params: _Params) -> bool:
    return hmac.compare_digest(password, raw)


def _plain_generate(password: bytes, params: _Params) -> bytes:
    return password


# --- PBKDF2 and SCRAM --------------------------------------------------------

_PBKDF2_ROUNDS = 5000
_SALT_CHARS = string.ascii_letters + string.digits + "./"
_PBKDF2_RE = re.compile(rb"\$1\$([^$]*)\$([0-9]+)\$((?:[0-9a-fA-F]{2})+)")


def _random_text(length: int) -> str:
    return "".join(_SALT_CHARS[b % len(_SALT_CHARS)] for b in os.urandom(length))


def _pbkdf2_verify(password: bytes, raw: bytes, params: _Params) -> bool:
    """Dovecot's ``$1$salt$rounds$hex``: PBKDF2-HMAC-SHA1, 20-byte key."""
    match = _PBKDF2_RE.fullmatch(raw)
    if match is None:
        raise InvalidHashError("PBKDF2 password is not $1$salt$rounds$hex")
    salt, rounds, expected = match.group(1), int(match.group(2)), bytes.fromhex(match.group(3).decode())
    if rounds < 1:
        raise InvalidHashError("PBKDF2 rounds must be positive")
    key = hashlib.pbkdf2_hmac("sha1", password, salt, rounds, len(expected) or 20)
    return hmac.compare_digest(key, expected)


def _pbkdf2_generate(password: bytes, params: _Params) -> bytes:
    rounds = params.rounds or _PBKDF2_ROUNDS
    if rounds < 1:
        raise HashGenerationError("rounds must be positive")
    salt = _random_text(16)
    key = hashlib.pbkdf2_hmac("sha1", password, salt.encode("ascii"), rounds, 20)
    return f"$1${salt}${rounds}${key.hex()}".encode("ascii")


_SCRAM_ROUNDS = 4096


def _scram_scheme(algorithm: str, name: str) -> tuple[Callable[[bytes, bytes, _Params], bool],
                                                      Callable[[bytes, _Params], bytes]]:
    """RFC 5802 §3: StoredKey = H(HMAC(SaltedPassword, "Client Key"))."""

    def keys(password: bytes, salt: bytes, rounds: int) -> tuple[bytes, bytes]:
        salted = hashlib.pbkdf2_hmac(algorithm, password, salt, rounds)
        client_key = hmac.new(salted, b"Client Key", algorithm).digest()
        server_key = hmac.new(salted, b"Server Key", algorithm).digest()
        return hashlib.new(algorithm, client_key).digest(), server_key

    def verify(password: bytes, raw: bytes, params: _Params) -> bool:
        fields = raw.split(b",")
        if len(fields) != 4 or not fields[0].isdigit() or int(fields[0]) < 1:
            raise InvalidHashError(f"{name} password is not rounds,salt,StoredKey,ServerKey")
        try:
            salt, stored, server = (binascii.a2b_base64(f, strict_mode=True) for f in fields[1:])
        except binascii.Error as exc:
            raise InvalidHashError(f"{name} password has invalid base64 data") from exc
        stored_key, server_key = keys(password, salt, int(fields[0]))
        return hmac.compare_digest(stored_key, stored) & hmac.compare_digest(server_key, server)

    def generate(password: bytes, params: _Params) -> bytes:
        # Dovecot 2.3 always writes 4096 iterations and ignores -r.
        salt = os.urandom(16)
        stored_key, server_key = keys(password, salt, _SCRAM_ROUNDS)
        parts = [str(_SCRAM_ROUNDS).encode("ascii")] + [base64.b64encode(v) for v in (salt, stored_key, server_key)]
        return b",".join(parts)

    return verify, generate


# --- Argon2 ------------------------------------------------------------------

_ARGON2_SALT_LEN = 16
_ARGON2_HASH_LEN = 32
_MIB = 1024  # argon2 memory is counted in KiB


def _argon2_costs(kind: argon2.low_level.Type, rounds: int | None) -> tuple[int, int]:
    """(time cost, memory KiB) as Dovecot 2.3 picks them from ``-r``.

    Dovecot uses libsodium's limits: Argon2id defaults to t=3 with 64 MiB,
    3 rounds take 256 MiB and 4 or more 1 GiB (fewer than 3 rounds are
    raised to 3); Argon2i defaults to t=4 with 32 MiB, 6 rounds take 128 MiB,
    8 or more 512 MiB, and fewer than 3 rounds are refused.
    """
    if kind is argon2.low_level.Type.ID:
        if rounds is None:
            return 3, 64 * _MIB
        if rounds < 1:
            raise HashGenerationError("rounds must be positive")
        memory = 64 * _MIB if rounds < 3 else 256 * _MIB if rounds == 3 else 1024 * _MIB
        return max(rounds, 3), memory
    if rounds is None:
        return 4, 32 * _MIB
    if rounds < 3:
        raise HashGenerationError("ARGON2I needs at least 3 rounds")
    memory = 32 * _MIB if rounds < 6 else 128 * _MIB if rounds < 8 else 512 * _MIB
    return rounds, memory


def _argon2_scheme(kind: argon2.low_level.Type) -> tuple[Callable[[bytes, bytes, _Params], bool],
                                                         Callable[[bytes, _Params], bytes]]:
    def verify(password: bytes, raw: bytes, params: _Params) -> bool:
        # The variant is read from the string, as libsodium's verifier does:
        # Dovecot accepts an $argon2i$ string stored as {ARGON2ID} and back.
        if raw.startswith(b"$argon2id$"):
            stored_kind = argon2.low_level.Type.ID
        elif raw.startswith(b"$argon2i$"):
            stored_kind = argon2.low_level.Type.I
        else:
            raise InvalidHashError("not an $argon2i$ or $argon2id$ hash")
        try:
            return argon2.low_level.verify_secret(raw, password, stored_kind)
        except argon2.exceptions.VerifyMismatchError:
            return False
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError) as exc:
            raise InvalidHashError("invalid Argon2 hash") from exc

    def generate(password: bytes, params: _Params) -> bytes:
        time_cost, memory_cost = _argon2_costs(kind, params.rounds)
        return argon2.low_level.hash_secret(
            password, os.urandom(_ARGON2_SALT_LEN), time_cost=time_cost, memory_cost=memory_cost,
            parallelism=1, hash_len=_ARGON2_HASH_LEN, type=kind,
        )

    return verify, generate


# --- the scheme table --------------------------------------------------------


def _build_schemes() -> dict[str, _Scheme]:
    table: list[_Scheme] = []

    def add(name: str, encoding: Encoding, raw_len: int,
            ops: tuple[Callable[[bytes, bytes, _Params], bool], Callable[[bytes, _Params], bytes]]) -> None:
        table.append(_Scheme(name, encoding, raw_len, ops[0], ops[1]))

    bcrypt = _crypt_generator("$2y$", 5, True, 4, 31)
    add("SHA512-CRYPT", "none", 0, (_crypt_verify, _crypt_generator("$6$", 0, True)))
    add("SHA256-CRYPT", "none", 0, (_crypt_verify, _crypt_generator("$5$", 0, True)))
    add("BLF-CRYPT", "none", 0, (_crypt_verify, bcrypt))
    add("MD5-CRYPT", "none", 0, (_crypt_verify, _crypt_generator("$1$", 0, False)))
    add("CRYPT", "none", 0, (_crypt_verify, bcrypt))
    add("DES-CRYPT", "none", 0, (_crypt_verify, _crypt_generator("", 0, False)))
    add("MD5", "none", 0, (_md5_verify, _crypt_generator("$1$", 0, False)))
    add("ARGON2ID", "none", 0, _argon2_scheme(argon2.low_level.Type.ID))
    add("ARGON2I", "none", 0, _argon2_scheme(argon2.low_level.Type.I))
    add("PBKDF2", "none", 0, (_pbkdf2_verify, _pbkdf2_generate))
    add("SCRAM-SHA-1", "none", 0, _scram_scheme("sha1", "SCRAM-SHA-1"))
    add("SCRAM-SHA-256", "none", 0, _scram_scheme("sha256", "SCRAM-SHA-256"))
    add("SHA", "base64", 20, _digest_scheme("sha1"))
    add("SHA1", "base64", 20, _digest_scheme("sha1"))
    add("SHA256", "base64", 32, _digest_scheme("sha256"))
    add("SHA512", "base64", 64, _digest_scheme("sha512"))
    add("SSHA", "base64", 0, _salted_scheme("sha1", "SSHA"))
    add("SSHA256", "base64", 0, _salted_scheme("sha256", "SSHA256"))
    add("SSHA512", "base64", 0, _salted_scheme("sha512", "SSHA512"))
    add("SMD5", "base64", 0, _salted_scheme("md5", "SMD5"))
    add("PLAIN-MD5", "hex", 16, _digest_scheme("md5"))
    add("LDAP-MD5", "base64", 16, _digest_scheme("md5"))
    add("DIGEST-MD5", "hex", 16, (_digest_md5_verify, _digest_md5_secret))
    add("CRAM-MD5", "hex", cram_md5.CONTEXT_LEN, (_cram_verify, _cram_generate))
    add("HMAC-MD5", "hex", cram_md5.CONTEXT_LEN, (_cram_verify, _cram_generate))
    add("PLAIN", "none", 0, (_plain_verify, _plain_generate))
    add("CLEAR", "none", 0, (_plain_verify, _plain_generate))
    add("CLEARTEXT", "none", 0, (_plain_verify, _plain_generate))
    return {s.name: s for s in table}


_SCHEMES = _build_schemes()
_SUFFIXES: dict[str, Encoding] = {"HEX": "hex", "B64": "base64", "BASE64": "base64"}
_PLAINTEXT = frozenset({"PLAIN", "CLEAR", "CLEARTEXT"})
_HEX_DIGITS = frozenset(string.hexdigits)


def schemes() -> list[str]:
    """Every scheme name this module knows, in a stable order."""
    return list(_SCHEMES)


def lookup_scheme(name: str) -> tuple[str, Encoding | None]:
    """(canonical scheme name, forced encoding or None) for ``NAME[.suffix]``."""
    base, dot, suffix = name.partition(".")
    forced: Encoding | None = None
    if dot:
        forced = _SUFFIXES.get(suffix.upper())
        if forced is None:
            raise UnknownSchemeError("Unknown scheme")
    canonical = base.upper()
    if canonical not in _SCHEMES:
        raise UnknownSchemeError("Unknown scheme")
    return canonical, forced


def split_scheme(stored: str, default_scheme: str = DEFAULT_PASS_SCHEME) -> tuple[str, str]:
    """(scheme as written, data) of a stored password.

    ``{SCHEME}data`` gives its scheme; an unprefixed ``$1$salt$hash[$…]`` is
    MD5-CRYPT cut after the hash (Dovecot's password_get_scheme); anything
    else is ``default_scheme``.
    """
    if stored.startswith("$1$"):
        first = stored.find("$", 3)
        if first != -1:
            second = stored.find("$", first + 1)
            return "MD5-CRYPT", stored if second == -1 else stored[:second]
    if stored.startswith("{"):
        end = stored.find("}")
        if end != -1:
            return stored[1:end], stored[end + 1 :]
    return default_scheme, stored


def _decode(data: str, scheme: _Scheme, forced: Encoding | None) -> bytes:
    """Undo the scheme's text encoding, as Dovecot's password_decode does."""
    encoding = forced or scheme.encoding
    guessed = False
    if forced is None and encoding != "none" and scheme.raw_len:
        # Hex and base64 lengths tell the two apart for fixed-size digests.
        encoding = "hex" if len(data) == scheme.raw_len * 2 else "base64"
        guessed = True
    raw: bytes | None = None
    if encoding == "none":
        raw = data.encode("utf-8", "surrogatepass")
    if encoding == "hex":
        if len(data) % 2 == 0 and all(c in _HEX_DIGITS for c in data):
            raw = bytes.fromhex(data)
        elif not guessed:
            raise DecodeError("Input isn't valid HEX encoded data")
        else:
            encoding = "base64"  # some lengths fit both encodings
    if encoding == "base64":
        try:
            raw = binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise DecodeError("Input isn't valid base64 encoded data") from exc
    assert raw is not None
    if scheme.raw_len and len(raw) != scheme.raw_len:
        raise DecodeError(f"Input length isn't valid ({len(raw)} instead of {scheme.raw_len})")
    return raw


def _encode(raw: bytes, scheme: _Scheme, forced: Encoding | None) -> str:
    encoding = forced or scheme.encoding
    if encoding == "hex":
        return raw.hex()
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8", "surrogateescape")


def verify(password: str | bytes, stored: str, default_scheme: str = DEFAULT_PASS_SCHEME,
           user: str | None = None) -> bool:
    """Whether ``password`` matches ``stored``, compared in constant time.

    ``default_scheme`` applies to data without a ``{SCHEME}`` prefix;
    ``user`` is the login, needed by DIGEST-MD5 only.  Raises
    :class:`UnknownSchemeError` or :class:`InvalidHashError` (never a
    match) for a stored value that cannot be checked.
    """
    name, data = split_scheme(stored, default_scheme)
    canonical, forced = lookup_scheme(name)
    scheme = _SCHEMES[canonical]
    raw = _decode(data, scheme, forced)
    return scheme.verify(_to_bytes(password), raw, _Params(user=user))


def hash_password(password: str | bytes, scheme: str = DEFAULT_HASH_SCHEME,
                  rounds: int | None = None, user: str | None = None) -> str:
    """A new stored password ``{SCHEME}data`` for ``password``.

    ``scheme`` may carry an encoding suffix (``SHA256.HEX``); the prefix is
    written in upper case, as ``doveadm pw`` writes it.  ``rounds`` is the
    cost for the schemes that have one (SHA-crypt rounds, bcrypt log2 cost,
    Argon2 passes, PBKDF2 iterations) and is ignored by the others.
    """
    canonical, forced = lookup_scheme(scheme)
    spec = _SCHEMES[canonical]
    raw = spec.generate(_to_bytes(password), _Params(user=user, rounds=rounds))
    return "{" + scheme.upper() + "}" + _encode(raw, spec, forced)


def cram_md5_context(stored: str, default_scheme: str = DEFAULT_PASS_SCHEME) -> bytes | None:
    """The 32-byte HMAC-MD5 context SASL CRAM-MD5 needs, or None.

    Available from ``{CRAM-MD5}``/``{HMAC-MD5}`` data and from plaintext
    schemes; any other (one-way) scheme cannot answer CRAM-MD5, which
    Dovecot reports as "Requested CRAM-MD5 scheme, but we have only X".
    Pass the result to :func:`mailhorn.auth.cram_md5.cram_md5_response`.
    """
    name, data = split_scheme(stored, default_scheme)
    canonical, forced = lookup_scheme(name)
    spec = _SCHEMES[canonical]
    raw = _decode(data, spec, forced)
    if canonical in ("CRAM-MD5", "HMAC-MD5"):
        return raw
    if canonical in _PLAINTEXT:
        return cram_md5.hmac_md5_context(raw)
    return None
