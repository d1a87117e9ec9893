"""Seed 001: system users with ``home_mailbox = Maildir/`` on a master started as root.

The workers run as a throwaway ``mail_owner``; delivery into a user's home
goes through the spawner (``mailhorn.master.spawner``) as that user. The
user is made for the test (``useradd``) and removed afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.conftest import MakeServer
from tests.e2e.util import Server, parse, private_dir, system_user, wait_messages

SEED_001 = """\
mydomain = home.lan
myorigin = $mydomain
mydestination = home.lan, server.home.lan, localhost.home.lan, localhost
home_mailbox = Maildir/
alias_maps = hash:$config_directory/aliases
alias_database = hash:$config_directory/aliases
message_size_limit = 52428800
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
"""


@pytest.fixture
def seed001(make_server: MakeServer) -> Iterator[tuple[Server, pwd.struct_passwd]]:
    require(os.geteuid() == 0, "delivery as a system user needs a master started as root")
    require(importlib.util.find_spec("mailhorn.master.spawner") is not None,
            "mailhorn.master.spawner (deliveries as other users from a mail_owner worker) is not in place")
    tag = os.getpid() % 100000
    homes = private_dir("mailhorn-e2e-seed001-")
    owners = system_user(f"mhown{tag}")
    users = system_user(f"fribeiro{tag}", homes / "fribeiro")
    try:
        owner = next(owners)
        user = next(users)
        os.chmod(user.pw_dir, 0o700)
        server = make_server(SEED_001 + f"mail_owner = {owner.pw_name}\n", as_root=True)
        server.write_file("aliases", f"# See man 5 aliases for format\npostmaster: root\nroot: {user.pw_name}\n")
        built = server.tool("newaliases")
        assert built.returncode == 0, built.stderr
        server.start()
        yield server, user
        server.stop()
    finally:
        for gen in (users, owners):
            for _ in gen:
                pass
        shutil.rmtree(homes, ignore_errors=True)


def test_user_mail_lands_in_maildir_new_owned_by_the_user(seed001: tuple[Server, pwd.struct_passwd]) -> None:
    server, user = seed001
    address = f"{user.pw_name}@home.lan"
    queue_id = server.send("sender@client.e2e.test", [address],
                           f"From: sender@client.e2e.test\nTo: {address}\nSubject: seed 001\n\nola\n")
    maildir = Path(user.pw_dir) / "Maildir"
    [delivered] = wait_messages(maildir, 1, 60)
    assert delivered.parent == maildir / "new"
    for path in (maildir, maildir / "new", delivered):
        info = os.stat(path)
        assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid), path
    message = parse(delivered.read_bytes())
    assert message["Subject"] == "seed 001"
    assert message["Delivered-To"] == address
    assert message["Return-Path"] == "<sender@client.e2e.test>"
    server.wait_log(rf"local\[\d+\]: {queue_id}: to=<{re.escape(address)}>, relay=local, .*"
                    r"status=sent \(delivered to maildir\)")


def test_root_follows_its_alias(seed001: tuple[Server, pwd.struct_passwd]) -> None:
    server, user = seed001
    queue_id = server.send("sender@client.e2e.test", ["root@home.lan"],
                           "From: sender@client.e2e.test\nTo: root@home.lan\nSubject: for root\n\nhi\n")
    [delivered] = wait_messages(Path(user.pw_dir) / "Maildir", 1, 60)
    assert os.stat(delivered).st_uid == user.pw_uid
    message = parse(delivered.read_bytes())
    assert message["Subject"] == "for root"
    assert message["Delivered-To"] == f"{user.pw_name}@home.lan"
    # Postfix's forward keeps the original recipient in the new queue file.
    assert message["X-Original-To"] == "root@home.lan"
    [line] = server.wait_log(rf"{queue_id}: to=<root@home.lan>, relay=local, .*status=sent \(forwarded as [0-9A-Z]+\)")
    forwarded = line.rsplit(" ", 1)[1].rstrip(")")
    server.wait_log(rf"{forwarded}: to=<{user.pw_name}@home.lan>, orig_to=<root@home.lan>, relay=local, .*"
                    r"status=sent \(delivered to maildir\)")


def test_unknown_user_is_refused_at_rcpt(seed001: tuple[Server, pwd.struct_passwd]) -> None:
    server, user = seed001
    with server.smtp() as client:
        assert client.mail("sender@client.e2e.test")[0] == 250
        code, text = client.rcpt("desconhecido@home.lan")
        assert (code, text) == (550, b"5.1.1 <desconhecido@home.lan>: Recipient address rejected: "
                                     b"User unknown in local recipient table")
        assert client.rcpt(f"{user.pw_name}@home.lan")[0] == 250
    server.wait_log(r"NOQUEUE: reject: RCPT from .*: 550 5\.1\.1 <desconhecido@home\.lan>: Recipient address "
                    r"rejected: User unknown in local recipient table; from=<sender@client\.e2e\.test> "
                    r"to=<desconhecido@home\.lan> proto=ESMTP helo=<client\.e2e\.test>")
    # Refused at RCPT: nothing was queued for it, so it is never bounced.
    assert not any("desconhecido" in line for line in server.log().splitlines() if "status=" in line)
