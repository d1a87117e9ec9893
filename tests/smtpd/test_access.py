"""access(5): the key search order and the classification of results."""

from __future__ import annotations

from mailhorn.smtpd.access import AccessResult, address_keys, domain_keys, hostaddr_keys, parse_action


def test_address_keys_parent_style() -> None:
    keys = list(address_keys("user+ext@mail.example.com", null_key="<>", delimiters="+", parent_style=True))
    assert keys == ["user+ext@mail.example.com", "user@mail.example.com", "mail.example.com", "example.com",
                    "com", "user+ext@", "user@"]


def test_address_keys_dot_style_and_no_delimiter() -> None:
    keys = list(address_keys("user@mail.example.com", null_key="<>", delimiters="", parent_style=False))
    assert keys == ["user@mail.example.com", "mail.example.com", ".example.com", ".com", "user@"]


def test_null_sender_and_pattern_tables() -> None:
    assert list(address_keys("", null_key="<>", delimiters="+", parent_style=True)) == ["<>"]
    assert list(address_keys("", null_key="MAILER-DAEMON", delimiters="", parent_style=True)) == ["MAILER-DAEMON"]
    assert list(address_keys("a+b@x.y", null_key="<>", delimiters="+", parent_style=True, fixed=False)) == [
        "a+b@x.y"]


def test_host_keys() -> None:
    assert list(domain_keys("a.b.example", True)) == ["a.b.example", "b.example", "example"]
    assert list(domain_keys("a.b.example", False)) == ["a.b.example", ".b.example", ".example"]
    assert list(hostaddr_keys("192.0.2.1")) == ["192.0.2.1", "192.0.2", "192.0", "192"]
    assert list(hostaddr_keys("2001:db8:0:1::5")) == ["2001:db8:0:1::5", "2001:db8:0:1", "2001:db8:0",
                                                     "2001:db8", "2001"]
    assert list(hostaddr_keys("192.0.2.1", fixed=False)) == ["192.0.2.1"]


def test_parse_action() -> None:
    assert parse_action("OK") == AccessResult("OK", "")
    assert parse_action("250") == AccessResult("OK", "")
    assert parse_action("reject  some text") == AccessResult("REJECT", "some text")
    assert parse_action("450 4.7.1 later") == AccessResult("NUMERIC", "4.7.1 later", 450)
    assert parse_action("550") == AccessResult("OK", "")
    assert parse_action("REDIRECT a@b") == AccessResult("REDIRECT", "a@b")
    assert parse_action("PREPEND X-A: b") == AccessResult("PREPEND", "X-A: b")
    assert parse_action("defer_if_permit") == AccessResult("DEFER_IF_PERMIT", "")
    assert parse_action("permit_mynetworks, reject") == AccessResult("RESTRICTIONS", "permit_mynetworks, reject")
    assert parse_action("350 odd") == AccessResult("RESTRICTIONS", "350 odd")
