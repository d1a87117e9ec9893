"""SASL server mechanisms: RFC 4616 and RFC 2195 examples, LOGIN, initial responses, errors."""

from __future__ import annotations

import base64

import pytest

from mailhorn.auth import cram_md5
from mailhorn.auth.sasl import (
    Challenge, CramMd5, Credentials, Login, Plain, SaslCancelled, SaslRefused, SaslSyntaxError,
    configured_mechanisms, cram_md5_challenge, decode_response, new_mechanism, offered_mechanisms,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- PLAIN (RFC 4616) -----------------------------------------------------------


def test_plain_rfc4616_example_with_initial_response() -> None:
    # RFC 4616 §4 example 1: empty authzid, authcid "tim", password "tanstaaftanstaaf".
    mech = Plain()
    result = mech.start(b64(b"\0tim\0tanstaaftanstaaf"))
    assert result == Credentials("PLAIN", "tim", "", password="tanstaaftanstaaf")
    assert mech.done


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mech = Plain()
    challenge = mech.start(None)
    assert challenge == Challenge(b"") and challenge.encoded() == ""
    assert mech.step(b64(b"tim\0tim\0secret")) == Credentials("PLAIN", "tim", "tim", password="secret")


def test_plain_refuses_other_authzid() -> None:
    # RFC 4616 §4 example 2: Kurt acting as Ursel needs a master-user right, which nobody has.
    with pytest.raises(SaslRefused):
        Plain().start(b64(b"Ursel\0Kurt\0xipj3plmq"))


@pytest.mark.parametrize("message", [b"\0\0pw", b"\0tim\0", b"tim\0pw", b"a\0b\0c\0d", b"\0tim\xff\0pw"])
def test_plain_malformed(message: bytes) -> None:
    with pytest.raises(SaslSyntaxError):
        Plain().start(b64(message))


def test_plain_utf8_and_empty_initial_response() -> None:
    assert Plain().start(b64("\0jos\u00e9\0p\u00e4ss".encode())).authcid == "jos\u00e9"  # type: ignore[union-attr]
    with pytest.raises(SaslSyntaxError):
        Plain().start("=")  # an empty initial response is no PLAIN message


def test_cancel_and_bad_base64() -> None:
    mech = Plain()
    mech.start(None)
    with pytest.raises(SaslCancelled):
        mech.step("*")
    for bad in ("AGZvbwBiYXI", "AGZv bwBiYXI=", "%%%", "AGZvbwBiYXI==="):
        m = Plain()
        m.start(None)
        with pytest.raises(SaslSyntaxError):
            m.step(bad)


def test_decode_response_limits() -> None:
    assert decode_response("=") == b""
    assert decode_response("dGVzdA==\r\n") == b"test"
    with pytest.raises(SaslSyntaxError):
        decode_response("A" * 16, limit=12)


def test_steps_out_of_turn() -> None:
    mech = Plain()
    with pytest.raises(SaslSyntaxError):
        mech.step(b64(b"\0a\0b"))  # before start
    mech.start(b64(b"\0a\0b"))
    with pytest.raises(SaslSyntaxError):
        mech.step(b64(b"\0a\0b"))  # after the end
    with pytest.raises(SaslSyntaxError):
        mech.start(None)


# --- LOGIN ----------------------------------------------------------------------


def test_login_challenges() -> None:
    mech = Login()
    first = mech.start(None)
    assert isinstance(first, Challenge) and first.encoded() == "VXNlcm5hbWU6"
    second = mech.step(b64(b"dexter@d3xt3r01.tk"))
    assert isinstance(second, Challenge) and second.encoded() == "UGFzc3dvcmQ6"
    assert mech.step(b64(b"parolamail")) == Credentials("LOGIN", "dexter@d3xt3r01.tk", password="parolamail")


def test_login_initial_response_is_the_user_name() -> None:
    mech = Login()
    assert mech.start(b64(b"tim")) == Challenge(b"Password:")
    assert mech.step(b64(b"pw")) == Credentials("LOGIN", "tim", password="pw")


def test_login_empty_password_is_passed_on_empty_user_refused() -> None:
    mech = Login()
    mech.start(b64(b"tim"))
    assert mech.step("") == Credentials("LOGIN", "tim", password="")
    with pytest.raises(SaslSyntaxError):
        Login().start("=")


# --- CRAM-MD5 (RFC 2195) ----------------------------------------------------------


def test_cram_md5_rfc2195_example() -> None:
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    mech = CramMd5("postoffice.reston.mci.net", challenge=challenge)
    first = mech.start(None)
    assert isinstance(first, Challenge)
    assert first.encoded() == "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
    # RFC 2195 §2: the client answers "tim b913a602c7eda7a495b4e6e7334d3890", base64 as below.
    final = mech.step("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw")
    assert final == Credentials("CRAM-MD5", "tim", challenge=challenge, response="b913a602c7eda7a495b4e6e7334d3890")
    # The digest is HMAC-MD5 keyed with the shared secret, as the stored context computes it.
    context = cram_md5.hmac_md5_context(b"tanstaaftanstaaf")
    assert cram_md5.cram_md5_response(context, challenge) == "b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_challenge_form_and_errors() -> None:
    challenge = cram_md5_challenge("mail.example.com", random=lambda n: b"\0" * (n - 1) + b"\x07",
                                   clock=lambda: 1700000000.5)
    assert challenge == b"<7.1700000000@mail.example.com>"
    with pytest.raises(SaslSyntaxError):
        CramMd5("h").start(b64(b"joe x"))  # no initial response for a server-first mechanism
    for bad in (b"joe", b"joe 3dbc88f0", b" 3dbc88f0624776a737b39093f6eb6427", b"joe 3dbc88f0624776a737b39093f6eb642z"):
        mech = CramMd5("h")
        mech.start(None)
        with pytest.raises(SaslSyntaxError):
            mech.step(b64(bad))
    mech = CramMd5("h")
    mech.start(None)
    assert mech.step(b64(b"user name 3DBC88F0624776A737B39093F6EB6427")).authcid == "user name"  # type: ignore[union-attr]


# --- choosing mechanisms ----------------------------------------------------------------


def test_mechanism_table_and_offer() -> None:
    assert isinstance(new_mechanism("plain", "h"), Plain)
    assert isinstance(new_mechanism("CRAM-MD5", "h"), CramMd5)
    with pytest.raises(KeyError):
        new_mechanism("DIGEST-MD5", "h")
    names = configured_mechanisms("plain login, cram-md5 PLAIN")
    assert names == ["PLAIN", "LOGIN", "CRAM-MD5"]
    assert offered_mechanisms(names, plaintext_allowed=False) == ["CRAM-MD5"]
    assert offered_mechanisms(names, plaintext_allowed=True) == names
    with pytest.raises(ValueError, match="gssapi"):
        configured_mechanisms("plain gssapi")
