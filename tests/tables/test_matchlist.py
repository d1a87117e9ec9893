"""Match lists (mailhorn.tables.matchlist) against postconf(5)'s documented rules.

Postfix's own match-list test programs are not installed, so the semantics
are asserted from the documentation (postconf(5) mynetworks, relay_domains,
parent_domain_matches_subdomains, owner_request_special; match_list(3)), and
net/mask semantics are compared with the real ``postmap -q`` on a cidr:
table (tests/tables/test_matchlist_oracle.py).

Golden cases: ``tests/golden/matchlist/NAME.in`` has a header (``type:``,
``param:``, ``patterns:``), ``---``, and one case per line; ``NAME.ref`` has
``CASE: YES|NO|ERROR`` per case, the format of Postfix's match-list test
programs. ``MAILHORN_REGOLD=1`` rewrites the ``.ref`` files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.config.maincf import Entry
from mailhorn.config.params import PARAMS
from mailhorn.tables.base import OpenOptions, TableRetry
from mailhorn.tables.matchlist import (
    AddrMatchList,
    DomainList,
    MatchList,
    MatchListError,
    MatchListRetry,
    NamadrList,
    StringList,
    domain_list_from_config,
    namadr_list_from_config,
    parent_style,
    parse_network,
)
from mailhorn.tables.registry import TABLE_TYPES

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "matchlist"


def config(**values: str) -> Config:
    return Config([Entry(name, value, "main.cf", i + 1) for i, (name, value) in enumerate(values.items())])


def golden_names() -> list[str]:
    return sorted(p.stem for p in GOLDEN.glob("*.in"))


def _answer(lst: MatchList, case: str) -> str:
    args = case.split()
    try:
        if isinstance(lst, NamadrList):
            found = lst.match(args[0], args[1])
        elif isinstance(lst, DomainList):
            found = lst.match(args[0])
        elif isinstance(lst, AddrMatchList):
            found = lst.match(args[0])
        else:
            assert isinstance(lst, StringList)
            found = lst.match(args[0])
    except MatchListRetry:
        return "ERROR"
    return "YES" if found else "NO"


@pytest.mark.parametrize("name", golden_names())
def test_matchlist_golden(name: str) -> None:
    text = (GOLDEN / f"{name}.in").read_text(encoding="utf-8")
    header, _, body = text.partition("\n---\n")
    fields = dict(
        line.split(": ", 1) for line in header.splitlines() if line and not line.startswith("#")
    )
    cfg = config()
    param = fields["param"]
    kinds: dict[str, type[MatchList]] = {
        "domain": DomainList, "namadr": NamadrList, "string": StringList, "addr": AddrMatchList,
    }
    lst = kinds[fields["type"]](param, fields["patterns"], cfg, parent=parent_style(cfg, param))
    got = "".join(f"{case}: {_answer(lst, case)}\n" for case in body.splitlines() if case and not case.startswith("#"))
    ref = GOLDEN / f"{name}.ref"
    if os.environ.get("MAILHORN_REGOLD") == "1":
        ref.write_text(got, encoding="utf-8")
    assert got == ref.read_text(encoding="utf-8")


def test_parent_style_default_follows_postconf_default() -> None:
    # postconf -d parent_domain_matches_subdomains (Postfix 3.7).
    cfg = config()
    assert PARAMS["parent_domain_matches_subdomains"].name == "parent_domain_matches_subdomains"
    for param in ("debug_peer_list", "fast_flush_domains", "mynetworks", "permit_mx_backup_networks",
                  "qmqpd_authorized_clients", "relay_domains", "smtpd_access_maps"):
        assert parent_style(cfg, param), param
    for param in ("mydestination", "virtual_alias_domains", "virtual_mailbox_domains",
                  "smtpd_client_event_limit_exceptions"):
        assert not parent_style(cfg, param), param


def test_domain_list_from_config_reads_parent_style() -> None:
    cfg = config(relay_domains="example.com", mydestination="example.com",
                 parent_domain_matches_subdomains="mydestination")
    assert domain_list_from_config(cfg, "mydestination").match("a.example.com")
    assert not domain_list_from_config(cfg, "relay_domains").match("a.example.com")
    assert domain_list_from_config(cfg, "relay_domains").match("example.com")


def test_first_match_wins_and_negation_means_no() -> None:
    # postconf(5) mynetworks: "The list is matched left to right, and the
    # search stops on the first match. Specify "!pattern" to exclude".
    lst = DomainList("relay_domains", "!a.example, example", config(), parent=True)
    assert not lst.match("a.example")
    assert not lst.match("x.a.example")
    assert lst.match("b.example")
    assert DomainList("p", "!!a.example", config()).match("a.example")


def test_file_patterns(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("# comment\none.example two.example,\n  three.example\n!four.example\nfour.example five.example\n")
    lst = DomainList("mydestination", f"zero.example {listed}", config())
    for name in ("zero.example", "one.example", "two.example", "three.example", "five.example"):
        assert lst.match(name), name
    assert not lst.match("four.example")
    neg = DomainList("mydestination", f"!{listed}, .example", config())
    assert not neg.match("one.example")
    assert neg.match("four.example")  # !!four.example
    assert neg.match("other.example")


def test_missing_file_is_a_temporary_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    lst = DomainList("relay_domains", f"first.example {missing} last.example", config(), parent=True)
    assert lst.match("first.example")
    with pytest.raises(MatchListRetry) as info:
        lst.match("last.example")
    assert isinstance(info.value, TableRetry)
    assert str(info.value) == f"relay_domains: nofile:{missing}: table lookup problem"


def test_no_pattern_after_bang(tmp_path: Path) -> None:
    with pytest.raises(MatchListError, match="mynetworks: no pattern after '!'"):
        NamadrList("mynetworks", "127.0.0.1 !", config())
    listed = tmp_path / "nets"
    listed.write_text("127.0.0.1\n\n!\n")
    with pytest.raises(MatchListError) as info:
        NamadrList("mynetworks", str(listed), config())
    assert info.value.file == str(listed) and info.value.line == 3 and info.value.param == "mynetworks"


def test_recursive_file_is_bounded(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.write_text(f"{loop}\n")
    with pytest.raises(MatchListError, match="nested deeper"):
        DomainList("mydestination", str(loop), config())


def test_table_lookup_keys(tmp_path: Path) -> None:
    source = tmp_path / "domains"
    source.write_text("example.com ok\n.sub.example ok\n")
    spec = f"texthash:{source}"
    plain = DomainList("mydestination", spec, config())
    assert plain.match("example.com")
    assert not plain.match("a.example.com")  # key ".example.com" is absent
    assert plain.match("a.sub.example")  # key ".sub.example"
    parent = DomainList("relay_domains", spec, config(), parent=True)
    assert parent.match("a.b.example.com")  # keys a.b.example.com, b.example.com, example.com
    assert not parent.match("a.sub.example")  # keys a.sub.example, sub.example, example


def test_table_results_are_ignored() -> None:
    # postconf(5) mynetworks: "a "type:table" lookup table is matched when a
    # table entry matches a lookup string (the lookup result is ignored)".
    lst = StringList("p", "inline:{a=REJECT, b=OK}", config())
    assert lst.match("a") and lst.match("B") and not lst.match("c")


class _Failing:
    type = "failing"

    def __init__(self, name: str) -> None:
        self.name = name

    def lookup(self, key: str) -> str | None:
        raise TableRetry(f"{self.name}: server gone")


def open_failing(name: str, cfg: Config, options: OpenOptions) -> _Failing:
    return _Failing(name)


def test_table_retry_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TABLE_TYPES, "failing", f"{__name__}:open_failing")
    lst = NamadrList("mynetworks", "127.0.0.1 failing:x", config())
    assert lst.match("localhost", "127.0.0.1")
    with pytest.raises(MatchListRetry, match="mynetworks: failing:x: table lookup problem"):
        lst.match("localhost", "127.0.0.2")


def test_unopenable_table_is_a_temporary_error() -> None:
    lst = DomainList("relay_domains", "example.com nosuchtype:x", config(), parent=True)
    assert lst.match("example.com")
    with pytest.raises(MatchListRetry, match="relay_domains: nosuchtype:x: table lookup problem"):
        lst.match("other.example")


def test_cidr_table_gets_the_address(tmp_path: Path) -> None:
    source = tmp_path / "nets.cidr"
    source.write_text("192.0.2.0/24 OK\n[2001:db8::]/32 OK\n")
    lst = namadr_list_from_config(config(mynetworks=f"cidr:{source}"), "mynetworks")
    assert lst.match("unknown", "192.0.2.77")
    assert lst.match("unknown", "2001:db8::5")
    assert not lst.match("unknown", "198.51.100.1")


def test_bad_patterns_report_postfix_texts() -> None:
    assert parse_network("1.2.3.4/33") == 'bad mask length in "1.2.3.4/33"'
    assert parse_network("127.0.0.1/8") == (
        'non-null host address bits in "127.0.0.1/8", perhaps you should use "127.0.0.0/8" instead'
    )
    assert parse_network("[::1/x]") == 'bad mask value in "::1/x"'
    assert parse_network("[::1]x") == 'garbage after "[::1]"'
    assert parse_network("[::1") == "missing ']' character after \"[::1\""
    assert parse_network("1.2.3/8") == 'bad network value in "1.2.3/8"'
    assert parse_network("[2001:db8::1]/32") == (
        'non-null host address bits in "2001:db8::1/32", perhaps you should use "2001:db8::/32" instead'
    )
    lst = AddrMatchList("mynetworks", "127.0.0.1/8", config())
    with pytest.raises(MatchListRetry) as info:
        lst.match("127.0.0.1")
    assert str(info.value) == (
        'mynetworks: non-null host address bits in "127.0.0.1/8", perhaps you should use "127.0.0.0/8" instead'
    )
