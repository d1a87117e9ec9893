"""Command parsing: syntax decisions and reply texts of the Postfix 3.7 smtpd
(each case was sent to the real smtpd; "accepted" means it passed the
syntax stage there)."""

from __future__ import annotations

import pytest

from mailhorn.smtp import reply as R
from mailhorn.smtp.commands import (
    Auth,
    Bdat,
    Hello,
    Mail,
    MailParams,
    Path,
    Rcpt,
    RcptParams,
    Unknown,
    Vrfy,
    Xforward,
    decode_xtext,
    encode_xtext,
    looks_like_header,
    parse_command,
    split_words,
)
from mailhorn.smtp.reply import Reply, SmtpReplyError


def reject(line: str) -> Reply:
    with pytest.raises(SmtpReplyError) as info:
        parse_command(line)
    return info.value.reply


RCPT_ACCEPTED = {
    "RCPT TO:<@a,@b:u@c>": "u@c",
    'RCPT TO:<"a b"@c>': '"a b"@c',
    "RCPT TO:<a\x01b@c>": "a\x01b@c",
    "RCPT TO:a@b>": "a@b",
    "RCPT TO: <a@b>": "a@b",
    "RCPT TO:<a@b> ": "a@b",
    "rcpt to:<a@b>": "a@b",
    "RCPT  TO:<a@b>": "a@b",
    "RCPT TO:<<a@b>>": "a@b",
    "RCPT TO:<a@@b>": "a@@b",
    "RCPT TO:<@a:u@c>": "u@c",
    "RCPT TO:<a.@b>": "a.@b",
    "RCPT TO:<a@[1.2.3.4]>": "a@[1.2.3.4]",
    "RCPT TO:<a@>": "a@",
    "RCPT TO:<@b>": "@b",
    "RCPT TO:<a@bé>": "a@bé",
    "RCPT TO:<a(c)@b>": "a(c)@b",
    "RCPT TO:<postmaster>": "postmaster",
    "RCPT TO:<" + "a" * 100 + "@b>": "a" * 100 + "@b",
}

RCPT_REJECTED = {
    "RCPT TO:<a@b>@c": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a@b": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a@b c>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a b@c>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a\x00b@c>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<@a,u@c>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a@b>x": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a,b@c>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<a@b,c@d>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:<>": R.BAD_RECIPIENT_SYNTAX,
    "RCPT TO:": R.SYNTAX_RCPT,
    "RCPT": R.SYNTAX_RCPT,
    "RCPT TO:a@b c@d": R.unsupported_option("c@d"),
    "RCPT TO:<x@y> FOO": R.unsupported_option("FOO"),
    "RCPT TO:<x@y> NOTIFY=x": R.BAD_NOTIFY_SYNTAX,
    "RCPT TO:<x@y> NOTIFY=NEVER,SUCCESS": R.BAD_NOTIFY_SYNTAX,
    "RCPT TO:<a@b> NOTIFY=SUCCESS NOTIFY=FAILURE": R.BAD_NOTIFY_SYNTAX,
    "RCPT TO:<a@b> NOTIFY=": R.BAD_NOTIFY_SYNTAX,
    "RCPT TO:<x@y> ORCPT=x": R.BAD_ORCPT_SYNTAX,
    "RCPT TO:<a@b> ORCPT=rfc822;a@b ORCPT=rfc822;c@d": R.BAD_ORCPT_SYNTAX,
    "RCPT TO:<a@b> ORCPT=rfc822;a+4": R.BAD_ORCPT_SYNTAX,
}

