"""Address rewriting: trivial-rewrite's rewrite side and cleanup's address maps.

:func:`rewrite_address` completes an internal-form address in a rewrite
context, as Postfix's trivial-rewrite ``rewrite`` request (rewrite_tree):

1. an empty address (or a lone ``@``) is left alone;
2. a source route ``@a,@b:user@domain`` is dropped (RFC 5321 §C);
3. an address without ``@``: ``site!user`` becomes ``user@site`` when
   ``swap_bangpath = yes`` (at the first ``!``); otherwise ``user%domain``
   becomes ``user@domain`` when ``allow_percent_hack = yes`` (at the last
   ``%``); otherwise ``@$myorigin`` is appended when ``append_at_myorigin =
   yes`` (the context's origin);
4. ``.$mydomain`` is appended to a domain without a dot (not an address
   literal, not an empty domain) when ``append_dot_mydomain = yes``;
5. one trailing dot is dropped, but not from ``..`` or ``@.``.

Routing operators are only seen in a local part that is a dot-string: a
local part that needs quotes (``"a!b c"``) is one opaque word, as in
Postfix's tokenizer. The two contexts (postconf(5) ``local_header_rewrite_clients``,
``remote_header_rewrite_domain``): ``local`` uses ``myorigin`` and ``mydomain``;
``remote`` uses ``remote_header_rewrite_domain`` for both, and appends nothing
when it is empty.

:class:`AddressMaps` searches ``*_maps`` for an address the way Postfix's
mail_addr_find / mail_addr_map do (canonical(5), virtual(5)): ``user+ext@domain``,
then ``user@domain`` (with ``recipient_delimiter``), then ``user+ext`` and
``user`` when the domain is ``$myorigin`` or local, then ``@domain``.
Pattern tables (regexp, pcre, cidr) are asked for the full address only.
A result is a comma/space separated list of external-form addresses; each is
completed in the ``local`` context; a result ``@other`` maps the domain and
keeps the local part; an extension that did not take part in the match is
carried over when the caller's ``propagate_unmatched_extensions`` class says so.

:class:`Canonicalizer` applies ``sender_canonical_maps`` /
``recipient_canonical_maps`` then ``canonical_maps`` (each limited by its
``*_classes``) with 1:1 recursion, then ``masquerade_domains`` (except
``masquerade_exceptions``) for the ``masquerade_classes``.

Parameters read: ``myorigin``, ``mydomain``, ``remote_header_rewrite_domain``,
``append_at_myorigin``, ``append_dot_mydomain``, ``swap_bangpath``,
``allow_percent_hack``, ``recipient_delimiter``, ``canonical_maps``,
``sender_canonical_maps``, ``recipient_canonical_maps``, ``canonical_classes``,
``sender_canonical_classes``, ``recipient_canonical_classes``,
``masquerade_domains``, ``masquerade_exceptions``, ``masquerade_classes``,
``propagate_unmatched_extensions``.

Errors: a table that fails raises :class:`~mailhorn.tables.base.TableRetry`
(the caller defers with a 4xx); a table that cannot be opened raises
:class:`~mailhorn.tables.base.TableConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from mailhorn import log
from mailhorn.address.header import parse_address_list
from mailhorn.address.parse import split_extension
from mailhorn.address.quote import is_dot_string, split_internal
from mailhorn.config.load import Config
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.registry import open_table, split_spec

#: Table types searched with the full address only (not DICT_FLAG_FIXED).
PATTERN_TYPES: Final = frozenset({"regexp", "pcre", "cidr", "tcp", "socketmap"})

#: cleanup's 1:1 canonical mapping recursion limit (Postfix MAX_RECURSION).
CANONICAL_RECURSION_LIMIT: Final = 10

#: The address classes of canonical_classes and masquerade_classes.
ADDRESS_CLASSES: Final = ("envelope_sender", "envelope_recipient", "header_sender", "header_recipient")


@dataclass(frozen=True)
class RewriteOptions:
    """The switches of rewrite_tree, read once from the configuration."""

    swap_bangpath: bool = True
    percent_hack: bool = True
    append_at_myorigin: bool = True
    append_dot_mydomain: bool = False

    @classmethod
    def from_config(cls, config: Config) -> RewriteOptions:
        return cls(
            swap_bangpath=config.bool("swap_bangpath"),
            percent_hack=config.bool("allow_percent_hack"),
            append_at_myorigin=config.bool("append_at_myorigin"),
            append_dot_mydomain=config.bool("append_dot_mydomain"),
        )


@dataclass(frozen=True)
class RewriteContext:
    """What a context appends: ``@origin`` and ``.domain``."""

    name: str
    origin: str
    domain: str


def local_context(config: Config) -> RewriteContext:
    """The ``local`` context: ``$myorigin`` and ``$mydomain``."""
    return RewriteContext("local", config.get("myorigin"), config.get("mydomain"))


def remote_context(config: Config) -> RewriteContext:
    """The ``remote`` context: ``$remote_header_rewrite_domain`` for both."""
    domain = config.get("remote_header_rewrite_domain")
    return RewriteContext("remote", domain, domain)


def context_by_name(config: Config, name: str) -> RewriteContext:
    """``local`` or ``remote`` (Postfix's MAIL_ATTR_RWR_LOCAL/REMOTE)."""
    contexts: dict[str, Callable[[Config], RewriteContext]] = {"local": local_context, "remote": remote_context}
    try:
        return contexts[name](config)
    except KeyError:
        raise ValueError(f"unknown rewrite context: {name}") from None


def strip_source_route(address: str) -> str:
    """``@a,@b:user@domain`` -> ``user@domain``."""
    if address.startswith("@"):
        colon = address.find(":")
        if colon >= 0:
            return address[colon + 1 :]
    return address


def operators_visible(local: str) -> bool:
    """Whether ``!``/``%`` in a local part are routing operators: the local
    part is an unquoted dot-string (a quoted one is a single word)."""
    return is_dot_string(local)


def rewrite_address(address: str, context: RewriteContext, options: RewriteOptions) -> str:
    """Complete an internal-form address in ``context`` (Postfix's rewrite_tree)."""
    if address in ("", "@"):
        return address
    address = strip_source_route(address)
    local, domain = split_internal(address)
    if domain is None:
        visible = operators_visible(local)
        if options.swap_bangpath and visible and "!" in local:
            bang = local.index("!")
            address = f"{local[bang + 1:]}@{local[:bang]}"
        elif options.percent_hack and visible and "%" in local:
            pct = local.rindex("%")
            address = f"{local[:pct]}@{local[pct + 1:]}"
        elif options.append_at_myorigin and context.origin:
            address = f"{address}@{context.origin}"
    local, domain = split_internal(address)
    if (
        options.append_dot_mydomain
        and context.domain
        and domain
        and not domain.startswith("[")
        and "." not in domain
    ):
        address = f"{address}.{context.domain}"
    if len(address) > 1 and address.endswith(".") and address[-2] not in ".@":
        address = address[:-1]
    return address


class Rewriter:
    """trivial-rewrite's ``rewrite`` request for one configuration."""

    def __init__(self, config: Config) -> None:
        self.options = RewriteOptions.from_config(config)
        self.contexts = {"local": local_context(config), "remote": remote_context(config)}

    def rewrite(self, context: str, address: str) -> str:
        """Rewrite ``address`` in the ``local`` or ``remote`` context."""
        ctx = self.contexts.get(context)
        if ctx is None:
            raise ValueError(f"unknown rewrite context: {context}")
        return rewrite_address(address, ctx, self.options)


# -- table search (mail_addr_find / mail_addr_map) ------------------------------


def open_maps(config: Config, param: str) -> list[Table]:
    """The tables of a ``*_maps`` parameter, in order."""
    return [open_table(spec, config) for spec in config.list(param)]


def is_pattern_table(table: Table) -> bool:
    """Whether a table matches patterns (asked for the full address only)."""
    return table.type in PATTERN_TYPES or split_spec(f"{table.type}:x")[0] in PATTERN_TYPES


@dataclass(frozen=True)
class MapMatch:
    """A table match: the value, and the extension left out of the key (with
    its delimiter) when the match was on ``user@domain`` or ``user``."""

    value: str
    extension: str | None
    key: str


class AddressMaps:
    """A list of tables searched for addresses (mail_addr_find, mail_addr_map).

    ``is_local`` tells whether a domain is this host's (resolve_local); with
    ``$myorigin`` it decides whether bare ``user`` keys are tried.
    """

    def __init__(
        self,
        param: str,
        tables: Sequence[Table],
        config: Config,
        is_local: Callable[[str], bool],
    ) -> None:
        self.param = param
        self.tables = list(tables)
        self.is_local = is_local
        self.myorigin = config.get("myorigin").lower()
        self.delimiters = config.get("recipient_delimiter")
        self.owner_request_special = config.bool("owner_request_special")
        self.double_bounce = config.get("double_bounce_sender")
        self.rewriter = Rewriter(config)

    @classmethod
    def from_config(cls, config: Config, param: str, is_local: Callable[[str], bool]) -> AddressMaps:
        return cls(param, open_maps(config, param), config, is_local)

    def __bool__(self) -> bool:
        return bool(self.tables)

    def find_key(self, key: str, *, full: bool) -> str | None:
        """The first table's value for ``key``; pattern tables only when ``full``."""
        for table in self.tables:
            if not full and is_pattern_table(table):
                continue
            try:
                value = table.lookup(key)
            except (TableRetry, TableConfigError) as exc:
                log.warning(f"{table.type}:{table.name}: table lookup problem: {exc}")
                raise TableRetry(f"{self.param}: {table.type}:{table.name}: table lookup problem") from exc
            if value is not None:
                return value
        return None

    def find(self, address: str) -> MapMatch | None:
        """Search for an internal-form ``address`` (mail_addr_find order)."""
        local, domain = split_internal(address)
        split = split_extension(
            local,
            self.delimiters,
            owner_request_special=self.owner_request_special,
            double_bounce_sender=self.double_bounce,
        )
        extension = f"{split.delimiter}{split.extension}" if split else None
        bare_local = split.base if split else None
        value = self.find_key(address, full=True)
        if value is not None:
            return MapMatch(value, None, address)
        if bare_local is not None and domain is not None:
            key = f"{bare_local}@{domain}"
            value = self.find_key(key, full=False)
            if value is not None:
                return MapMatch(value, extension, key)
        if domain is None or domain.lower() == self.myorigin or self.is_local(domain):
            value = self.find_key(local, full=False)
            if value is not None:
                return MapMatch(value, None, local)
            if bare_local is not None:
                value = self.find_key(bare_local, full=False)
                if value is not None:
                    return MapMatch(value, extension, bare_local)
        if domain is not None:
            key = f"@{domain}"
            value = self.find_key(key, full=False)
            if value is not None:
                return MapMatch(value, None, key)
        return None

    def map(self, address: str, propagate: bool) -> list[str] | None:
        """The addresses ``address`` maps to (internal form), or None (mail_addr_map).

        ``propagate``: append an unmatched extension to every result.
        """
        match = self.find(address)
        if match is None:
            return None
        value = match.value
        if value.startswith("@"):
            local, _ = split_internal(address)
            if match.extension is not None:
                local = local[: len(local) - len(match.extension)]
            value = _quote_for_list(local) + value
        return self.crunch(value, match.extension if propagate else None)

    def crunch(self, value: str, extension: str | None) -> list[str]:
        """Split a result into addresses, complete each in the local context and
        insert ``extension`` before the domain (mail_addr_crunch)."""
        out: list[str] = []
        for item in parse_address_list(value):
            addr = self.rewriter.rewrite("local", item.address)
            if extension:
                loc, dom = split_internal(addr)
                addr = f"{loc}{extension}@{dom}" if dom is not None else f"{loc}{extension}"
            out.append(addr)
        return out


def _quote_for_list(local: str) -> str:
    """A local part as it must appear in an address list."""
    if is_dot_string(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# -- canonical maps and masquerading ----------------------------------------------


def masquerade(address: str, domains: Sequence[str], exceptions: Callable[[str], bool] | None = None) -> str:
    """Strip subdomains per ``masquerade_domains`` (postconf(5)).

    A listed domain that equals the address domain stops the search unchanged;
    a listed domain that is a parent replaces it, unless the entry starts with
    ``!`` (which stops the search unchanged). ``exceptions(local)`` spares users
    listed in ``masquerade_exceptions``.
    """
    local, domain = split_internal(address)
    if domain is None or not domain:
        return address
    if exceptions is not None and exceptions(local):
        return address
    lowered = domain.lower()
    for entry in domains:
        truncate = not entry.startswith("!")
        masq = (entry if truncate else entry[1:]).lower()
        if not masq:
            continue
        if masq == lowered:
            break
        if len(masq) < len(lowered) and lowered.endswith("." + masq):
            if truncate:
                return f"{local}@{masq}"
            break
    return address


class Canonicalizer:
    """cleanup's canonical mapping and masquerading for one configuration."""

    def __init__(self, config: Config, is_local: Callable[[str], bool]) -> None:
        self.propagate = "canonical" in [p.lower() for p in config.list("propagate_unmatched_extensions")]
        self.sender = AddressMaps.from_config(config, "sender_canonical_maps", is_local)
        self.recipient = AddressMaps.from_config(config, "recipient_canonical_maps", is_local)
        self.common = AddressMaps.from_config(config, "canonical_maps", is_local)
        self.sender_classes = set(config.list("sender_canonical_classes"))
        self.recipient_classes = set(config.list("recipient_canonical_classes"))
        self.common_classes = set(config.list("canonical_classes"))
        self.masq_domains = config.list("masquerade_domains")
        self.masq_classes = set(config.list("masquerade_classes"))
        from mailhorn.tables.matchlist import string_list_from_config

        self._masq_exceptions = string_list_from_config(config, "masquerade_exceptions")
        self._has_exceptions = bool(config.list("masquerade_exceptions"))
        #: No canonical map and no masquerading: :meth:`canonicalize` changes nothing.
        self.idle = not (self.sender or self.recipient or self.common or self.masq_domains)

    def map11(self, maps: AddressMaps, address: str) -> str:
        """One-to-one mapping with recursion (cleanup_map11_internal)."""
        for _ in range(CANONICAL_RECURSION_LIMIT):
            results = maps.map(address, self.propagate)
            if results is None:
                break
            if len(results) > 1:
                log.warning(f"{maps.param}: multi-valued map entry for {address} -- using first")
            new = results[0] if results else address
            if new == address:
                break
            address = new
        else:
            log.warning(f"{maps.param}: unreasonable map nesting for {address}")
        return address

    def canonicalize(self, address: str, address_class: str) -> str:
        """Apply the canonical maps that apply to ``address_class`` (one of
        :data:`ADDRESS_CLASSES`), then masquerading. Raises TableRetry."""
        if address_class not in ADDRESS_CLASSES:
            raise ValueError(f"unknown address class: {address_class}")
        if not address:
            return address
        if address_class.endswith("sender") and self.sender and address_class in self.sender_classes:
            address = self.map11(self.sender, address)
        if address_class.endswith("recipient") and self.recipient and address_class in self.recipient_classes:
            address = self.map11(self.recipient, address)
        if self.common and address_class in self.common_classes:
            address = self.map11(self.common, address)
        if self.masq_domains and address_class in self.masq_classes:
            address = masquerade(address, self.masq_domains, self._masq_except if self._has_exceptions else None)
        return address

    def _masq_except(self, local: str) -> bool:
        return self._masq_exceptions.match(local)
