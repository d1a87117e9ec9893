"""Fixtures for the content filter tests: mail systems and filters, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.filter.util import ClamSmtp, Mailhorn

MakeMailhorn = Callable[[str, str], Mailhorn]
MakeClamSmtp = Callable[[int, int, str], ClamSmtp]


@pytest.fixture
def make_mailhorn() -> Iterator[MakeMailhorn]:
    made: list[Mailhorn] = []

    def make(main_cf: str, master_cf: str) -> Mailhorn:
        mh = Mailhorn(main_cf, master_cf)
        made.append(mh)
        return mh

    try:
        yield make
    finally:
        for mh in made:
            mh.remove()


@pytest.fixture
def make_clamsmtp() -> Iterator[MakeClamSmtp]:
    made: list[ClamSmtp] = []

    def make(listen: int, out: int, action: str) -> ClamSmtp:
        clam = ClamSmtp(listen, out, action)
        made.append(clam)
        return clam

    try:
        yield make
    finally:
        for clam in made:
            clam.remove()
