"""cleanup's address mapping: rewriting, canonical maps, masquerading, virtual aliases.

:class:`AddressMapping` does to a message's addresses what Postfix's
cleanup(8) does before the queue file is written:

* envelope sender and recipients are completed in the ``local`` rewrite
  context (``user`` -> ``user@$myorigin``, ``swap_bangpath``,
  ``allow_percent_hack``, ``append_dot_mydomain``; :mod:`mailhorn.address.rewrite`);
* unless ``receive_override_options`` has ``no_address_mappings``: the
  canonical maps (``sender_canonical_maps``/``recipient_canonical_maps``,
  ``canonical_maps``, each for its ``*_canonical_classes``) and
  ``masquerade_domains`` (for ``masquerade_classes``) change them, and each
  envelope recipient is expanded through ``virtual_alias_maps``
  (:mod:`mailhorn.address.virtual`); duplicate results are dropped
  (``duplicate_filter_limit``);
* the addresses in the message's own sender headers (``From:``,
  ``Sender:``, ``Reply-To:``, ``Errors-To:``, ``Return-Receipt-To:``,
  ``Disposition-Notification-To:`` and their ``Resent-`` forms) and
  recipient headers (``To:``, ``Cc:``, ``Bcc:``, ``Apparently-To:``,
  ``Resent-To/Cc/Bcc:``) are completed in the header rewrite context and,
  with mappings on, canonicalized and masqueraded for the
  ``header_sender``/``header_recipient`` classes. The context is ``local``
  for local submission and ``local_header_rewrite_clients``, ``remote``
  otherwise; in the ``remote`` context with an empty
  ``remote_header_rewrite_domain`` headers are not touched at all
  (postconf(5) remote_header_rewrite_domain).

Virtual alias expansion applies to envelope recipients only; headers keep
the addresses the sender wrote (virtual(5)).

Header rewriting changes only the address itself: display names,
comments, angle brackets, group syntax and folding stay as written; a
header none of whose addresses change is left byte for byte.

Parameters read: those of :class:`~mailhorn.address.rewrite.Rewriter`,
:class:`~mailhorn.address.rewrite.Canonicalizer`,
:class:`~mailhorn.address.virtual.VirtualAliases` and
:class:`~mailhorn.address.resolve.LocalDomains`, plus
``remote_header_rewrite_domain`` and ``duplicate_filter_limit``.

Errors: :class:`~mailhorn.tables.base.TableRetry` when a canonical table
fails; :class:`~mailhorn.address.virtual.VirtualAliasError` (``4.3.0`` for a
failed table, ``4.6.0`` for an expansion or recursion limit) from
:meth:`AddressMapping.expand`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mailhorn.address.errors import AddressError
from mailhorn.address.header import HeaderAddress, parse_address_list
from mailhorn.address.resolve import LocalDomains
from mailhorn.address.rewrite import Canonicalizer, Rewriter
from mailhorn.address.virtual import DuplicateFilter, VirtualAliases
from mailhorn.config.load import Config
from mailhorn.tables.base import TableRetry
from mailhorn.tables.matchlist import MatchListRetry

#: Headers whose addresses are senders / recipients (Postfix's header_opts).
SENDER_HEADERS: Final = frozenset({
    "from", "sender", "reply-to", "errors-to", "return-receipt-to", "disposition-notification-to",
    "resent-from", "resent-sender", "resent-reply-to",
})
RECIPIENT_HEADERS: Final = frozenset({
    "to", "cc", "bcc", "apparently-to", "resent-to", "resent-cc", "resent-bcc",
})


#: An addr-spec that rewriting leaves as it is: a dot-atom local part (RFC 5322
#: §3.2.3) at a dot-atom domain with at least one dot (nothing to append, no
#: source route, no quoting, no domain literal, no trailing dot).
_PLAIN_ADDRESS: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


#: What makes an address-list value more than one plain mailbox.
_NOT_SIMPLE: Final = re.compile(r'[(",:;\[\\]')


@dataclass(frozen=True)
class Span:
    """Where one address (addr-spec) sits in a header value."""

    start: int
    end: int

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, start: int, end: int) -> None:
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)


class AddressMapping:
    """Address rewriting and mapping for one cleanup configuration."""

    def __init__(self, config: Config) -> None:
        self.rewriter = Rewriter(config)
        self.local_domains = LocalDomains(config)
        self.canonical = Canonicalizer(config, self._is_local)
        self.virtual = VirtualAliases(config, self._is_local)
        self.remote_domain = config.get("remote_header_rewrite_domain")
        self.duplicate_limit = config.int("duplicate_filter_limit")

    def _is_local(self, domain: str) -> bool:
        try:
            return self.local_domains.is_local(domain)
        except MatchListRetry as exc:
            raise TableRetry(f"mydestination: {exc}") from exc

    # -- envelope ------------------------------------------------------------
    def envelope(self, address: str, address_class: str, *, maps: bool) -> str:
        """An envelope address rewritten (local context) and, with ``maps``, canonicalized."""
        if not address:
            return address
        address = self.rewriter.rewrite("local", address)
        if maps:
            address = self.canonical.canonicalize(address, address_class)
        return address

    def expand(self, address: str) -> list[str]:
        """The virtual alias expansion of one envelope recipient (itself when none)."""
        if not self.virtual:
            return [address]
        return self.virtual.expand(address)

    def duplicates(self) -> DuplicateFilter:
        """A fresh per-message duplicate recipient filter."""
        return DuplicateFilter(self.duplicate_limit)

    # -- headers -----------------------------------------------------------
    def header_context(self, local: bool) -> str | None:
        """The rewrite context for a message's headers, or None: leave them alone."""
        if local:
            return "local"
        return "remote" if self.remote_domain else None

    def header(self, text: str, context: str, *, maps: bool) -> str:
        """One logical header (``Name: value``) with its addresses rewritten."""
        colon = text.find(":")
        if colon <= 0:
            return text
        name = text[:colon].strip().lower()
        if name in SENDER_HEADERS:
            klass = "header_sender"
        elif name in RECIPIENT_HEADERS:
            klass = "header_recipient"
        else:
            return text
        value_start = colon + 1
        value = text[value_start:]
        pieces: list[str] = []
        at = 0
        changed = False
        # Without canonical maps or masquerading a plain, qualified address
        # comes out of rewriting unchanged: skip parsing it (most headers).
        unmapped = not maps or self.canonical.idle
        for span in address_spans(value):
            spec = value[span.start:span.end]
            if unmapped and _PLAIN_ADDRESS.fullmatch(spec) is not None:
                continue
            new = self._map_spec(spec, context, klass, maps)
            if new is None:
                continue
            pieces.append(value[at:span.start])
            pieces.append(new)
            at = span.end
            changed = True
        if not changed:
            return text
        pieces.append(value[at:])
        return text[:value_start] + "".join(pieces)

    def _map_spec(self, spec: str, context: str, klass: str, maps: bool) -> str | None:
        """The replacement text of one addr-spec, or None when it stays."""
        try:
            parsed = parse_address_list(spec)
        except AddressError:
            return None
        if len(parsed) != 1 or not parsed[0].address:
            return None
        internal = parsed[0].address
        new = self.rewriter.rewrite(context, internal)
        if maps:
            new = self.canonical.canonicalize(new, klass)
        if new == internal:
            return None
        return HeaderAddress(new).external