MAIL_REJECTED = {
    "MAIL FROM:<a@b> SIZE=abc": R.BAD_SIZE_SYNTAX,
    "MAIL FROM:<a@b> SIZE=": R.BAD_SIZE_SYNTAX,
    "MAIL FROM:<a@b> BODY=BINARYMIME": R.unsupported_option("BODY=BINARYMIME"),
    "MAIL FROM:<a@b> BODY=x": R.unsupported_option("BODY=x"),
    "MAIL FROM:<a@b> FOO=bar": R.unsupported_option("FOO=bar"),
    "MAIL FROM:<a@b> SMTPUTF8=x": R.unsupported_option("SMTPUTF8=x"),
    "MAIL FROM:<a@b> =x": R.unsupported_option("=x"),
    "MAIL FROM:a b": R.unsupported_option("b"),
    "MAIL FROM:<a@b> RET=FULL RET=HDRS": R.BAD_RET_SYNTAX,
    "MAIL FROM:<a@b> RET=x": R.BAD_RET_SYNTAX,
    "MAIL FROM:<a@b> ENVID=x ENVID=y": R.BAD_ENVID_SYNTAX,
    "MAIL FROM:<a@b> ENVID=": R.BAD_ENVID_SYNTAX,
    "MAIL FROM:<a@b> ENVID=a+2": R.BAD_ENVID_SYNTAX,
    "MAIL FROM:<a@b> ENVID=a+4g": R.BAD_ENVID_SYNTAX,
    "MAIL FROM:<a@b> SIZE=99999999999999999999999999": R.SIZE_EXCEEDS_FS_LIMIT,
    "MAIL FROM:": R.SYNTAX_MAIL,
    "MAIL FROM": R.SYNTAX_MAIL,
    "MAIL TO:<a@b>": R.SYNTAX_MAIL,
    "MAIL": R.SYNTAX_MAIL,
    "MAIL FROM:<a@b>x": R.BAD_SENDER_SYNTAX,
    "MAIL FROM:<a@b>@c": R.BAD_SENDER_SYNTAX,
}

OTHER_REJECTED = {
    "": R.BAD_SYNTAX,
    " ": R.BAD_SYNTAX,
    "HELO": R.SYNTAX_HELO,
    "EHLO": R.SYNTAX_EHLO,
    "STARTTLS x": R.SYNTAX_STARTTLS,
    "ETRN": R.SYNTAX_ETRN,
    "VRFY": R.SYNTAX_VRFY,
    "RSET x": R.SYNTAX_RSET,
    "AUTH": R.SYNTAX_AUTH,
    "AUTH PLAIN a b": R.SYNTAX_AUTH,
    "XFORWARD": R.SYNTAX_XFORWARD,
    "XFORWARD NAME": R.SYNTAX_XFORWARD,
    "XCLIENT": R.SYNTAX_XCLIENT,
    "BDAT": R.SYNTAX_BDAT,
    "BDAT x": R.SYNTAX_BDAT,
    "BDAT -5 LAST": R.SYNTAX_BDAT,
    "BDAT 5 LAST X": R.SYNTAX_BDAT,
    "BDAT 5 FIRST": R.SYNTAX_BDAT,
    "BDAT 99999999999999999999999 LAST": R.SYNTAX_BDAT,
}


@pytest.mark.parametrize(("line", "address"), RCPT_ACCEPTED.items())
def test_rcpt_accepted(line: str, address: str) -> None:
    cmd = parse_command(line)
    assert isinstance(cmd, Rcpt)
    assert cmd.path.address == address


@pytest.mark.parametrize(("line", "expected"), [*RCPT_REJECTED.items(), *MAIL_REJECTED.items(), *OTHER_REJECTED.items()])
def test_rejected_with_postfix_reply(line: str, expected: Reply) -> None:
    assert reject(line) == expected


def test_reply_texts() -> None:
    assert R.BAD_NOTIFY_SYNTAX.render() == b"501 5.5.4 Error: Bad NOTIFY parameter syntax\r\n"
    assert R.unsupported_option("FOO=bar").render() == b"555 5.5.4 Unsupported option: FOO=bar\r\n"
    assert R.SYNTAX_BDAT.render() == b"521 5.5.4 Syntax: BDAT count [LAST]\r\n"
    assert R.SYNTAX_HELO.render() == b"501 Syntax: HELO hostname\r\n"


