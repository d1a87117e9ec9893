"""Fixtures of the end-to-end tests: servers, their ordinary user, smtp-sink.

``run_user`` is a system user made for this test module (``useradd`` with a
home under /tmp; removed afterwards) that servers run as when a test wants
the unprivileged mode; without root the tests run as the current user.
``make_server`` builds :class:`tests.e2e.util.Server` instances and removes
them (processes stopped by pid, files deleted) after the test.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.delivery.smtp_helpers import SmtpSink
from tests.e2e.util import Server, private_dir, system_user

MakeServer = Callable[..., Server]


@pytest.fixture(scope="module")
def run_user() -> Iterator[pwd.struct_passwd]:
    """The ordinary user servers run as (the current user when not root)."""
    if os.geteuid() != 0:
        yield pwd.getpwuid(os.getuid())
        return
    parent = private_dir("mailhorn-e2e-home-")
    try:
        yield from system_user(f"mhe2e{os.getpid() % 100000}", parent / "home")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can see a failure."""
    report = yield
    setattr(item, f"report_{call.when}", report)
    return report


@pytest.fixture
def make_server(run_user: pwd.struct_passwd, request: pytest.FixtureRequest) -> Iterator[MakeServer]:
    made: list[Server] = []

    def make(main_cf: str = "", *, as_root: bool = False, master_extra: str = "") -> Server:
        user = None if as_root or os.geteuid() != 0 else run_user
        server = Server(main_cf, user=user, master_extra=master_extra)
        made.append(server)
        return server

    yield make
    call = getattr(request.node, "report_call", None)
    for server in made:
        if call is not None and call.failed:
            print(f"--- maillog of {server.base}\n{server.log()}")
        server.remove()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """Postfix's smtp-sink on 127.0.0.3 (an ephemeral port), keeping every message."""
    peer = SmtpSink(tmp_path)
    try:
        yield peer
    finally:
        peer.stop()
