"""Virtual alias expansion, as Postfix's cleanup does it (virtual(5)).

:meth:`VirtualAliases.expand` maps one internal-form recipient to the list
of recipients it stands for:

* each address is searched in ``virtual_alias_maps`` in virtual(5) order:
  ``user+ext@domain``, ``user@domain``, ``user+ext`` and ``user`` (only when
  the domain is ``$myorigin``, in ``$mydestination`` or one of our interface
  literals), then the catch-all ``@domain``; a result ``@other`` maps the
  domain and keeps the local part; an extension that took no part in the
  match is re-appended to each result when ``propagate_unmatched_extensions``
  lists ``virtual``; results are completed in the ``local`` context
  (``hugo`` -> ``hugo@$myorigin``);
* a result is 1:n; the first address replaces the original and is expanded
  again at once (up to ``virtual_alias_recursion_limit`` levels), the others
  are appended and expanded in turn; the list may not grow beyond
  ``virtual_alias_expansion_limit``;
* an address whose result includes itself (``a@x -> a@x, b@y``) is kept and
  not expanded again (Postfix's "expand into itself once");
* duplicates in the final list are dropped; cleanup remembers up to
  ``duplicate_filter_limit`` recipients per message for this, and so does
  :class:`DuplicateFilter`.

An address in a ``virtual_alias_domains`` domain that no entry matches is
left as it is; resolve.py then gives it the ``error`` transport with "5.1.1
User unknown in virtual alias table", as Postfix does.

Parameters read: ``virtual_alias_maps``, ``virtual_alias_recursion_limit``,
``virtual_alias_expansion_limit``, ``propagate_unmatched_extensions``,
``duplicate_filter_limit``, ``recipient_delimiter``, ``myorigin``.

Errors: :class:`VirtualAliasError` with ``status`` ``4.3.0`` when a table
fails (cleanup answers ``451 4.3.0`` and keeps no queue file) or ``4.6.0``
when a limit is exceeded ("Alias expansion error"); both are temporary, the
client tries again later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailhorn import log
from mailhorn.address.rewrite import AddressMaps
from mailhorn.config.load import Config
from mailhorn.tables.base import TableRetry


class VirtualAliasError(Exception):
    """Expansion failed temporarily; ``status`` is the enhanced status code."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _same(a: str, b: str) -> bool:
    """Address equality as cleanup compares them (case-insensitive)."""
    return a.casefold() == b.casefold()


class VirtualAliases:
    """``virtual_alias_maps`` expansion for one configuration."""

    def __init__(self, config: Config, is_local: Callable[[str], bool]) -> None:
        self.maps = AddressMaps.from_config(config, "virtual_alias_maps", is_local)
        self.recursion_limit = config.int("virtual_alias_recursion_limit")
        self.expansion_limit = config.int("virtual_alias_expansion_limit")
        self.propagate = "virtual" in [p.lower() for p in config.list("propagate_unmatched_extensions")]

    def __bool__(self) -> bool:
        return bool(self.maps)

    def lookup(self, address: str) -> list[str] | None:
        """One level: the addresses ``address`` maps to, or None. TableRetry on failure."""
        return self.maps.map(address, self.propagate)

    def expand(self, address: str) -> list[str]:
        """The full expansion of one recipient (cleanup_map1n_internal)."""
        result = [address]
        been_here: set[str] = set()
        arg = 0
        while arg < len(result):
            if len(result) > self.expansion_limit:
                log.warning(f"unreasonable virtual_alias_maps map expansion size for {address}")
                raise VirtualAliasError("4.6.0", "Alias expansion error")
            count = 0
            while True:
                current = result[arg]
                if current.casefold() in been_here:
                    break
                if count >= self.recursion_limit:
                    log.warning(f"unreasonable virtual_alias_maps map nesting for {address}")
                    raise VirtualAliasError("4.6.0", "Alias expansion error")
                try:
                    found = self.lookup(current)
                except TableRetry as exc:
                    log.warning(f"virtual_alias_maps map lookup problem for {current}: {exc}")
                    raise VirtualAliasError("4.3.0", "Error: queue file write error") from exc
                if not found:
                    break
                for i, item in enumerate(found):
                    if i == 0:
                        result[arg] = item
                    else:
                        result.append(item)
                    if _same(current, item):
                        been_here.add(current.casefold())
                count += 1
            arg += 1
        return result


class DuplicateFilter:
    """cleanup's per-message duplicate recipient filter (``duplicate_filter_limit``).

    Remembers at most ``limit`` keys; past that, everything is let through
    (0 means no limit), as Postfix's been_here table.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is offered."""
        if key in self.seen:
            return False
        if self.limit <= 0 or len(self.seen) < self.limit:
            self.seen.add(key)
        return True


def expand_recipients(
    aliases: VirtualAliases, recipients: Iterable[str], duplicate_filter_limit: int
) -> list[tuple[str, str]]:
    """Expand every recipient; return (original, final) pairs without duplicates.

    The original recipient travels with each result, as the queue file keeps
    it for DSN ORCPT and ``X-Original-To:``.
    """
    dups = DuplicateFilter(duplicate_filter_limit)
    out: list[tuple[str, str]] = []
    for original in recipients:
        for final in aliases.expand(original):
            if dups.first_time(final):
                out.append((original, final))
    return out

