"""Virtual alias expansion (virtual(5), cleanup's 1:n mapping) on real tables.

The expectations are virtual(5)'s TABLE SEARCH ORDER and ADDRESS EXTENSION
sections and postconf(5) virtual_alias_expansion_limit /
virtual_alias_recursion_limit; the forwardings are seed 003's examples.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.address.resolve import AddressClass, Resolver
from mailhorn.address.virtual import DuplicateFilter, VirtualAliasError, VirtualAliases, expand_recipients
from mailhorn.config.load import load

VIRTUAL = """\
# seed 003 forwardings
proba@d3xt3r01.tk        dexter@d3xt3r01.tk
info@example.com         sales@example.com, billing@anotherdomain.tld
@example.com             thomas@example.com
# seed 003's email2email map: existing mailboxes map to themselves, so the
# catch-all does not swallow them
sales@example.com        sales@example.com
thomas@example.com       thomas@example.com
@mapped.example          @anotherdomain.tld
# seed 000: one address to several
email_entrada@domain.example  email_destino1@domain.example, email_destino2@domain.example
# chains, self-reference, local names
a@chain.example          b@chain.example
b@chain.example          c@chain.example
keep@self.example        keep@self.example, copy@other.example
loop1@loop.example       loop2@loop.example
loop2@loop.example       loop1@loop.example
root                     hugo
joe@ext.example          joseph@ext.example
dup@dup.example          x@dup.example, x@dup.example, y@dup.example
"""


def make(tmp_path: Path, extra: str = "") -> tuple[VirtualAliases, Resolver]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "virtual").write_text(VIRTUAL)
    (etc / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        "myhostname = host.example.org\n"
        "mydomain = example.org\n"
        "inet_interfaces = loopback-only\n"
        "virtual_alias_maps = texthash:$config_directory/virtual\n"
        "virtual_alias_domains = d3xt3r01.tk, aliasonly.example\n"
        + extra
    )
    config = load(str(etc))
    resolver = Resolver(config)
    return VirtualAliases(config, resolver.is_local), resolver


def test_seed003_forwardings(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path)
    assert aliases.expand("proba@d3xt3r01.tk") == ["dexter@d3xt3r01.tk"]
    assert aliases.expand("info@example.com") == ["sales@example.com", "billing@anotherdomain.tld"]
    assert aliases.expand("sales@example.com") == ["sales@example.com"]
    # The catch-all takes every other address of the domain ...
    assert aliases.expand("nobody@example.com") == ["thomas@example.com"]
    # ... and domain mapping keeps the local part.
    assert aliases.expand("thomas@mapped.example") == ["thomas@anotherdomain.tld"]
    assert aliases.expand("Thomas.X@mapped.example") == ["Thomas.X@anotherdomain.tld"]


def test_one_to_many_and_recursion(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path)
    assert aliases.expand("email_entrada@domain.example") == [
        "email_destino1@domain.example",
        "email_destino2@domain.example",
    ]
    assert aliases.expand("a@chain.example") == ["c@chain.example"]
    assert aliases.expand("unlisted@nowhere.example") == ["unlisted@nowhere.example"]


def test_self_reference_is_kept(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path)
    assert aliases.expand("keep@self.example") == ["keep@self.example", "copy@other.example"]


def test_loop_hits_the_recursion_limit(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path, "virtual_alias_recursion_limit = 20\n")
    with pytest.raises(VirtualAliasError) as info:
        aliases.expand("loop1@loop.example")
    assert info.value.status == "4.6.0"


def test_expansion_limit(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path, "virtual_alias_expansion_limit = 1\n")
    with pytest.raises(VirtualAliasError):
        aliases.expand("info@example.com")


def test_bare_user_only_in_local_domains(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path)
    # virtual(5): "user" matches only when the domain is $myorigin or local;
    # the result is completed with @$myorigin.
    assert aliases.expand("root@host.example.org") == ["hugo@host.example.org"]
    assert aliases.expand("root@localhost") == ["hugo@host.example.org"]
    assert aliases.expand("root@elsewhere.example") == ["root@elsewhere.example"]


def test_extension_propagation(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path, "recipient_delimiter = +-\n")
    assert aliases.expand("joe+lists@ext.example") == ["joseph+lists@ext.example"]
    assert aliases.expand("joe-lists@ext.example") == ["joseph-lists@ext.example"]
    # A catch-all match does not propagate the extension; domain mapping keeps
    # the whole local part.
    assert aliases.expand("x+y@example.com") == ["thomas@example.com"]
    assert aliases.expand("x+y@mapped.example") == ["x+y@anotherdomain.tld"]


def test_extension_not_propagated_when_disabled(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path, "recipient_delimiter = +\npropagate_unmatched_extensions = canonical\n")
    assert aliases.expand("joe+lists@ext.example") == ["joseph@ext.example"]


def test_duplicates_are_dropped(tmp_path: Path) -> None:
    aliases, _ = make(tmp_path)
    pairs = expand_recipients(aliases, ["dup@dup.example", "x@dup.example"], 1000)
    assert [final for _, final in pairs] == ["x@dup.example", "y@dup.example"]
    assert pairs[0] == ("dup@dup.example", "x@dup.example")
    small = DuplicateFilter(1)
    assert small.first_time("a") and not small.first_time("a")
    assert small.first_time("b") and small.first_time("b")


def test_unaliased_address_in_alias_domain_is_unknown(tmp_path: Path) -> None:
    aliases, resolver = make(tmp_path)
    assert aliases.expand("ghost@aliasonly.example") == ["ghost@aliasonly.example"]
    r = resolver.resolve("ghost@aliasonly.example")
    assert r.address_class is AddressClass.ALIAS
    assert (r.transport, r.nexthop) == ("error", "5.1.1 User unknown in virtual alias table")


def test_table_failure_defers(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "down.cf").write_text(
        "hosts = 127.0.0.1:1\nuser = nobody\npassword = x\ndbname = vmail\n"
        "query = SELECT destination FROM forwardings WHERE source='%s'\n"
    )
    (etc / "main.cf").write_text(
        "myhostname = host.example.org\nvirtual_alias_maps = mysql:$config_directory/down.cf\n"
    )
    config = load(str(etc))
    aliases = VirtualAliases(config, Resolver(config).is_local)
    with pytest.raises(VirtualAliasError) as info:
        aliases.expand("proba@d3xt3r01.tk")
    assert info.value.status == "4.3.0"
