"""Which parameter names postconf knows, and the warnings about the rest.

Postfix's postconf(1) knows three kinds of parameters:

* built-in ones: mailhorn's registry (:data:`mailhorn.config.params.PARAMS`);
* service-defined ones, derived from master.cf service names: a service whose
  command is a delivery agent (``smtp``, ``lmtp``, ``local``, ``virtual``,
  ``pipe``, ``error``) gets ``NAME_destination_recipient_limit`` and the rest
  of the per-transport scheduler parameters; one running ``pipe`` or
  ``spawn`` gets ``NAME_time_limit`` (postconf(5) "transport_time_limit");
* user-defined ones: names set in main.cf that are referenced as ``$name``
  from any main.cf value or master.cf ``-o`` value, and the names listed in
  ``smtpd_restriction_classes``.

A main.cf name or master.cf ``-o`` name that is none of these draws
``FILE: unused parameter: name=value``; a ``$name`` reference to a name that
is unknown and not set draws ``FILE: undefined parameter: name``.

Errors: a malformed ``$`` reference in the value of a known parameter is a
:class:`ConfigError` naming the file and line (Postfix stops there too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import DEFAULT_CONFIG_DIR
from mailhorn.config.maincf import Entry, Expander, MacroError, _matching, last_wins, split_list
from mailhorn.config.mastercf import MasterCf
from mailhorn.config.params import PARAMS

#: master.cf commands whose services get the per-transport scheduler parameters.
DELIVERY_AGENTS = frozenset({"smtp", "lmtp", "local", "virtual", "pipe", "error"})

#: master.cf commands whose services get ``NAME_time_limit``.
TIME_LIMITED = frozenset({"pipe", "spawn"})

#: The per-transport parameters (postconf(5) "transport_..."), suffix and default.
SERVICE_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_delivery_slot_cost", "$default_delivery_slot_cost"),
    ("_delivery_slot_discount", "$default_delivery_slot_discount"),
    ("_delivery_slot_loan", "$default_delivery_slot_loan"),
    ("_destination_concurrency_failed_cohort_limit", "$default_destination_concurrency_failed_cohort_limit"),
    ("_destination_concurrency_limit", "$default_destination_concurrency_limit"),
    ("_destination_concurrency_negative_feedback", "$default_destination_concurrency_negative_feedback"),
    ("_destination_concurrency_positive_feedback", "$default_destination_concurrency_positive_feedback"),
    ("_destination_rate_delay", "$default_destination_rate_delay"),
    ("_destination_recipient_limit", "$default_destination_recipient_limit"),
    ("_extra_recipient_limit", "$default_extra_recipient_limit"),
    ("_initial_destination_concurrency", "$initial_destination_concurrency"),
    ("_minimum_delivery_slots", "$default_minimum_delivery_slots"),
    ("_recipient_limit", "$default_recipient_limit"),
    ("_recipient_refill_delay", "$default_recipient_refill_delay"),
    ("_recipient_refill_limit", "$default_recipient_refill_limit"),
    ("_transport_rate_delay", "$default_transport_rate_delay"),
)
TIME_LIMIT = ("_time_limit", "$command_time_limit")

#: Parameters whose ``$name`` references are expanded when used, at delivery
#: or reply time (``$home``, ``$rbl_code``, ...); ``postconf -x`` shows them
#: unexpanded, as Postfix does. Postfix's postscreen ones are not in the registry.
RAW_PARAMETERS = frozenset(
    {name for name, param in PARAMS.items() if param.raw}
    | {"postscreen_expansion_filter", "postscreen_reject_footer"}
)

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def service_parameters(master: MasterCf | None) -> dict[str, str]:
    """The service-defined parameters and their defaults, built-in names excluded."""
    out: dict[str, str] = {}
    if master is None:
        return out
    for service in master.services:
        pairs: list[tuple[str, str]] = []
        if service.command in DELIVERY_AGENTS:
            pairs.extend(SERVICE_SUFFIXES)
        if service.command in TIME_LIMITED:
            pairs.append(TIME_LIMIT)
        for suffix, default in pairs:
            name = service.name + suffix
            if name not in PARAMS:
                out.setdefault(name, default)
    return out


def references(text: str) -> list[str]:
    """Every parameter name referenced in ``text``, in order, conditional branches included.

    Raises :class:`MacroError` for a truncated or empty reference, as Postfix's
    mac_expand does when it scans a value.
    """
    found: list[str] = []
    _scan(text, found)
    return found


def _scan(text: str, found: list[str]) -> None:
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            return
        i = j + 1
        if i >= n:
            raise MacroError(f'empty macro name: "{text}"')
        c = text[i]
        if c == "$":
            i += 1
        elif c in "{(":
            close = "}" if c == "{" else ")"
            end = _matching(text, i, c, close)
            if end < 0:
                raise MacroError(f'truncated macro reference: "{text}"')
            inner = text[i + 1 : end]
            k = 0
            while k < len(inner) and inner[k] in _NAME_CHARS:
                k += 1
            if k:
                found.append(inner[:k])
            elif not inner.lstrip().startswith("{"):
                raise MacroError(f'empty macro name: "{text}"')
            _scan(inner[k:], found)
            i = end + 1
        elif c in _NAME_CHARS:
            k = i
            while k < n and text[k] in _NAME_CHARS:
                k += 1
            found.append(text[i:k])
            i = k
        else:
            raise MacroError(f'empty macro name: "{text}"')


@dataclass
class Catalog:
    """The parameters postconf knows for one configuration, and what it found wrong."""

    main: dict[str, Entry]
    service: dict[str, str]
    user: set[str] = field(default_factory=set)
    main_path: str = ""
    master: MasterCf | None = None
    config_dir: str = DEFAULT_CONFIG_DIR
    overrides: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unused_warnings: list[str] = field(default_factory=list)
    master_unused_warnings: list[str] = field(default_factory=list)
    _cache: dict[str, str] = field(default_factory=dict)

    def known(self, name: str) -> bool:
        """Whether postconf treats ``name`` as a parameter."""
        return name in PARAMS or name in self.service or name in self.user

    def default(self, name: str, lookup: Callable[[str], str]) -> str | None:
        """The default of a built-in or service-defined parameter."""
        param = PARAMS.get(name)
        if param is not None:
            return param.default_value(lookup)
        return self.service.get(name)

    def explicit(self, name: str) -> str | None:
        """The value set by ``-o`` or main.cf (``config_directory`` by ``-c``), unexpanded."""
        if name in self.overrides:
            return self.overrides[name]
        entry = self.main.get(name)
        if entry is not None:
            return entry.value
        if name == "config_directory" and self.config_dir != DEFAULT_CONFIG_DIR:
            return self.config_dir
        return None

    def raw(self, name: str) -> str | None:
        """The effective value before expansion; None for an unknown, unset name."""
        value = self.explicit(name)
        if value is not None:
            return value
        return self.default(name, self.value)

    def value(self, name: str) -> str:
        """The expanded effective value (empty when unset and unknown)."""
        cached = self._cache.get(name)
        if cached is None:
            raw = self.raw(name)
            cached = "" if raw is None else self.expand(raw, name)
            self._cache[name] = cached
        return cached

    def expand(self, text: str, name: str | None = None) -> str:
        """Expand ``$name`` references; errors name the file and line of ``name``."""
        try:
            return Expander(self.raw).expand(text)
        except MacroError as exc:
            entry = self.main.get(name) if name else None
            raise ConfigError(
                exc.message, file=entry.file if entry else None, line=entry.line if entry else None,
                param=name) from exc

    def names(self) -> list[str]:
        """All known names, sorted as postconf prints them."""
        return sorted(set(PARAMS) | set(self.service) | self.user)


def build_catalog(
    entries: list[Entry],
    main_path: str,
    master: MasterCf | None,
    config_dir: str = DEFAULT_CONFIG_DIR,
    overrides: Mapping[str, str] | None = None,
) -> Catalog:
    """Classify every name in main.cf and master.cf, collecting Postfix's warnings."""
    catalog = Catalog(
        last_wins(entries), service_parameters(master), main_path=main_path, master=master,
        config_dir=config_dir, overrides=dict(overrides or {}))
    first_seen: dict[str, Entry] = {}
    for entry in entries:
        earlier = first_seen.get(entry.name)
        if earlier is not None:
            catalog.warnings.append(
                f"{entry.file}, line {entry.line}: overriding earlier entry: {entry.name}={earlier.value}")
        first_seen[entry.name] = entry

    def note(names: list[str], where: str) -> None:
        for ref in names:
            if ref in PARAMS or ref in catalog.service:
                continue
            if ref in catalog.main:
                catalog.user.add(ref)
            else:
                catalog.warnings.append(f"{where}: undefined parameter: {ref}")

    if master is not None:
        for service in master.services:
            for setting in service.settings:
                try:
                    note(references(setting.value), master.path)
                except MacroError as exc:
                    catalog.warnings.append(exc.message)
    for entry in catalog.main.values():
        try:
            names = references(entry.value)
        except MacroError as exc:
            if entry.name in PARAMS or entry.name in catalog.service:
                raise ConfigError(exc.message, file=entry.file, line=entry.line, param=entry.name) from exc
            catalog.warnings.append(exc.message)
            continue
        note(names, main_path)
    classes = catalog.main.get("smtpd_restriction_classes")
    if classes is not None:
        for name in split_list(catalog.expand(classes.value, classes.name)):
            if name in catalog.main:
                catalog.user.add(name)
    for entry in catalog.main.values():
        if not catalog.known(entry.name):
            catalog.unused_warnings.append(f"{main_path}: unused parameter: {entry.name}={entry.value}")
    if master is not None:
        for service in master.services:
            for setting in service.settings:
                if not catalog.known(setting.name):
                    catalog.master_unused_warnings.append(
                        f"{master.path}: unused parameter: {setting.name}={setting.value}")
    return catalog
