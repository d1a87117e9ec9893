"""Golden-file runner for the address layer.

Each ``tests/golden/address/NAME.in`` holds one case per line (``#`` lines
and blank lines are skipped); escapes such as ``\\x00`` or ``\\u00e9`` are
decoded so hostile bytes can be written down. The line's result, formatted
by a function of the test module, must equal the same line of ``NAME.ref``.
Set ``MAILHORN_REGOLD=1`` to rewrite the ``.ref`` files after a reviewed
change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "address"


def decode(line: str) -> str:
    """A case line with backslash escapes resolved."""
    return line.encode("ascii").decode("unicode_escape")


def cases(name: str) -> list[str]:
    """The case lines of NAME.in, undecoded."""
    lines = (GOLDEN / f"{name}.in").read_text(encoding="utf-8").split("\n")
    return [line for line in lines if line and not line.startswith("#")]


def check(name: str, render: Callable[[str], str]) -> None:
    """Compare every rendered case with NAME.ref."""
    got = "".join(f"{line}\n\t{render(decode(line))}\n" for line in cases(name))
    ref = GOLDEN / f"{name}.ref"
    if os.environ.get("MAILHORN_REGOLD") == "1":
        ref.write_text(got, encoding="utf-8")
    assert got == ref.read_text(encoding="utf-8")
