"""The parameter registry: every main.cf parameter mailhorn reads, declared once.

Each :class:`Param` gives the name, the value type, the default exactly as
Postfix 3.7's ``postconf -d`` prints it (with ``$name`` references left
unexpanded), and a one-line description. Defaults that Postfix computes at run
time (``myhostname`` from the host name, ``mynetworks`` from the interfaces, …)
carry a ``derive`` function instead of a fixed string; it receives a lookup of
other parameters' expanded values so that, as in Postfix, ``mydomain`` follows a
``myhostname`` set in main.cf.

The declarations live in the modules of :mod:`mailhorn.config.paramdefs`, one
per subsystem; this module gathers them and rejects a name declared twice.
``postconf -d``, configuration parsing and the documentation all derive from
this one table (design.md §5 rule 5).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: A function computing a default from other parameters' expanded values.
Derive = Callable[[Callable[[str], str]], str]


class Kind(enum.Enum):
    """How a parameter's value is interpreted."""

    STRING = "string"
    BOOL = "bool"
    INT = "int"
    TIME = "time"
    LIST = "list"


@dataclass(frozen=True)
class Param:
    """One main.cf parameter.

    ``default`` is the text ``postconf -d`` prints after ``name = ``; for a
    derived default it is empty and ``derive`` computes the value. ``unit`` is
    the default time unit of a TIME parameter (``s``, ``m``, ``h``, ``d``).
    ``raw`` marks a parameter whose ``$name`` references are expanded by the
    program using it, with its own variables (``$home``, ``$rbl_code``, …),
    never by the configuration reader; ``postconf -x`` leaves it as it is.
    ``origin`` says whose name it is: ``postfix``, ``dovecot`` (a store or
    login setting Postfix lacks), or ``mailhorn`` (invented where neither has
    one; listed in docs/compatibility.md).
    """

    name: str
    kind: Kind
    default: str
    doc: str
    unit: str = "s"
    derive: Derive | None = None
    raw: bool = False
    origin: str = "postfix"

    def default_value(self, lookup: Callable[[str], str]) -> str:
        """The default as Postfix computes it on this host."""
        if self.derive is not None:
            return self.derive(lookup)
        return self.default


def _gather() -> dict[str, Param]:
    from mailhorn.config.paramdefs import ALL

    registry: dict[str, Param] = {}
    for param in ALL:
        if param.name in registry:
            raise RuntimeError(f"parameter declared twice: {param.name}")
        registry[param.name] = param
    return dict(sorted(registry.items()))


#: Every known parameter, sorted by name (as ``postconf -d`` lists them).
PARAMS: Mapping[str, Param] = _gather()


def get_param(name: str) -> Param | None:
    """The declaration of ``name``, or None when mailhorn does not know it."""
    return PARAMS.get(name)