def address_spans(value: str) -> list[Span]:
    """The addr-spec of each mailbox in an address-list header value.

    A mailbox's address is what its angle brackets enclose, else its text
    without comments and surrounding white space; a group's display name
    (``name:``) is skipped. Quoted strings, comments and domain literals are
    stepped over whole, so ``"a, b" <x@y>`` is one mailbox.
    """
    if _NOT_SIMPLE.search(value) is None:
        # No comment, quoted string, group, list or domain literal: one
        # mailbox, found without walking the value character by character.
        lt = value.find("<")
        if lt < 0:
            first = len(value) - len(value.lstrip(" \t\r\n"))
            last = len(value.rstrip(" \t\r\n"))
            return [Span(first, last)] if first < last else []
        if value.find("<", lt + 1) < 0:
            gt = value.find(">", lt + 1)
            end = gt if gt >= 0 else len(value)
            return [Span(lt + 1, end)] if end > lt + 1 else []
    spans: list[Span] = []
    n = len(value)
    i = 0
    seg_first = -1
    seg_last = -1
    angle: Span | None = None
    saw_at = False

    def close() -> None:
        if angle is not None:
            if angle.end > angle.start:
                spans.append(angle)
        elif seg_first >= 0:
            spans.append(Span(seg_first, seg_last))

    while i < n:
        ch = value[i]
        if ch == "(":
            depth = 0
            while i < n:
                c = value[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
            continue
        if ch in " \t\r\n":
            i += 1
            continue
        if ch == "<":
            close_at = _find_angle_end(value, i + 1)
            angle = Span(i + 1, close_at)
            i = close_at + 1
            continue
        if ch == ",":
            close()
            seg_first = seg_last = -1
            angle = None
            saw_at = False
            i += 1
            continue
        if ch == ":" and angle is None and not saw_at:
            seg_first = seg_last = -1
            i += 1
            continue
        if ch == ";":
            close()
            seg_first = seg_last = -1
            angle = None
            saw_at = False
            i += 1
            continue
        start = i
        if ch == '"':
            i = _skip_delimited(value, i + 1, '"')
        elif ch == "[":
            i = _skip_delimited(value, i + 1, "]")
        else:
            if ch == "@":
                saw_at = True
            i += 1
        if seg_first < 0:
            seg_first = start
        seg_last = i
    close()
    return spans


def _skip_delimited(value: str, i: int, end: str) -> int:
    """Index just past the closing ``end`` (backslash escapes honoured)."""
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if c == end:
            return i + 1
        i += 1
    return n


def _find_angle_end(value: str, i: int) -> int:
    """Index of the ``>`` closing an angle address (or the end of the value)."""
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i = _skip_delimited(value, i + 1, '"')
            continue
        if c == "[":
            i = _skip_delimited(value, i + 1, "]")
            continue
        if c == ">":
            return i
        i += 1
    return n