def test_mail_parameters() -> None:
    cmd = parse_command("mail from:<a@b> size=00001 body=8bitmime SMTPUTF8 RET=hdrs ENVID=a+2B+41 AUTH=<>")
    assert cmd == Mail(Path("a@b"), MailParams(1, "8BITMIME", True, "HDRS", "a+A", "<>"))
    cmd = parse_command("MAIL FROM:<a@b> SIZE=1 SIZE=2 BODY=7BIT BODY=8BITMIME ENVID=a=b")
    assert isinstance(cmd, Mail) and cmd.params.size == 2 and cmd.params.body == "8BITMIME"
    assert cmd.params.envid == "a=b"
    assert parse_command("MAIL FROM:<>") == Mail(Path(""), MailParams())
    assert parse_command("MAIL FROM: fribeiro") == Mail(Path("fribeiro"), MailParams())
    assert parse_command("MAIL FROM:<a@b>  SIZE=1") == Mail(Path("a@b"), MailParams(size=1))
    assert parse_command("MAIL FROM:<a@b> BODY=BINARYMIME", binarymime=True) == Mail(
        Path("a@b"), MailParams(body="BINARYMIME")
    )


def test_source_route_dropped() -> None:
    cmd = parse_command("MAIL FROM:<@a,@b:u@c>")
    assert cmd == Mail(Path("u@c", ("a", "b")), MailParams())


def test_rcpt_parameters() -> None:
    cmd = parse_command("RCPT TO:<x@y> NOTIFY=success,delay ORCPT=rfc822;a+2Bb@c")
    assert cmd == Rcpt(Path("x@y"), RcptParams(("SUCCESS", "DELAY"), ("rfc822", "a+b@c")))
    assert parse_command("RCPT TO:<x@y> NOTIFY=never ORCPT=foo;bar") == Rcpt(
        Path("x@y"), RcptParams(("NEVER",), ("foo", "bar"))
    )
    cmd = parse_command("RCPT TO:<a@b> ORCPT=rfc822;")
    assert isinstance(cmd, Rcpt) and cmd.params.orcpt == ("rfc822", "")


def test_path_parts() -> None:
    p = Path('"a b\\"c"@example.org')
    assert p.local_part == 'a b"c' and p.domain == "example.org"
    assert not p.overlong
    assert Path("a" * 65 + "@b").overlong
    assert Path("a@" + "b" * 256).overlong
    assert Path("").is_null and not Path("x").is_null


def test_other_commands() -> None:
    assert parse_command("HELO a b") == Hello("HELO", "a b")
    assert parse_command("ehlo  client.example ") == Hello("EHLO", "client.example")
    assert parse_command("LHLO x", lmtp=True) == Hello("LHLO", "x")
    assert isinstance(parse_command("LHLO x"), Unknown)
    assert isinstance(parse_command("EHLO x", lmtp=True), Unknown)
    assert parse_command("BDAT 05 last") == Bdat(5, True)
    assert parse_command("BDAT  0") == Bdat(0, False)
    assert parse_command("VRFY user SMTPUTF8") == Vrfy("user", True)
    assert parse_command("VRFY a b") == Vrfy("a b", False)
    assert parse_command("AUTH plain dGVzdA==") == Auth("PLAIN", "dGVzdA==")
    assert parse_command("XFORWARD NAME=spike.porcupine.org ADDR=168.100.189.2") == Xforward(
        (("NAME", "spike.porcupine.org"), ("ADDR", "168.100.189.2"))
    )
    assert parse_command("FOO bar") == Unknown("FOO", "FOO bar")


def test_header_lookalike() -> None:
    assert looks_like_header("Subject: x")
    assert looks_like_header("From: a@b")
    assert not looks_like_header("MAIL FROM:<a@b>")
    assert not looks_like_header("NOOP")


def test_xtext_round_trip() -> None:
    for text in ["", "plain", "a+b=c", "é ü", "\x00\x7f"]:
        assert decode_xtext(encode_xtext(text)) == text
    assert decode_xtext("a b") is None
    assert decode_xtext("+") is None
    assert decode_xtext("+2b") == "+"


def test_split_words_quotes() -> None:
    assert split_words('TO:<"a b"@c> X=1') == ['TO:<"a b"@c>', "X=1"]
    assert split_words('TO:<"a\\" b"@c>') == ['TO:<"a\\" b"@c>']
    assert split_words('"unterminated x') == ['"unterminated x']
