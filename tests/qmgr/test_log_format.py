"""The delay figures and record layout of qmgr and agent log lines (Postfix's log_adhoc/format_tv)."""

from __future__ import annotations

import pytest

from mailhorn.queue.qmgr_log import Delays, format_delay, format_tv, recipient_line


@pytest.mark.parametrize(("sec", "usec", "max_digits", "text"), [
    (0, 0, 2, "0"),
    (0, 120000, 2, "0.12"),
    (0, 5000, 2, "0.01"),
    (0, 4000, 2, "0"),
    (0, 5000, 6, "0.005"),
    (0, 1, 6, "0.000001"),
    (1, 234000, 2, "1.2"),
    (9, 960000, 2, "10"),
    (12, 400000, 2, "12"),
    (12, 600000, 2, "13"),
    (3, 0, 2, "3"),
    (0, 995000, 2, "1"),
    (2, 50000, 0, "2"),
])
def test_format_tv(sec: int, usec: int, max_digits: int, text: str) -> None:
    assert format_tv(sec, usec, 2, max_digits) == text


def test_recipient_line_layout() -> None:
    delays = Delays(0.03, 0.01, 0.0, 0.08)
    line = recipient_line("3F1A92C0D4", "b@example.com", "B@example.com", "local", delays,
                          "2.0.0", "sent", "delivered to maildir")
    # orig_to is left out when it differs only in case.
    assert line == ("3F1A92C0D4: to=<b@example.com>, relay=local, delay=0.12, "
                    "delays=0.03/0.01/0/0.08, dsn=2.0.0, status=sent (delivered to maildir)")
    line = recipient_line("3F1A92C0D4", "b@example.com", "alias@example.com", "none",
                          Delays(1.5, 0, 0, 0), "5.1.1", "bounced", "User unknown")
    assert line == ("3F1A92C0D4: to=<b@example.com>, orig_to=<alias@example.com>, relay=none, "
                    "delay=1.5, delays=1.5/0/0/0, dsn=5.1.1, status=bounced (User unknown)")
    assert format_delay(-3) == "0"
