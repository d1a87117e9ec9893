"""Fixtures for the queue manager tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.qmgr.util import public_dir


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    yield from public_dir()
