"""mailbox_special_use: the special-use names IMAP LIST shows (RFC 6154) come from main.cf."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.imap import listing
from tests.imap.server_util import PASSWORD, USER, ImapServer

CUSTOM = r"Enviados=\Sent, Lixo=\Trash, { Itens Excluidos = \Trash }, { Arquivo = \Archive \Flagged }"


def test_custom_special_use_names_show_in_list(tmp_path: Path) -> None:
    srv = ImapServer(tmp_path, {"mailbox_special_use": CUSTOM})
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=15)
        c.login(USER, PASSWORD)
        for name in ("Enviados", "Lixo", '"Itens Excluidos"', "Arquivo", "Sent"):
            assert c.create(name)[0] == "OK"
        assert c.list()[1] == [
            b'(\\HasNoChildren) "." INBOX',
            b'(\\HasNoChildren \\Archive \\Flagged) "." Arquivo',
            b'(\\HasNoChildren \\Sent) "." Enviados',
            b'(\\HasNoChildren \\Trash) "." "Itens Excluidos"',
            b'(\\HasNoChildren \\Trash) "." Lixo',
            # The configured table replaces the default one: Sent is an ordinary folder here.
            b'(\\HasNoChildren) "." Sent',
        ]
        assert c._simple_command("LIST", "(SPECIAL-USE)", '""', "*")[0] == "OK"
        assert c.untagged_responses.pop("LIST") == [
            b'(\\HasNoChildren \\Archive \\Flagged) "." Arquivo',
            b'(\\HasNoChildren \\Sent) "." Enviados',
            b'(\\HasNoChildren \\Trash) "." "Itens Excluidos"',
            b'(\\HasNoChildren \\Trash) "." Lixo',
        ]
        assert c._simple_command("LIST", '""', "%", "RETURN", "(SPECIAL-USE)")[0] == "OK"
        assert b'(\\HasNoChildren \\Sent) "." Enviados' in c.untagged_responses.pop("LIST")
        c.logout()
    finally:
        srv.stop()


def test_default_special_use_names(tmp_path: Path) -> None:
    srv = ImapServer(tmp_path)
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=15)
        c.login(USER, PASSWORD)
        for name in ('"Sent Messages"', "Drafts", "Enviados"):
            assert c.create(name)[0] == "OK"
        assert c.list()[1] == [
            b'(\\HasNoChildren) "." INBOX',
            b'(\\HasNoChildren \\Drafts) "." Drafts',
            b'(\\HasNoChildren) "." Enviados',
            b'(\\HasNoChildren \\Sent) "." "Sent Messages"',
        ]
        c.logout()
    finally:
        srv.stop()


@pytest.mark.parametrize("value", [r"Sent", r"Sent=Sent", r"=\Sent", r"Sent=\Sent x", r"..x=\Sent"])
def test_bad_values_are_configuration_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="mailbox_special_use|special-use"):
        listing.special_use_table(Config(overrides={"mailbox_special_use": value}))
