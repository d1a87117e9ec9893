"""HMAC-MD5 precomputed contexts: Dovecot's ``{CRAM-MD5}`` password format.

What it does
    A ``{CRAM-MD5}`` (alias ``{HMAC-MD5}``) password is not a digest of the
    password but the state of HMAC-MD5 (RFC 2104) keyed with it: the MD5
    chaining values (RFC 1321 §3.3 A, B, C, D) after the outer block
    ``K XOR opad`` and after the inner block ``K XOR ipad``, each word as 4
    little-endian bytes, outer first: 32 bytes, stored as 64 hex digits.
    This is the format Dovecot and UW-IMAP keep, and it lets a server answer
    SASL CRAM-MD5 (RFC 2195) without knowing the password:
    :func:`cram_md5_response` resumes both MD5 computations from the stored
    states.

    hashlib cannot start MD5 from a given state, so the MD5 compression
    function is written out here (RFC 1321 §3.4).  It only ever processes a
    challenge and a 16-byte digest, so speed does not matter.

Errors
    :class:`ValueError` for a context that is not 32 bytes.
"""

from __future__ import annotations

import hashlib
import math
import struct

#: Size of a stored context: two MD5 states of four 32-bit words.
CONTEXT_LEN = 32
_BLOCK = 64
_MASK = 0xFFFFFFFF
_INIT = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
#: RFC 1321 §3.4: T[i] = floor(2**32 * abs(sin(i + 1))).
_T = tuple(int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64))
_SHIFTS = ((7, 12, 17, 22), (5, 9, 14, 20), (4, 11, 16, 23), (6, 10, 15, 21))

State = tuple[int, int, int, int]


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _compress(state: State, block: bytes) -> State:
    """One MD5 compression of a 64-byte block (RFC 1321 §3.4)."""
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        rnd = i // 16
        if rnd == 0:
            f = (b & c) | (~b & d)
            g = i
        elif rnd == 1:
            f = (d & b) | (~d & c)
            g = (5 * i + 1) % 16
        elif rnd == 2:
            f = b ^ c ^ d
            g = (3 * i + 5) % 16
        else:
            f = c ^ (b | (~d & _MASK))
            g = (7 * i) % 16
        f = (f + a + _T[i] + x[g]) & _MASK
        a, d, c = d, c, b
        b = (b + _rotl(f, _SHIFTS[rnd][i % 4])) & _MASK
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def _md5_resume(state: State, done: int, data: bytes) -> bytes:
    """MD5 digest of (``done`` bytes already folded into ``state``) + ``data``.

    ``done`` must be a multiple of the 64-byte block size.
    """
    total = done + len(data)
    # RFC 1321 §3.1-3.2: 0x80, zeros to 56 mod 64, then the bit length.
    padded = data + b"\x80" + b"\0" * ((55 - total) % _BLOCK) + struct.pack("<Q", (total * 8) & (2**64 - 1))
    for off in range(0, len(padded), _BLOCK):
        state = _compress(state, padded[off : off + _BLOCK])
    return struct.pack("<4I", *state)


def _hmac_key_block(secret: bytes) -> bytes:
    """RFC 2104 §2: keys longer than the block are hashed, then zero-padded."""
    if len(secret) > _BLOCK:
        secret = hashlib.md5(secret).digest()
    return secret.ljust(_BLOCK, b"\0")


def hmac_md5_context(secret: bytes) -> bytes:
    """The 32-byte stored context for ``secret`` (outer state, inner state)."""
    key = _hmac_key_block(secret)
    outer = _compress(_INIT, bytes(k ^ 0x5C for k in key))
    inner = _compress(_INIT, bytes(k ^ 0x36 for k in key))
    return struct.pack("<8I", *outer, *inner)


def cram_md5_digest(context: bytes, challenge: bytes) -> bytes:
    """HMAC-MD5(key, challenge) computed from the key's stored context."""
    if len(context) != CONTEXT_LEN:
        raise ValueError(f"HMAC-MD5 context must be {CONTEXT_LEN} bytes, not {len(context)}")
    words = struct.unpack("<8I", context)
    outer: State = (words[0], words[1], words[2], words[3])
    inner: State = (words[4], words[5], words[6], words[7])
    inner_digest = _md5_resume(inner, _BLOCK, challenge)
    return _md5_resume(outer, _BLOCK, inner_digest)


def cram_md5_response(context: bytes, challenge: bytes) -> str:
    """The lowercase hex digest a CRAM-MD5 client sends (RFC 2195 §2)."""
    return cram_md5_digest(context, challenge).hex()
