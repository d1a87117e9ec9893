"""The effective configuration: registry defaults, main.cf, and overrides.

:class:`Config` answers ``get(name)`` with the fully expanded value from, in
order of precedence, per-service overrides (master.cf ``-o``), main.cf, and the
registry default. Typed accessors parse booleans, integers, time values and
lists the way Postfix does and raise :class:`ConfigError` naming the file, line
and parameter of a bad value.

``load(config_dir)`` reads ``DIR/main.cf``; ``config_directory`` then reads as
``DIR``, as Postfix sets it from ``-c``.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from mailhorn.config.errors import ConfigError
from mailhorn.config.maincf import Entry, Expander, MacroError, last_wins, read_main_cf, split_list
from mailhorn.config.params import PARAMS, Kind

DEFAULT_CONFIG_DIR: Final = "/etc/postfix"

_TIME_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_RE: Final = re.compile(r"^(\d+)([smhdw]?)$", re.IGNORECASE)


class Config:
    """A read-only view of the configuration with lazy, cached expansion."""

    def __init__(
        self,
        entries: Iterable[Entry] = (),
        overrides: Mapping[str, str] | None = None,
        config_dir: str | None = None,
        on_undefined: Callable[[str], None] | None = None,
    ) -> None:
        self.entries: dict[str, Entry] = last_wins(entries)
        self.overrides: dict[str, str] = dict(overrides or {})
        self.config_dir = config_dir or DEFAULT_CONFIG_DIR
        self._cache: dict[str, str] = {}
        #: bool() and int() answers: services ask for some at every message.
        self._bools: dict[str, bool] = {}
        self._ints: dict[str, builtins.int] = {}
        self._expander = Expander(self.raw, on_undefined)

    # -- raw values -----------------------------------------------------
    def explicit(self, name: str) -> str | None:
        """The value set in main.cf or by an override, unexpanded; None if unset."""
        if name in self.overrides:
            return self.overrides[name]
        entry = self.entries.get(name)
        if entry is not None:
            return entry.value
        if name == "config_directory" and self.config_dir != DEFAULT_CONFIG_DIR:
            return self.config_dir
        return None

    def default(self, name: str) -> str | None:
        """The registry default (derived ones computed here), unexpanded."""
        param = PARAMS.get(name)
        if param is None:
            return None
        return param.default_value(self.get)

    def raw(self, name: str) -> str | None:
        """The effective value before expansion, or None for an unknown, unset name."""
        value = self.explicit(name)
        return value if value is not None else self.default(name)

    def where(self, name: str) -> tuple[str | None, int | None]:
        """The file and line that set ``name``, when a file did."""
        entry = self.entries.get(name)
        if entry is None or name in self.overrides:
            return None, None
        return entry.file, entry.line

    # -- expanded values ------------------------------------------------
    def expand(self, text: str, name: str | None = None) -> str:
        """Expand ``text``; errors name ``name``'s file and line when given."""
        try:
            return self._expander.expand(text)
        except MacroError as exc:
            file, line = self.where(name) if name else (None, None)
            raise ConfigError(exc.message, file=file, line=line, param=name) from exc

    def get(self, name: str) -> str:
        """The expanded value of ``name``; an unknown, unset name is empty."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        raw = self.raw(name)
        param = PARAMS.get(name)
        if raw is None:
            value = ""
        elif param is not None and param.raw:
            value = raw
        else:
            value = self.expand(raw, name)
        self._cache[name] = value
        return value

    def expand_with(self, name: str, variables: Mapping[str, str]) -> str:
        """Expand a ``raw`` parameter with run-time ``variables`` (``$home``, …) first.

        Names not in ``variables`` come from the configuration, as when local(8)
        expands ``forward_path`` or smtpd expands ``default_rbl_reply``.
        """
        raw = self.raw(name) or ""

        def lookup(key: str) -> str | None:
            return variables[key] if key in variables else self.raw(key)

        try:
            return Expander(lookup).expand(raw)
        except MacroError as exc:
            file, line = self.where(name)
            raise ConfigError(exc.message, file=file, line=line, param=name) from exc

    def bool(self, name: str) -> bool:
        """A yes/no parameter (case-insensitive, as Postfix's get_mail_conf_bool)."""
        known = self._bools.get(name)
        if known is not None:
            return known
        value = self.get(name).strip().lower()
        if value not in ("yes", "no"):
            raise self._bad(name, "bad boolean configuration")
        known = self._bools[name] = value == "yes"
        return known

    def int(self, name: str) -> builtins.int:
        """A whole-number parameter."""
        known = self._ints.get(name)
        if known is not None:
            return known
        try:
            known = self._ints[name] = int(self.get(name).strip(), 10)
        except ValueError:
            raise self._bad(name, "bad numerical configuration") from None
        return known

    def time(self, name: str) -> builtins.int:
        """A time parameter in seconds; a bare number uses the parameter's unit."""
        value = self.get(name).strip()
        match = _TIME_RE.match(value)
        if match is None:
            raise self._bad(name, "invalid time value")
        param = PARAMS.get(name)
        unit = (match.group(2) or (param.unit if param else "s")).lower()
        return int(match.group(1)) * _TIME_UNITS[unit]

    def list(self, name: str) -> builtins.list[str]:
        """A list parameter split on commas and/or whitespace."""
        return split_list(self.get(name))

    def _bad(self, name: str, what: str) -> ConfigError:
        file, line = self.where(name)
        return ConfigError(f"{what}: {name} = {self.get(name)}", file=file, line=line, param=name)

    # -- derived views --------------------------------------------------
    def values(self) -> builtins.list[str]:
        """Every value set in main.cf or by an override, unexpanded."""
        return [entry.value for entry in self.entries.values()] + builtins.list(self.overrides.values())

    def with_overrides(self, overrides: Mapping[str, str]) -> Config:
        """A copy with master.cf ``-o`` style overrides on top."""
        merged = dict(self.overrides)
        merged.update(overrides)
        return Config(self.entries.values(), merged, self.config_dir, self._expander._on_undefined)

    def kind(self, name: str) -> Kind | None:
        """The declared type of ``name``."""
        param = PARAMS.get(name)
        return param.kind if param else None


def main_cf_path(config_dir: str) -> str:
    """Where main.cf is for a configuration directory."""
    return os.path.join(config_dir, "main.cf")


def load(
    config_dir: str | None = None,
    overrides: Mapping[str, str] | None = None,
    on_undefined: Callable[[str], None] | None = None,
) -> Config:
    """Read ``config_dir/main.cf`` (``MAIL_CONFIG`` or /etc/postfix by default)."""
    directory = config_dir or os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIR
    entries = read_main_cf(main_cf_path(directory))
    return Config(entries, overrides, directory, on_undefined)
