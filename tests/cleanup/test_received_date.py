"""The RFC 5322 dates cleanup writes (mailhorn/cleanup/received.py mail_date)."""

from __future__ import annotations

import time

import pytest

from mailhorn.cleanup.received import mail_date


def test_dates_follow_the_time_zone_even_within_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    when = 1700000000.25
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    try:
        assert mail_date(when) == "Tue, 14 Nov 2023 22:13:20 +0000 (UTC)"
        assert mail_date(when + 0.5) == "Tue, 14 Nov 2023 22:13:20 +0000 (UTC)"
        assert mail_date(when + 1) == "Tue, 14 Nov 2023 22:13:21 +0000 (UTC)"
        monkeypatch.setenv("TZ", "JST-9")  # POSIX rules: no zoneinfo files needed
        time.tzset()
        assert mail_date(when + 1) == "Wed, 15 Nov 2023 07:13:21 +0900 (JST)"
        monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")
        time.tzset()
        # Space-padded day, as Postfix's mail_date() (%e).
        assert mail_date(1699000000) == "Fri,  3 Nov 2023 04:26:40 -0400 (EDT)"
    finally:
        monkeypatch.undo()
        time.tzset()
