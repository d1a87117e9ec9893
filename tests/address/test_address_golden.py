"""Golden tables for envelope paths, quoting, header address lists and hostnames.

The expected results follow RFC 5321 §4.1.2/§4.5.3.1, RFC 6531 §3.3, RFC 5322
§3.4 and Postfix's documented behaviour (quote_822_local, valid_hostname);
see each module's docstring.
"""

from __future__ import annotations

from mailhorn.address import (
    AddressError,
    domain_to_ascii,
    domain_to_utf8,
    hostaddr_problem,
    hostname_problem,
    is_fqdn_address,
    is_fqdn_hostname,
    normalize_domain,
    parse_address_list,
    parse_path,
    quote_local,
    unquote_local,
)
from tests.address.golden import check


def _path(text: str, smtputf8: bool) -> str:
    try:
        box = parse_path(text, smtputf8=smtputf8, postmaster=True)
    except AddressError as exc:
        return f"error: {exc.reason}"
    if box is None:
        return "null"
    return f"local={box.local!r} domain={box.domain!r} quoted={box.quoted} utf8={box.utf8} external={box.external!r}"


def render_path(text: str) -> str:
    return f"ascii: {_path(text, False)}\n\tutf8: {_path(text, True)}"


def render_quote(text: str) -> str:
    quoted = quote_local(text)
    return f"quoted={quoted!r} back={unquote_local(quoted) == text}"


def render_unquote(text: str) -> str:
    return f"unquoted={unquote_local(text)!r}"


def render_header(text: str) -> str:
    try:
        found = parse_address_list(text)
    except AddressError as exc:
        return f"error: {exc}"
    if not found:
        return "(none)"
    return " | ".join(f"{a.address!r} name={a.display_name!r} group={a.group!r} ext={a.external!r}" for a in found)


def _try(func: object, text: str) -> str:
    assert callable(func)
    try:
        return repr(func(text))
    except AddressError as exc:
        return f"error: {exc.reason}"


def render_hostname(text: str) -> str:
    return (
        f"hostname={hostname_problem(text)!r} hostaddr={hostaddr_problem(text)!r}\n"
        f"\tfqdn={is_fqdn_hostname(text)} fqdn_utf8={is_fqdn_hostname(text, smtputf8=True)} "
        f"addr_fqdn={is_fqdn_address('u@' + text, smtputf8=True)}\n"
        f"\tascii={_try(domain_to_ascii, text)} utf8={_try(domain_to_utf8, text)} "
        f"normal={_try(normalize_domain, text)}"
    )


def test_path_golden() -> None:
    check("path", render_path)


def test_quote_golden() -> None:
    check("quote", render_quote)


def test_unquote_golden() -> None:
    check("unquote", render_unquote)


def test_header_golden() -> None:
    check("header", render_header)


def test_hostname_golden() -> None:
    check("hostname", render_hostname)
