"""crypt(3) through the system libxcrypt (``libcrypt.so.1``).

What it does
    :func:`crypt` hashes a passphrase with a setting string exactly as the C
    library's ``crypt(3)`` does, so hashes made by other programs on the same
    system (``openssl passwd``, ``mkpasswd``, MariaDB's ``ENCRYPT()``,
    Dovecot's ``doveadm pw``, ``/etc/shadow``) verify here byte for byte:
    traditional DES (13 characters), ``$1$`` MD5-crypt, ``$5$``/``$6$``
    SHA-crypt, ``$2a$``/``$2b$``/``$2y$`` bcrypt and ``$y$`` yescrypt.
    :func:`gensalt` makes a new setting string (prefix, cost, random salt)
    with ``crypt_gensalt_rn``.

Why ctypes
    The stdlib ``crypt`` module is deprecated (PEP 594) and gone in Python
    3.13; the library itself is always present on Debian (package
    ``libcrypt1``).  ``crypt_rn`` is reentrant: each call gets its own
    ``struct crypt_data``, so hashing may run in worker threads.

Errors
    :class:`CryptUnavailableError` when ``libcrypt.so.1`` cannot be loaded;
    :class:`CryptError` when a setting is invalid or a hash cannot be made
    (libxcrypt returns NULL, or a failure token ``*0``/``*1`` for
    ``crypt_r``).  Callers that verify a password treat a failure as "no
    match".
"""

from __future__ import annotations

import ctypes
import os
import threading

#: Library soname of libxcrypt (Debian package libcrypt1).
LIBCRYPT_SONAME = "libcrypt.so.1"

#: ``sizeof(struct crypt_data)`` in libxcrypt: output[384] + setting[384] +
#: input[512] + reserved[767] + initialized[1] + internal[30720] (crypt.h).
CRYPT_DATA_SIZE = 32768
#: ``CRYPT_OUTPUT_SIZE`` and ``CRYPT_GENSALT_OUTPUT_SIZE`` from crypt.h.
CRYPT_OUTPUT_SIZE = 384
CRYPT_GENSALT_OUTPUT_SIZE = 192


class CryptError(Exception):
    """crypt(3) refused a setting or failed to produce a hash."""


class CryptUnavailableError(Exception):
    """The system libxcrypt could not be loaded.

    Not a :class:`CryptError`: a broken system must not read as "no match".
    """


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """Load libxcrypt once and declare the two functions used."""
    global _lib
    with _lock:
        if _lib is None:
            try:
                lib = ctypes.CDLL(LIBCRYPT_SONAME, use_errno=True)
            except OSError as exc:
                raise CryptUnavailableError(
                    f"cannot load {LIBCRYPT_SONAME} (libxcrypt, Debian package libcrypt1): {exc}"
                ) from exc
            lib.crypt_rn.restype = ctypes.c_char_p
            lib.crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
            lib.crypt_gensalt_rn.restype = ctypes.c_char_p
            lib.crypt_gensalt_rn.argtypes = [
                ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int,
                ctypes.c_char_p, ctypes.c_int,
            ]
            _lib = lib
        return _lib


def _failed(result: bytes | None) -> bool:
    """Whether libxcrypt signalled failure: NULL or a ``*`` failure token."""
    return result is None or result.startswith(b"*")


def crypt(phrase: bytes, setting: str) -> str:
    """``crypt(phrase, setting)``; raises :class:`CryptError` on failure.

    A phrase containing NUL cannot be passed to the C library (it would be
    cut short silently), so it is refused.
    """
    if b"\0" in phrase:
        raise CryptError("password contains a NUL byte")
    try:
        setting_bytes = setting.encode("ascii")
    except UnicodeEncodeError as exc:
        raise CryptError("hash setting is not ASCII") from exc
    if b"\0" in setting_bytes:
        raise CryptError("hash setting contains a NUL byte")
    lib = _library()
    data = ctypes.create_string_buffer(CRYPT_DATA_SIZE)
    result: bytes | None = lib.crypt_rn(phrase, setting_bytes, data, CRYPT_DATA_SIZE)
    if _failed(result):
        err = ctypes.get_errno()
        reason = os.strerror(err) if err else "invalid setting"
        raise CryptError(f"crypt() failed: {reason}")
    assert result is not None
    return result.decode("ascii")


def gensalt(prefix: str, count: int = 0) -> str:
    """A new setting string for ``prefix`` (``$6$``, ``$2y$``, ``""`` = DES).

    ``count`` is the cost (rounds for SHA-crypt, log2 rounds for bcrypt);
    0 selects libxcrypt's default.  Random bytes come from the kernel
    (``crypt_gensalt_rn`` with a NULL ``rbytes``).
    """
    lib = _library()
    out = ctypes.create_string_buffer(CRYPT_GENSALT_OUTPUT_SIZE)
    result: bytes | None = lib.crypt_gensalt_rn(
        prefix.encode("ascii"), count, None, 0, out, CRYPT_GENSALT_OUTPUT_SIZE
    )
    if _failed(result):
        raise CryptError(f"crypt_gensalt() refused prefix {prefix!r} with cost {count}")
    assert result is not None
    return result.decode("ascii")
