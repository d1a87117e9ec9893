"""local(8)'s require_home_directory and biff: real deliveries to system users,
the mailbox read on disk and comsat's datagram caught on a UDP socket of the test's own."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.delivery import biff
from mailhorn.delivery.privs import Identity
from mailhorn.delivery.request import Action
from mailhorn.queue.store import QueueStore
from tests.conftest import require
from tests.delivery.smtp_helpers import LmtpSink
from tests.delivery.util import deliver_local as deliver
from tests.delivery.util import make_config, make_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="local delivery to system users needs root")


@pytest.fixture
def homeless_user() -> Iterator[Identity]:
    """An account whose home directory does not exist."""
    name = "mh" + secrets.token_hex(4)
    home = f"/nonexistent/{name}"
    proc = subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", name],
                          capture_output=True, text=True, timeout=60)
    require(proc.returncode == 0, f"useradd: {proc.stderr}")
    try:
        yield Identity.from_passwd(pwd.getpwnam(name))
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)


@pytest.fixture
def comsat(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A UDP socket standing in for comsat; biff notices go to its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    monkeypatch.setattr(biff, "BIFF_HOST", "127.0.0.1")
    monkeypatch.setattr(biff, "BIFF_PORT", sock.getsockname()[1])
    try:
        yield sock
    finally:
        sock.close()


def setup(tmp_path: Path, public_dir: Path, extra: str) -> tuple[QueueStore, object, Path]:
    spool = public_dir / "spool"
    spool.mkdir(exist_ok=True)
    os.chmod(spool, 0o1777)
    config = make_config(tmp_path, (
        "compatibility_level = 3.6\nmyorigin = example.com\nmydestination = example.com\n"
        "alias_maps =\nlocal_recipient_maps =\nhome_mailbox =\n"
        f"mail_spool_directory = {spool}\n" + extra))
    return make_store(config), config, spool


def no_datagram(sock: socket.socket) -> bool:
    sock.settimeout(0.3)
    try:
        sock.recvfrom(4096)
    except TimeoutError:
        return True
    return False


# -- require_home_directory ------------------------------------------------------------------

def test_missing_home_defers_when_required(tmp_path: Path, public_dir: Path, homeless_user: Identity) -> None:
    store, config, spool = setup(tmp_path, public_dir, "require_home_directory = yes\n")
    [status] = deliver(config, store, [f"{homeless_user.user}@example.com"])
    assert (status.action, status.dsn, status.relay) == (Action.DEFERRED, "4.3.0", "local"), status
    assert status.text == f"cannot access home directory {homeless_user.home}: No such file or directory"
    assert not (spool / homeless_user.user).exists()


def test_missing_home_is_fine_by_default(tmp_path: Path, public_dir: Path, homeless_user: Identity) -> None:
    store, config, spool = setup(tmp_path, public_dir, "")
    [status] = deliver(config, store, [f"{homeless_user.user}@example.com"])
    assert (status.action, status.text) == (Action.DELIVERED, "delivered to mailbox"), status
    assert b"Subject: delivery test" in (spool / homeless_user.user).read_bytes()


def test_existing_home_passes_the_check(tmp_path: Path, public_dir: Path, system_user: Identity) -> None:
    store, config, spool = setup(tmp_path, public_dir, "require_home_directory = yes\n")
    [status] = deliver(config, store, [f"{system_user.user}@example.com"])
    assert (status.action, status.text) == (Action.DELIVERED, "delivered to mailbox"), status
    assert (spool / system_user.user).stat().st_uid == system_user.uid


def test_home_check_comes_before_mailbox_transport(tmp_path: Path, public_dir: Path,
                                                   homeless_user: Identity) -> None:
    sink = LmtpSink()
    try:
        store, config, _ = setup(tmp_path, public_dir, "require_home_directory = yes\n"
                                                       f"mailbox_transport = lmtp:unix:{sink.socket}\n")
        (tmp_path / "etc" / "master.cf").write_text("lmtp unix - - n - - lmtp\n")
        homeless, unknown = deliver(config, store, [f"{homeless_user.user}@example.com", "ghost@example.com"])
        assert (homeless.action, homeless.dsn) == (Action.DEFERRED, "4.3.0"), homeless
        assert unknown.action is Action.DELIVERED, unknown  # no account: no home to check
        assert len(sink.wait_messages(1)) == 1
    finally:
        sink.stop()


# -- biff ------------------------------------------------------------------------------------

def test_biff_tells_comsat_where_each_new_message_starts(tmp_path: Path, public_dir: Path,
                                                         system_user: Identity, comsat: socket.socket) -> None:
    store, config, spool = setup(tmp_path, public_dir, "")
    address = f"{system_user.user}@example.com"
    [first] = deliver(config, store, [address])
    assert first.action is Action.DELIVERED, first
    data, _ = comsat.recvfrom(4096)
    assert data == f"{system_user.user}@0".encode() + b"\0"
    size = (spool / system_user.user).stat().st_size
    [second] = deliver(config, store, [address])
    assert second.action is Action.DELIVERED, second
    data, _ = comsat.recvfrom(4096)
    assert data == f"{system_user.user}@{size}".encode() + b"\0"
    mailbox = (spool / system_user.user).read_bytes()
    assert mailbox[size:].startswith(b"From sender@example.org ")
    assert mailbox.count(b"\nFrom sender@example.org ") == 1


def test_biff_also_for_a_home_mbox(tmp_path: Path, public_dir: Path, system_user: Identity,
                                   comsat: socket.socket) -> None:
    store, config, _ = setup(tmp_path, public_dir, "")
    config = make_config(tmp_path, "compatibility_level = 3.6\nmyorigin = example.com\nalias_maps =\n"
                                   "local_recipient_maps =\nhome_mailbox = Mailbox\n")
    [status] = deliver(config, store, [f"{system_user.user}@example.com"])
    assert status.action is Action.DELIVERED, status
    assert (Path(system_user.home) / "Mailbox").stat().st_size > 0
    data, _ = comsat.recvfrom(4096)
    assert data == f"{system_user.user}@0".encode() + b"\0"


def test_no_biff_for_maildir_or_when_turned_off(tmp_path: Path, public_dir: Path, system_user: Identity,
                                                 comsat: socket.socket) -> None:
    store, config, spool = setup(tmp_path, public_dir, "biff = no\n")
    [status] = deliver(config, store, [f"{system_user.user}@example.com"])
    assert status.action is Action.DELIVERED and (spool / system_user.user).exists(), status
    assert no_datagram(comsat)
    config = make_config(tmp_path, "compatibility_level = 3.6\nmyorigin = example.com\nalias_maps =\n"
                                   "local_recipient_maps =\nhome_mailbox = Maildir/\n")
    [status] = deliver(config, store, [f"{system_user.user}@example.com"])
    assert (status.action, status.text) == (Action.DELIVERED, "delivered to maildir"), status
    assert no_datagram(comsat)


def test_nobody_listening_changes_nothing(tmp_path: Path, public_dir: Path, system_user: Identity,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setattr(biff, "BIFF_PORT", closed_port)
    store, config, spool = setup(tmp_path, public_dir, "")
    for _ in range(2):
        [status] = deliver(config, store, [f"{system_user.user}@example.com"])
        assert (status.action, status.text) == (Action.DELIVERED, "delivered to mailbox"), status
    assert (spool / system_user.user).read_bytes().count(b"Subject: delivery test") == 2
