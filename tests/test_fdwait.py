"""Waiting on a descriptor above select()'s FD_SETSIZE (mailhorn/fdwait.py)."""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator

import pytest

from mailhorn.fdwait import readable


@pytest.fixture
def high_fd_limit() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_readable_works_above_fd_setsize(high_fd_limit: None) -> None:
    a, b = socket.socketpair()
    high = os.dup2(b.fileno(), 2000)
    try:
        assert not readable(high, 0)
        a.send(b"x")
        assert readable(high, 5)
        a.close()
        os.read(high, 1)
        assert readable(high, 5)  # end of file counts as readable
    finally:
        os.close(high)
        b.close()
