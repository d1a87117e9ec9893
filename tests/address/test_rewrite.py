"""Canonical mapping and masquerading (canonical(5), postconf(5) masquerade_domains)."""

from __future__ import annotations

from pathlib import Path

from mailhorn.address.resolve import Resolver
from mailhorn.address.rewrite import Canonicalizer, masquerade
from mailhorn.config.load import load


def make(tmp_path: Path, extra: str) -> Canonicalizer:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "canonical").write_text("wietse  Wietse.Venema\n@old.example  @new.example\n")
    (etc / "sender").write_text("root@host.example.org  admin@example.org\n")
    (etc / "main.cf").write_text(
        "myhostname = host.example.org\nmydomain = example.org\n"
        "canonical_maps = texthash:$config_directory/canonical\n"
        "sender_canonical_maps = texthash:$config_directory/sender\n" + extra
    )
    config = load(str(etc))
    return Canonicalizer(config, Resolver(config).is_local)


def test_canonical_maps_and_classes(tmp_path: Path) -> None:
    c = make(tmp_path, "")
    assert c.canonicalize("wietse@host.example.org", "envelope_recipient") == "Wietse.Venema@host.example.org"
    assert c.canonicalize("wietse@elsewhere.example", "envelope_recipient") == "wietse@elsewhere.example"
    assert c.canonicalize("bob@old.example", "header_sender") == "bob@new.example"
    # sender_canonical_maps apply to senders only, before canonical_maps.
    assert c.canonicalize("root@host.example.org", "envelope_sender") == "admin@example.org"
    assert c.canonicalize("root@host.example.org", "envelope_recipient") == "root@host.example.org"


def test_masquerade(tmp_path: Path) -> None:
    assert masquerade("u@a.b.example.com", ["example.com"]) == "u@example.com"
    assert masquerade("u@example.com", ["example.com"]) == "u@example.com"
    assert masquerade("u@eng.example.com", ["!eng.example.com", "example.com"]) == "u@eng.example.com"
    assert masquerade("u@x.eng.example.com", ["!eng.example.com", "example.com"]) == "u@x.eng.example.com"
    assert masquerade("root@a.example.com", ["example.com"], lambda user: user == "root") == "root@a.example.com"
    c = make(tmp_path, "masquerade_domains = example.org\nmasquerade_exceptions = root\n")
    assert c.canonicalize("u@host.example.org", "header_sender") == "u@example.org"
    # envelope_recipient is not in the default masquerade_classes.
    assert c.canonicalize("u@host.example.org", "envelope_recipient") == "u@host.example.org"
