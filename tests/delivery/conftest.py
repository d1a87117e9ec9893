"""Fixtures for the delivery tests: real system users (root only) and helper cleanup."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.delivery.privs import Identity, shutdown_helpers
from tests.conftest import require


@pytest.fixture(autouse=True)
def _stop_helpers() -> Iterator[None]:
    yield
    shutdown_helpers()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user can reach and write (deliveries run as other users)."""
    base = Path(tempfile.mkdtemp(prefix="mailhorn-delivery-"))
    os.chmod(base, 0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _make_user(base: Path) -> Identity:
    name = "mh" + secrets.token_hex(4)
    home = base / name
    proc = subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/sh", name],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return Identity.from_passwd(pwd.getpwnam(name))


def _remove_user(identity: Identity) -> None:
    subprocess.run(["userdel", identity.user], capture_output=True, timeout=60)


@pytest.fixture
def system_user() -> Iterator[Identity]:
    """A real account made with useradd (home under a world-traversable temp dir); removed after."""
    require(os.geteuid() == 0, "creating system users needs root")
    require(shutil.which("useradd") is not None, "useradd is not installed")
    base = Path(tempfile.mkdtemp(prefix="mailhorn-home-"))
    os.chmod(base, 0o755)
    user = _make_user(base)
    try:
        yield user
    finally:
        _remove_user(user)
        shutil.rmtree(base, ignore_errors=True)
