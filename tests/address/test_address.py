"""Behaviour of the address layer beyond the golden tables: hostile input,
bounds, recipient_delimiter (postconf(5)), and round trips."""

from __future__ import annotations

import pytest

from mailhorn.address import (
    AddressError,
    Extension,
    hostname_problem,
    parse_address_list,
    parse_mailbox,
    parse_path,
    quote_local,
    split_extension,
    split_external,
    split_internal,
    strip_extension,
    unquote_local,
)
from mailhorn.address.header import MAX_DEPTH


def test_split_at_last_unquoted_at() -> None:
    assert split_external('"a@b"@example.com') == ('"a@b"', "example.com")
    assert split_external('"a@b"') == ('"a@b"', None)
    assert split_external("a\\@b@c") == ("a\\@b", "c")
    assert split_internal("a@b@example.com") == ("a@b", "example.com")
    assert split_internal("user") == ("user", None)


@pytest.mark.parametrize(
    "internal",
    ["a b@x", "a@b@x", '"@x', "\\@x", "a..b@x", "", "plain@x", "é ü@x", "(x)@y", "a\r@x"],
)
def test_quote_unquote_round_trip(internal: str) -> None:
    assert unquote_local(quote_local(internal)) == internal


def test_deeply_nested_comment_is_bounded() -> None:
    ok = "(" * MAX_DEPTH + ")" * MAX_DEPTH + " a@b.example"
    assert [a.address for a in parse_address_list(ok)] == ["a@b.example"]
    with pytest.raises(AddressError, match="nested deeper"):
        parse_address_list("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(AddressError):
        parse_address_list("(" * 100000)


def test_oversized_inputs_are_errors_not_crashes() -> None:
    with pytest.raises(AddressError, match="longer than"):
        parse_address_list("a" * 200000)
    with pytest.raises(AddressError, match="too long"):
        parse_mailbox("a" * 100000 + "@example.com")
    with pytest.raises(AddressError, match="path longer than 256"):
        parse_path("<" + "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ">")
    assert hostname_problem("a." * 130 + "com") == f"bad length {len('a.' * 130 + 'com')} for {('a.' * 130)[:100]}..."


def test_many_quotes_and_commas_parse_in_one_pass() -> None:
    # Large but within the header limit: every element is parsed once.
    value = ", ".join(f'"u{i}" <u{i}@example.com>' for i in range(3000))
    found = parse_address_list(value)
    assert len(found) == 3000 and found[-1].address == "u2999@example.com"
    assert len(parse_address_list('"' * 100000)) == 1


@pytest.mark.parametrize(
    "text",
    ["\x00", "a\x00@b", '"\x00"@b', "<\x00>", "a@b\x00", "\udcff@b", "(\x00)", "[\x00]", '"a\\\x00"'],
)
def test_nul_and_controls_raise_address_error_only(text: str) -> None:
    for func in (parse_mailbox, parse_path, parse_address_list):
        try:
            func(text)
        except AddressError as exc:
            assert "\x00" not in str(exc)


def test_recipient_delimiter_first_of_several() -> None:
    # postconf(5) recipient_delimiter: with several characters, the first one
    # found in the local part separates the extension.
    assert split_extension("user-foo+bar", "+-") == Extension("user", "-", "foo+bar")
    assert split_extension("user+foo-bar", "+-") == Extension("user", "+", "foo-bar")
    assert split_extension("user", "+") is None
    assert split_extension("user", "") is None
    assert split_extension("user+", "+") == Extension("user", "+", "")
    assert split_extension("+ext", "+") is None  # would leave an empty local part


def test_recipient_delimiter_reserved_names() -> None:
    for name in ("postmaster", "MAILER-DAEMON", "double-bounce"):
        assert split_extension(name, "-+") is None
    assert split_extension("bounces", "-", double_bounce_sender="bounces") is None


def test_owner_request_special() -> None:
    # postconf(5) owner_request_special: owner-foo and foo-request are not
    # split when '-' is a delimiter and the parameter is yes.
    assert split_extension("owner-list", "-") is None
    assert split_extension("list-request", "-") is None
    assert split_extension("-request", "-") is None
    assert split_extension("owner-list", "-", owner_request_special=False) == Extension("owner", "-", "list")
    assert split_extension("list-request", "+-", owner_request_special=False) == Extension("list", "-", "request")
    assert split_extension("owner+x", "+") == Extension("owner", "+", "x")


def test_strip_extension() -> None:
    assert strip_extension("user+tag@example.com", "+") == "user@example.com"
    assert strip_extension("user+tag", "+") == "user"
    assert strip_extension("owner-x@example.com", "-") == "owner-x@example.com"
    assert strip_extension("a+b@c+d.example", "+") == "a@c+d.example"


def test_postmaster_without_domain_only_when_allowed() -> None:
    with pytest.raises(AddressError):
        parse_path("<postmaster>")
    box = parse_path("<POSTMASTER>", postmaster=True)
    assert box is not None and box.address == "POSTMASTER"
