"""Shared test fixtures: running mailhorn and the real peers it is compared with.

A test that needs a peer (the installed Postfix as an oracle, MariaDB,
PostgreSQL, swaks, …) asks for it through :func:`require`: without the peer the
test is skipped with the reason, except under ``CI=true`` where a missing peer
is a failure (design.md §7).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The user guides the product must satisfy: ``shared/seeds`` beside the checkout.
SEEDS = Path(os.environ.get("MAILHORN_SEEDS", str(ROOT.parent / "shared" / "seeds")))
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(ok: bool, reason: str) -> None:
    """Skip (or, under CI=true, fail) the calling test unless ``ok``."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"missing test peer under CI=true: {reason}")
    pytest.skip(reason)


def postfix_tool(name: str) -> str:
    """Path of a real Postfix program (``postconf``, ``postmap``, …)."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    require(path is not None, f"Postfix's {name} is not installed")
    assert path is not None
    return path


def run_mailhorn(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``mailhorn ARGS`` as a user would, capturing output."""
    full_env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mailhorn", *args],
        input=stdin, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120,
    )


def backdate_config(config_dir: str | os.PathLike[str], seconds: float = 60.0) -> None:
    """Make main.cf/master.cf look older than a few seconds.

    Postfix's programs wait about two seconds when main.cf was changed within
    the last seconds (to let an editor finish); the files' contents are all
    the oracle needs, so tests move their mtime back instead of waiting.
    """
    now = time.time()
    for name in ("main.cf", "master.cf"):
        path = os.path.join(config_dir, name)
        try:
            if os.stat(path).st_mtime > now - seconds:
                os.utime(path, (now - seconds, now - seconds))
        except FileNotFoundError:
            pass


def run_postfix(tool: str, *args: str, stdin: str | None = None,
                cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a real Postfix tool (the oracle), capturing output."""
    for flag, value in zip(args, args[1:]):
        if flag == "-c":
            backdate_config(value)
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run(
        [postfix_tool(tool), *args], input=stdin, capture_output=True, text=True, env=env,
        cwd=cwd, timeout=120,
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """An empty configuration directory with an empty main.cf and master.cf."""
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text("")
    (d / "master.cf").write_text("")
    return d


@pytest.fixture
def mysql_server() -> Iterator[dict[str, object]]:
    """MariaDB on 127.0.0.1:3306 as root with no password."""
    require(port_open(3306), "MariaDB is not listening on 127.0.0.1:3306")
    yield {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@pytest.fixture
def pgsql_server() -> Iterator[dict[str, object]]:
    """PostgreSQL on 127.0.0.1:5432 with trust authentication."""
    require(port_open(5432), "PostgreSQL is not listening on 127.0.0.1:5432")
    yield {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """Tables are cached and logging is configured per process; each test
    starts with no table open and logging at its defaults."""
    yield
    from mailhorn import log
    from mailhorn.tables.registry import clear_cache

    clear_cache()
    log.setup("mailhorn", syslog_path=None)
