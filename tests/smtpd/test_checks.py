"""The restriction engine: lists, stages, actions, classes and failures, with exact replies.

(Replies of the restrictions that need no DNS are also compared with the
real Postfix in test_checks_oracle.py.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailhorn.config.load import Config
from mailhorn.smtpd.checks import SmtpdChecks
from mailhorn.smtpd.state import Action, CheckResult, SmtpdState, Stage

BASE = {
    "myhostname": "mx.example.test", "mydomain": "example.test", "compatibility_level": "3.6",
    "inet_interfaces": "127.0.0.1", "mynetworks": "127.0.0.0/8", "local_recipient_maps": "",
    "alias_maps": "", "dns_servers": "[127.0.0.1]:1",
}


def engine(**params: str) -> SmtpdChecks:
    return SmtpdChecks(Config(overrides={**BASE, **params}))


def state(**fields: object) -> SmtpdState:
    values: dict[str, object] = {"client_addr": "192.0.2.9", "helo_name": "client.example.com",
                                 "sender": "s@example.com", "recipient": "u@mx.example.test", "instance": "1"}
    values.update(fields)
    return SmtpdState(**values)  # type: ignore[arg-type]


def check(eng: SmtpdChecks, stage: Stage, st: SmtpdState) -> CheckResult:
    return asyncio.run(eng.check(stage, st))


def reply(eng: SmtpdChecks, stage: Stage = Stage.RCPT, **fields: object) -> str | None:
    result = check(eng, stage, state(**fields))
    return str(result.reply) if result.reply else None


def test_generic_replies_per_stage() -> None:
    assert reply(engine(smtpd_client_restrictions="reject")) == \
        "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied"
    assert reply(engine(smtpd_helo_restrictions="defer")) == \
        "450 4.3.2 <client.example.com>: Helo command rejected: Try again later"
    assert reply(engine(smtpd_sender_restrictions="reject"), sender="") == \
        "554 5.7.1 <>: Sender address rejected: Access denied"
    assert reply(engine(smtpd_data_restrictions="reject"), Stage.DATA) == \
        "554 5.7.1 <DATA>: Data command rejected: Access denied"
    assert reply(engine(smtpd_end_of_data_restrictions="reject"), Stage.END_OF_MESSAGE) == \
        "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied"
    assert reply(engine(smtpd_etrn_restrictions="reject"), Stage.ETRN, etrn_domain="example.com") == \
        "554 5.7.1 <example.com>: Etrn command rejected: Access denied"
    assert reply(engine(reject_code="550", smtpd_recipient_restrictions="reject")) == \
        "550 5.7.1 <u@mx.example.test>: Recipient address rejected: Access denied"


def test_delay_reject() -> None:
    eng = engine(smtpd_client_restrictions="reject")
    assert reply(eng, Stage.CONNECT) is None
    assert reply(eng, Stage.MAIL) is None
    assert reply(eng, Stage.RCPT) is not None
    eager = engine(smtpd_delay_reject="no", smtpd_client_restrictions="reject",
                   smtpd_sender_restrictions="reject")
    assert reply(eager, Stage.CONNECT) == "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied"
    assert reply(eager, Stage.MAIL) == "554 5.7.1 <s@example.com>: Sender address rejected: Access denied"
    assert reply(eager, Stage.RCPT) is None
    # Without HELO the helo restrictions are not applied at RCPT.
    assert reply(engine(smtpd_helo_restrictions="reject"), helo_name=None) is None


def test_ok_ends_one_list_only() -> None:
    eng = engine(smtpd_client_restrictions="permit, reject", smtpd_recipient_restrictions="reject")
    assert reply(eng) == "554 5.7.1 <u@mx.example.test>: Recipient address rejected: Access denied"


def test_relay_restrictions_default_and_order() -> None:
    eng = engine()
    assert reply(eng, recipient="u@elsewhere.test") == "450 4.7.1 <u@elsewhere.test>: Relay access denied"
    assert reply(eng, recipient="u@elsewhere.test", client_addr="127.0.0.5") is None
    assert reply(eng, recipient="u@elsewhere.test", sasl_username="bob") is None
    assert reply(eng) is None
    first = engine(smtpd_relay_restrictions="reject_unauth_destination",
                   smtpd_recipient_restrictions="check_recipient_access inline:{ {u@elsewhere.test=450 nope} }")
    assert reply(first, recipient="u@elsewhere.test") == "554 5.7.1 <u@elsewhere.test>: Relay access denied"
    second = engine(smtpd_relay_restrictions="reject_unauth_destination",
                    smtpd_relay_before_recipient_restrictions="no",
                    smtpd_recipient_restrictions="check_recipient_access inline:{ {u@elsewhere.test=450 nope} }")
    assert reply(second, recipient="u@elsewhere.test") == \
        "450 4.7.1 <u@elsewhere.test>: Recipient address rejected: nope"


def test_warn_if_reject_gives_an_action() -> None:
    eng = engine(smtpd_relay_restrictions="", smtpd_recipient_restrictions="warn_if_reject reject_non_fqdn_recipient, permit")
    result = check(eng, Stage.RCPT, state(recipient="u@nodot"))
    assert result.reply is None
    assert result.actions == (Action("REJECT_WARNING",
                                     "504 5.5.2 <u@nodot>: Recipient address rejected: need fully-qualified address"),)


def test_defer_if_permit_and_reject() -> None:
    assert reply(engine(smtpd_recipient_restrictions="defer_if_permit, permit")) == \
        "450 4.7.0 <u@mx.example.test>: Recipient address rejected: defer_if_permit requested"
    assert reply(engine(smtpd_recipient_restrictions="defer_if_permit, reject")) == \
        "554 5.7.1 <u@mx.example.test>: Recipient address rejected: Access denied"
    assert reply(engine(smtpd_recipient_restrictions="defer_if_reject, reject")) == \
        "450 4.7.0 <u@mx.example.test>: Recipient address rejected: defer_if_reject requested"
    assert reply(engine(smtpd_client_restrictions="defer_if_reject", smtpd_recipient_restrictions="reject")) == \
        "554 5.7.1 <u@mx.example.test>: Recipient address rejected: Access denied"


def test_access_actions() -> None:
    table = ("inline:{ {h=HOLD}, {d=DISCARD}, {r=REDIRECT x@y.test}, {f=FILTER smtp:[127.0.0.1]:10025},"
             " {p=PREPEND X-Seen: yes}, {w=WARN careful}, {i=INFO noted}, {b=BCC copy@y.test},"
             " {t=450 4.2.0 wait}, {n=DUNNO}, {o=OK} }")
    eng = engine(smtpd_sender_restrictions=f"check_sender_access {table}",
                 smtpd_recipient_restrictions="reject")

    def run(sender: str) -> CheckResult:
        return check(eng, Stage.RCPT, state(sender=sender, instance=sender))

    denied = "554 5.7.1 <u@mx.example.test>: Recipient address rejected: Access denied"
    assert str(run("h").reply) == denied
    assert run("h").actions == (Action("HOLD", "<h>: Sender address triggers HOLD action"),)
    assert run("r").actions == (Action("REDIRECT", "x@y.test"),)
    assert run("f").actions == (Action("FILTER", "smtp:[127.0.0.1]:10025"),)
    assert run("p").actions == (Action("PREPEND", "X-Seen: yes"),)
    assert run("w").actions == (Action("WARN", "<w>: Sender address careful"),)
    assert run("i").actions == (Action("INFO", "<i>: Sender address noted"),)
    assert run("b").actions == (Action("BCC", "copy@y.test"),)
    assert str(run("t").reply) == "450 4.2.0 <t>: Sender address rejected: wait"
    assert str(run("n").reply) == denied
    assert str(run("o").reply) == denied
    discard = run("d")
    assert discard.reply is None and discard.actions == (Action("DISCARD", "<d>: Sender address triggers DISCARD action"),)


def test_discard_ends_the_transaction_checks() -> None:
    eng = engine(smtpd_sender_restrictions="check_sender_access inline:{d@example.com=DISCARD}",
                 smtpd_recipient_restrictions="reject", smtpd_data_restrictions="reject")
    st = state(sender="d@example.com")
    assert check(eng, Stage.RCPT, st).reply is None
    st.recipient = "other@mx.example.test"
    assert check(eng, Stage.RCPT, st).reply is None
    assert check(eng, Stage.DATA, st).reply is None
    st.instance, st.sender = "2", "s@example.com"
    assert check(eng, Stage.DATA, st).reply is not None


def test_restriction_classes() -> None:
    eng = engine(smtpd_relay_restrictions="", smtpd_restriction_classes="only_local, nested",
                 only_local="reject_unauth_destination, permit", nested="only_local",
                 smtpd_recipient_restrictions="check_sender_access inline:{s@example.com=nested}, reject")
    assert reply(eng) is None
    assert reply(eng, recipient="u@elsewhere.test") == "554 5.7.1 <u@elsewhere.test>: Relay access denied"
    assert reply(eng, sender="t@example.com") is not None
    loop = engine(smtpd_restriction_classes="a", a="a", smtpd_recipient_restrictions="a")
    assert reply(loop) == "451 4.3.5 Server configuration error"


def test_configuration_errors() -> None:
    assert reply(engine(smtpd_recipient_restrictions="no_such_restriction")) == "451 4.3.5 Server configuration error"
    assert reply(engine(smtpd_recipient_restrictions="check_sender_access")) == "451 4.3.5 Server configuration error"
    assert reply(engine(smtpd_client_restrictions="check_client_access inline:{192.0.2.9=nonsense}")) == \
        "451 4.3.5 Server configuration error"


def test_lookup_failures_defer(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert reply(engine(smtpd_recipient_restrictions=f"check_recipient_access texthash:{missing}")) == \
        "451 4.3.5 <u@mx.example.test>: Recipient address rejected: Server configuration error"
    down = tmp_path / "down.cf"
    down.write_text("hosts = inet:127.0.0.1:1\nuser = u\npassword = p\ndbname = d\n"
                    "query = SELECT 1 FROM t WHERE k='%s'\n")
    assert reply(engine(smtpd_sender_restrictions=f"check_sender_access mysql:{down}")) == \
        "451 4.3.5 <s@example.com>: Sender address rejected: Server configuration error"
    assert reply(engine(smtpd_recipient_restrictions="reject_unlisted_recipient",
                        local_recipient_maps=f"mysql:{down}")) == \
        "451 4.3.0 <u@mx.example.test>: Temporary lookup failure"
    assert reply(engine(mynetworks=f"mysql:{down}", smtpd_recipient_restrictions="permit_mynetworks")) == \
        "451 4.3.0 <unknown[192.0.2.9]>: Temporary lookup failure"


def test_unauth_pipelining() -> None:
    eng = engine(smtpd_data_restrictions="reject_unauth_pipelining")
    assert reply(eng, Stage.DATA, pipelined=False) is None
    assert reply(eng, Stage.DATA, pipelined=True) == \
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"


def test_sender_login_mismatch() -> None:
    eng = engine(smtpd_sender_login_maps="inline:{ {a@example.com=alice, bob}, {@shared.example=carol} }",
                 smtpd_sender_restrictions="reject_sender_login_mismatch")
    assert reply(eng, sender="a@example.com", sasl_username="bob") is None
    assert reply(eng, sender="x@shared.example", sasl_username="carol") is None
    assert reply(eng, sender="a@example.com", sasl_username="eve") == \
        "553 5.7.1 <a@example.com>: Sender address rejected: not owned by user eve"
    assert reply(eng, sender="free@example.com", sasl_username="eve") == \
        "553 5.7.1 <free@example.com>: Sender address rejected: not owned by user eve"
    assert reply(eng, sender="a@example.com") == "553 5.7.1 <a@example.com>: Sender address rejected: not logged in"
    assert reply(eng, sender="free@example.com") is None
    auth_only = engine(smtpd_sender_login_maps="inline:{a@example.com=alice}",
                       smtpd_sender_restrictions="reject_authenticated_sender_login_mismatch")
    assert reply(auth_only, sender="a@example.com") is None
    unauth_only = engine(smtpd_sender_login_maps="inline:{a@example.com=alice}",
                         smtpd_sender_restrictions="reject_unauthenticated_sender_login_mismatch")
    assert reply(unauth_only, sender="free@example.com", sasl_username="eve") is None
    assert reply(unauth_only, sender="a@example.com") is not None


def test_local_recipient_maps_with_delimiter(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice x\n")
    eng = engine(local_recipient_maps=f"texthash:{users}", recipient_delimiter="+")
    assert reply(eng, recipient="alice+list@mx.example.test") is None
    assert reply(eng, recipient="bob@mx.example.test") == \
        "550 5.1.1 <bob@mx.example.test>: Recipient address rejected: User unknown in local recipient table"
    assert reply(eng, recipient="bob@elsewhere.test", client_addr="127.0.0.1") is None
