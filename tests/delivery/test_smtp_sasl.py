"""SMTP client authentication: a relayhost with smtp_sasl_password_maps, over STARTTLS.

The server is the scripted AUTH peer (PLAIN and LOGIN after STARTTLS, AUTH
required before MAIL), as seed 002 configures a provider's smarthost.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.delivery.request import Action
from mailhorn.delivery.smtp_sasl import Credentials, SaslExchange, choose_mechanism
from tests.delivery.auth_peer import AuthPeer
from tests.delivery.smtp_helpers import make_config, make_request, run_agent
from tests.delivery.test_smtp_tls import make_ca, make_server_cert


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "certs"
    d.mkdir()
    _, ca, ca_key = make_ca(d)
    return make_server_cert(d, ca, ca_key, "smtp.provider.test")


@pytest.fixture
def peer(certs: tuple[Path, Path]) -> Iterator[AuthPeer]:
    p = AuthPeer(cert=certs[0], key=certs[1], users={"mario@provider.test": "segreto"}, require_auth=True)
    yield p
    p.stop()


def _passwords(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "sasl_passwd"
    path.write_text("".join(line + "\n" for line in lines))
    return f"texthash:{path}"


def test_relayhost_authenticates_over_starttls(tmp_path: Path, peer: AuthPeer) -> None:
    config = make_config(tmp_path, smtp_sasl_auth_enable="yes", smtp_tls_security_level="encrypt",
                         smtp_sasl_security_options="noanonymous",
                         smtp_sasl_password_maps=_passwords(tmp_path, f"{peer.nexthop} mario@provider.test:segreto"))
    [statuses] = run_agent(config, [make_request(peer.nexthop, ["friend@example.net"])])
    assert statuses[0].action is Action.DELIVERED, statuses[0].text
    assert peer.seen.logins == [("mario@provider.test", "segreto")]
    auth = [(tls, c) for tls, c in peer.seen.commands if c.startswith("AUTH")]
    assert auth and all(tls for tls, _ in auth)
    assert [m[1] for m in peer.seen.messages] == [["friend@example.net"]]


def test_noplaintext_keeps_the_password_off_the_wire(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    # The server offers PLAIN before TLS and no STARTTLS: with the default
    # smtp_sasl_security_options (noplaintext, noanonymous) the password stays home.
    peer = AuthPeer(auth_plain=("PLAIN", "LOGIN"), users={"mario@provider.test": "segreto"}, require_auth=True)
    try:
        config = make_config(tmp_path, smtp_sasl_auth_enable="yes",
                             smtp_sasl_password_maps=_passwords(tmp_path, f"{peer.nexthop} mario@provider.test:segreto"))
        [statuses] = run_agent(config, [make_request(peer.nexthop, ["friend@example.net"])])
        s = statuses[0]
        assert s.action is Action.DEFERRED and s.dsn == "4.7.0"
        assert s.text == ("SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]: "
                          "no mechanism available")
        assert not any(c.startswith("AUTH") for _, c in peer.seen.commands)
        assert peer.seen.logins == [] and peer.seen.messages == []
    finally:
        peer.stop()


def test_tls_security_options_apply_once_tls_is_up(tmp_path: Path, peer: AuthPeer) -> None:
    # noplaintext before TLS, but smtp_sasl_tls_security_options allows PLAIN under TLS.
    config = make_config(tmp_path, smtp_sasl_auth_enable="yes", smtp_tls_security_level="may",
                         smtp_sasl_tls_security_options="noanonymous",
                         smtp_sasl_password_maps=_passwords(tmp_path, f"{peer.nexthop} mario@provider.test:segreto"))
    [statuses] = run_agent(config, [make_request(peer.nexthop, ["friend@example.net"])])
    assert statuses[0].action is Action.DELIVERED, statuses[0].text


def test_wrong_password_defers_with_the_server_reply(tmp_path: Path, peer: AuthPeer) -> None:
    config = make_config(tmp_path, smtp_sasl_auth_enable="yes", smtp_tls_security_level="encrypt",
                         smtp_sasl_tls_security_options="noanonymous",
                         smtp_sasl_password_maps=_passwords(tmp_path, f"{peer.nexthop} mario@provider.test:wrong"))
    [statuses] = run_agent(config, [make_request(peer.nexthop, ["friend@example.net"])])
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.7.8"
    assert s.text == ("SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 Error: "
                      "authentication failed: authentication failure")
    assert peer.seen.messages == []


def test_mechanism_filter_and_sender_dependent_credentials(tmp_path: Path, peer: AuthPeer) -> None:
    config = make_config(tmp_path, smtp_sasl_auth_enable="yes", smtp_tls_security_level="encrypt",
                         smtp_sasl_tls_security_options="noanonymous", smtp_sasl_mechanism_filter="login",
                         smtp_sender_dependent_authentication="yes",
                         smtp_sasl_password_maps=_passwords(tmp_path, "sender@example.org mario@provider.test:segreto",
                                                            f"{peer.nexthop} someone:else"))
    [statuses] = run_agent(config, [make_request(peer.nexthop, ["friend@example.net"])])
    assert statuses[0].action is Action.DELIVERED, statuses[0].text
    assert [c for _, c in peer.seen.commands if c.startswith("AUTH")] == ["AUTH LOGIN"]
    assert peer.seen.logins == [("mario@provider.test", "segreto")]


def test_no_entry_means_no_auth(tmp_path: Path, peer: AuthPeer) -> None:
    config = make_config(tmp_path, smtp_sasl_auth_enable="yes", smtp_tls_security_level="encrypt",
                         smtp_sasl_password_maps=_passwords(tmp_path, "[other.example]:587 a:b"))
    [statuses] = run_agent(config, [make_request(peer.nexthop, ["friend@example.net"])])
    s = statuses[0]
    assert s.action is Action.BOUNCED and s.dsn == "5.7.0"
    assert s.text == ("host 127.0.0.1[127.0.0.1] said: 530 5.7.0 Authentication required "
                      "(in reply to MAIL FROM command)")


def test_mechanism_choice_and_exchange() -> None:
    assert choose_mechanism(["PLAIN", "LOGIN"], [], "noplaintext, noanonymous") is None
    assert choose_mechanism(["PLAIN", "LOGIN", "CRAM-MD5"], [], "noplaintext") == "CRAM-MD5"
    assert choose_mechanism(["PLAIN", "LOGIN"], [], "noanonymous") == "PLAIN"
    assert choose_mechanism(["PLAIN", "LOGIN"], ["login"], "") == "LOGIN"
    ex = SaslExchange("PLAIN", Credentials("user", "pass"))
    assert ex.initial() == "AUTH PLAIN AHVzZXIAcGFzcw=="
    login = SaslExchange("LOGIN", Credentials("user", "pass"))
    assert login.initial() == "AUTH LOGIN"
    assert login.respond("VXNlcm5hbWU6") == "dXNlcg=="
    assert login.respond("UGFzc3dvcmQ6") == "cGFzcw=="
    cram = SaslExchange("CRAM-MD5", Credentials("tim", "tanstaaftanstaaf"))
    # RFC 2195 §2 example.
    challenge = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
    assert cram.respond(challenge) == "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
