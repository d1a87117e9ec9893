"""Authentication: password schemes, password databases and SASL.

:mod:`mailhorn.auth.passwords` verifies and makes stored passwords in
Dovecot's ``{SCHEME}`` formats; :mod:`mailhorn.auth.crypt` binds the system
crypt(3); :mod:`mailhorn.auth.cram_md5` keeps HMAC-MD5 contexts for SASL
CRAM-MD5.
"""
