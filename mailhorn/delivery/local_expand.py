"""Expansion of local(8)'s ``$name`` parameters with per-recipient values.

``forward_path``, ``luser_relay`` and ``mailbox_command`` may name run-time
variables (``$user``, ``$extension``, ``$domain``, ``$home``, ``$local``,
``$mailbox``, ``$recipient``, ``$shell``, ``$recipient_delimiter``) beside
main.cf parameters; ``${name?value}``/``${name:value}`` test them. An
element that refers to an undefined run-time variable is skipped (None), as
in Postfix's local_expand(); values are first passed through
``forward_expansion_filter`` or ``command_expansion_filter``
(:func:`filtered`).
"""

from __future__ import annotations

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import Expander, MacroError


def filtered(value: str, allowed: str) -> str:
    """A value with characters outside an expansion filter replaced by ``_``."""
    return "".join(ch if ch in allowed else "_" for ch in value)


def expand_text(text: str, variables: dict[str, str], config: Config) -> str | None:
    """``$name`` expansion with run-time variables; None when one of them is undefined."""
    undefined: list[str] = []

    def lookup(name: str) -> str | None:
        if name in variables:
            return variables[name]
        if name in _RUNTIME_NAMES:
            return None
        return config.raw(name)

    try:
        value = Expander(lookup, undefined.append).expand(text)
    except MacroError as exc:
        raise ConfigError(exc.message) from exc
    return None if any(name in _RUNTIME_NAMES for name in undefined) else value


_RUNTIME_NAMES = frozenset({"user", "extension", "domain", "home", "local", "mailbox", "recipient",
                            "shell", "recipient_delimiter"})


def split_raw(raw: str) -> list[str]:
    """A raw list value split on commas/white space outside ``${...}``."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in raw:
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth = max(depth - 1, 0)
        if depth == 0 and (ch == "," or ch.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(ch)
    if current:
        items.append("".join(current))
    return items
