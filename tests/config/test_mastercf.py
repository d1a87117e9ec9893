"""master.cf parsing into Service records."""

from __future__ import annotations

import pytest

from mailhorn.config.errors import ConfigError
from mailhorn.config.mastercf import Setting, parse_master_cf, split_endpoint

TEXT = """\
# comment
smtp      inet  n       -       y       -       -       smtpd
[::1]:10025 inet n - - 60? 20 smtpd -v
# inside
  -o { smtpd_recipient_restrictions = permit_mynetworks, reject }
\t-o content_filter=
  -o mynetworks=127.0.0.0/8 extra -o notasetting=1
dovecot unix - n n - - pipe flags=DRhu argv=/usr/lib/dovecot/deliver -d ${user}
"""


def test_columns_and_defaults() -> None:
    master = parse_master_cf(TEXT, "/x/master.cf")
    smtp, filt, dovecot = master.services
    assert (smtp.name, smtp.type, smtp.line) == ("smtp", "inet", 2)
    assert (smtp.private, smtp.unpriv, smtp.chroot, smtp.wakeup, smtp.maxproc) == (False, True, True, 0, None)
    assert (smtp.host, smtp.port) == (None, "smtp")
    assert (filt.host, filt.port, filt.line) == ("::1", "10025", 3)
    assert (filt.private, filt.chroot, filt.wakeup, filt.wakeup_if_used, filt.maxproc) == (False, False, 60, True, 20)
    assert filt.overrides == {
        "smtpd_recipient_restrictions": "permit_mynetworks, reject",
        "content_filter": "",
        "mynetworks": "127.0.0.0/8",
    }
    # Options end at the first plain word, as in Postfix's daemons.
    assert filt.args == ("-v", "extra", "-o", "notasetting=1")
    assert filt.argv[1] == Setting("smtpd_recipient_restrictions", "permit_mynetworks, reject")
    assert dovecot.command == "pipe" and dovecot.args[-1] == "${user}"
    assert (dovecot.unpriv, dovecot.chroot) == (False, False)


@pytest.mark.parametrize(
    "name, expected",
    [("127.0.0.1:10025", ("127.0.0.1", "10025")), ("[::1]:10025", ("::1", "10025")),
     ("smtp", (None, "smtp")), ("*:smtp", (None, "smtp")), ("localhost:587", ("localhost", "587"))],
)
def test_endpoints(name: str, expected: tuple[str | None, str]) -> None:
    assert split_endpoint(name) == expected


@pytest.mark.parametrize(
    "text, line, message",
    [("# c\n\nsmtp inet n - n\n", 3, "bad field count"),
     ("smtp bogus n - n - - smtpd\n", 1, 'invalid type field "bogus"'),
     ("x\n\nsmtp inet q - n - - smtpd\n", None, "bad field count"),
     ("smtp inet n - n 1x - smtpd\n", 1, 'invalid wakeup field "1x"'),
     ("smtp inet n - n - z smtpd\n", 1, 'invalid process_limit field "z"')],
)
def test_errors_name_file_and_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_master_cf(text, "/x/master.cf")
    assert info.value.file == "/x/master.cf"
    if line is not None:
        assert info.value.line == line
    assert message in info.value.message


def test_missing_equals_and_brace_are_warnings() -> None:
    master = parse_master_cf("a unix - - n - - smtpd -o foo -o { x = y\n", "/x/master.cf")
    texts = [w.text for w in master.warnings]
    assert 'missing \'=\' after attribute name: "foo"' in texts
    assert any("missing '}'" in t for t in texts)
    assert master.services[0].overrides == {"x": "y"}
