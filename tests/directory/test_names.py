"""Name checks: what is stored for a domain, an address, a transport key or value."""

from __future__ import annotations

import pytest

from mailhorn.directory.store import (
    DirectoryError,
    check_transport,
    normalize_address,
    normalize_domain,
    normalize_transport_key,
    split_destinations,
)


@pytest.mark.parametrize("text, stored", [
    ("Example.COM", "example.com"),
    ("localhost", "localhost"),
    ("a-b.c0.example", "a-b.c0.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("1.example", "1.example"),
    ("a" * 63 + ".example", "a" * 63 + ".example"),
])
def test_domains(text: str, stored: str) -> None:
    assert normalize_domain(text) == stored


@pytest.mark.parametrize("text", ["", ".", "a..b", "-a.b", "a-.b", "a_b.c", "a.b.", "a.123", "a" * 64 + ".b",
                                  ".".join(["a" * 63] * 4), "a b", "a\u200bb.example", "[1.2.3.4]"])
def test_bad_domains(text: str) -> None:
    with pytest.raises(DirectoryError, match="invalid domain name"):
        normalize_domain(text)


def test_addresses() -> None:
    assert normalize_address("Alice.Smith+tag@Example.com") == "alice.smith+tag@example.com"
    assert normalize_address("o'brien@example.com") == "o'brien@example.com"
    assert normalize_address("Jörg@bücher.example") == "jörg@xn--bcher-kva.example"
    assert normalize_address("@Example.com", catchall=True) == "@example.com"
    with pytest.raises(DirectoryError, match="empty local part"):
        normalize_address("@example.com")
    with pytest.raises(DirectoryError, match="longer than 254 octets"):
        normalize_address("a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".ex")
    with pytest.raises(DirectoryError, match="character '@' not allowed"):
        normalize_address("a@b@example.com")


def test_transport_keys_and_values() -> None:
    assert normalize_transport_key("*") == "*"
    assert normalize_transport_key(".Example.com") == ".example.com"
    assert normalize_transport_key("Joe@Example.com") == "joe@example.com"
    assert normalize_transport_key("bücher.example") == "xn--bcher-kva.example"
    for value in [":", "smtp:", ":[10.0.0.1]", "smtp:[1.2.3.4]:2025", "relay:[mail.example.com]",
                  "lmtp:unix:/var/run/dovecot/lmtp", "lmtp:inet:127.0.0.1:24", "error:5.1.1 gone", "local:"]:
        assert check_transport(value) == value
    for bad in ["smtp", " smtp:x", "smtp:x ", "sm/tp:x", "smtp:[x", "smtp:\tx"]:
        with pytest.raises(DirectoryError, match="invalid transport"):
            check_transport(bad)


def test_split_destinations() -> None:
    assert split_destinations(["a@x, b@y", "c@z\td@w", ","]) == ["a@x", "b@y", "c@z", "d@w"]
