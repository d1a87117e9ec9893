"""parse_special_use: main.cf's mailbox_special_use as a name table; its default is the built-in one."""

from __future__ import annotations

import pytest

from mailhorn.config.load import Config
from mailhorn.mailstore import folders


def test_default_parameter_is_the_built_in_table() -> None:
    assert folders.parse_special_use(Config().get("mailbox_special_use")) == folders.DEFAULT_SPECIAL_USE


def test_elements_braces_names_and_several_attributes() -> None:
    table = folders.parse_special_use(
        "Enviados=\\Sent,{ Itens Enviados = \\Sent }\n inbox=\\Important { Arq = \\Archive  \\Flagged } x.=\\Junk")
    assert table == {"Enviados": "\\Sent", "Itens Enviados": "\\Sent", "INBOX": "\\Important",
                     "Arq": "\\Archive \\Flagged", "x": "\\Junk"}
    assert folders.parse_special_use("") == {}
    assert folders.parse_special_use("Sent=\\Sent Sent=\\Archive") == {"Sent": "\\Archive"}


@pytest.mark.parametrize("value", ["Sent", "Sent=Sent", "=\\Sent", "{ Sent = }", "a..b=\\Sent", "a/b=\\Sent"])
def test_bad_elements(value: str) -> None:
    with pytest.raises(ValueError, match="bad special-use element"):
        folders.parse_special_use(value)
