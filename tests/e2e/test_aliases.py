"""Seeds 000 and 002: /etc/aliases with several targets, through the running server.

The server runs as an ordinary user (design.md §3), so it delivers as
itself: the local users of the aliases are real system users whose home
directories that user owns. Mail enters over SMTP, aliases are built with
``mailhorn postalias``, and each test reads what was delivered: Maildirs,
the mbox file, the command's output, smtp-sink's dumps.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.delivery.smtp_helpers import SmtpSink
from tests.e2e.conftest import MakeServer
from tests.e2e.util import Server, parse, private_dir, require_commands, require_smtp_client, system_user, wait_messages
from tests.master.util import wait_for

MESSAGE = (b"From: Sender <sender@client.e2e.test>\nTo: root@home.lan\nSubject: alias test\n"
           b"Message-ID: <alias-test@client.e2e.test>\n\nFrom the first line of the body.\nbye\n")


@pytest.fixture
def homes(run_user: pwd.struct_passwd) -> Iterator[dict[str, pwd.struct_passwd]]:
    """Two local users, hugo and francisco (names made unique), homes owned by the server's user."""
    base = private_dir("mailhorn-e2e-homes-")
    suffix = os.getpid() % 100000
    users: dict[str, pwd.struct_passwd] = {}
    made: list[Iterator[pwd.struct_passwd]] = []
    try:
        for name in ("hugo", "francisco"):
            gen = system_user(f"{name}{suffix}", base / name)
            made.append(gen)
            entry = next(gen)
            os.chown(entry.pw_dir, run_user.pw_uid, run_user.pw_gid)
            users[name] = entry
        yield users
    finally:
        for gen in made:
            for _ in gen:
                pass
        shutil.rmtree(base, ignore_errors=True)


def alias_server(make_server: MakeServer, aliases: str, extra: str = "") -> Server:
    server = make_server(
        "mydestination = $myhostname, localhost, home.lan\n"
        "home_mailbox = Maildir/\n"
        "alias_maps = hash:$config_directory/aliases\n"
        "alias_database = hash:$config_directory/aliases\n" + extra)
    server.write_file("aliases", aliases)
    built = server.tool("postalias", str(server.etc / "aliases"))
    assert built.returncode == 0, built.stderr
    return server


def maildir(user: pwd.struct_passwd) -> Path:
    return Path(user.pw_dir) / "Maildir"


def test_root_alias_reaches_two_users_and_two_remote_addresses(
        make_server: MakeServer, homes: dict[str, pwd.struct_passwd], sink: SmtpSink) -> None:
    """``root: hugo, a@x, b@y, francisco``: one message, four copies, one per target."""
    require_smtp_client()
    hugo, francisco = homes["hugo"].pw_name, homes["francisco"].pw_name
    server = alias_server(make_server, f"postmaster: root\nroot: {hugo}, a@x.e2e.test, b@y.e2e.test, {francisco}\n",
                          f"relayhost = {sink.nexthop}\n")
    server.start()
    queue_id = server.send("sender@client.e2e.test", ["root@home.lan"], MESSAGE)
    for user in (homes["hugo"], homes["francisco"]):
        [delivered] = wait_messages(maildir(user), 1)
        message = parse(delivered.read_bytes())
        assert message["Subject"] == "alias test"
        assert message["Delivered-To"] == f"{user.pw_name}@mx.e2e.test"
        assert message["X-Original-To"] == "root@home.lan"
    # Both remote addresses share the relayhost: one transaction, two RCPT TO.
    [remote] = sink.wait_messages(1, 30)
    assert re.findall(rb"^X-Rcpt-Args: <([^>]+)>", remote, re.M) == [b"a@x.e2e.test", b"b@y.e2e.test"]
    assert b"\nSubject: alias test\n" in remote
    server.wait_queue_empty()
    log = server.log()
    assert re.search(rf"local\[\d+\]: {queue_id}: to=<root@home.lan>, relay=local, .*status=sent \(forwarded as ", log)
    assert f"{queue_id}: removed" in log


def test_command_gets_the_message_and_postfix_environment(
        make_server: MakeServer, homes: dict[str, pwd.struct_passwd], run_user: pwd.struct_passwd) -> None:
    require_commands()
    out = private_dir("mailhorn-e2e-cmd-", run_user)
    try:
        command = f'"|env > {out}/env; cat > {out}/stdin"'
        server = alias_server(make_server, f"postmaster: root\nrobot: {command}\n", "recipient_delimiter = +\n")
        server.start()
        queue_id = server.send("sender@client.e2e.test", ["robot+ext@home.lan"], MESSAGE)
        server.wait_log(rf"{queue_id}: removed")
        env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
        assert env["SENDER"] == "sender@client.e2e.test"
        assert env["RECIPIENT"] == "robot+ext@home.lan"
        assert env["LOCAL"] == "robot+ext"
        assert env["DOMAIN"] == "home.lan"
        assert env["EXTENSION"] == "ext"
        assert env["ORIGINAL_RECIPIENT"] == "robot+ext@home.lan"
        assert env["CLIENT_ADDRESS"] == "127.0.0.1"
        assert env["CLIENT_HELO"] == "client.e2e.test"
        assert env["CLIENT_PROTOCOL"] == "ESMTP"
        assert env["PATH"] == "/usr/bin:/bin"
        for name in ("HOME", "LOGNAME", "USER", "SHELL"):
            assert name in env
        stdin = (out / "stdin").read_bytes()
        assert stdin.startswith(b"From sender@client.e2e.test ")
        message = parse(stdin.split(b"\n", 1)[1])
        assert message["Return-Path"] == "<sender@client.e2e.test>"
        assert message["Delivered-To"] == "robot+ext@home.lan"
        assert message["Subject"] == "alias test"
        assert message.get_content() == "From the first line of the body.\nbye\n"
        assert re.search(rf"{queue_id}: to=<robot\+ext@home.lan>, relay=local, .*status=sent "
                         rf"\(delivered to command: env > ", server.log())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_file_target_gets_mbox_appends(make_server: MakeServer, run_user: pwd.struct_passwd) -> None:
    out = private_dir("mailhorn-e2e-file-", run_user)
    try:
        mbox = out / "archive.mbox"
        server = alias_server(make_server, f"postmaster: root\narchive: {mbox}\n")
        server.start()
        # The second message is sent once the first is in the file, so that
        # it must be appended after it (two messages in the queue at once
        # may be delivered in either order, as with Postfix).
        for sender, message in (("sender@client.e2e.test", MESSAGE),
                                ("other@client.e2e.test", MESSAGE.replace(b"alias test", b"second"))):
            queue_id = server.send(sender, ["archive@home.lan"], message)
            server.wait_log(rf"{queue_id}: to=<archive@home.lan>, .*status=sent \(delivered to file: {mbox}\)")
        data = mbox.read_bytes()
        starts = [line for line in data.split(b"\n") if line.startswith(b"From ")]
        assert [s.split(b" ")[1] for s in starts] == [b"sender@client.e2e.test", b"other@client.e2e.test"]
        # mbox quoting of a body line that starts with "From ", a blank line after each message.
        assert data.count(b"\n>From the first line of the body.\n") == 2
        assert data.endswith(b"bye\n\n")
        pieces = data.split(b"\nFrom other@client.e2e.test ")
        assert len(pieces) == 2
        assert parse(pieces[0].split(b"\n", 1)[1])["Subject"] == "alias test"
        assert parse(pieces[1].split(b"\n", 1)[1])["Subject"] == "second"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_include_list_members_each_get_a_copy(
        make_server: MakeServer, homes: dict[str, pwd.struct_passwd], run_user: pwd.struct_passwd) -> None:
    lists = private_dir("mailhorn-e2e-list-", run_user)
    try:
        hugo, francisco = homes["hugo"], homes["francisco"]
        members = lists / "team.list"
        members.write_text(f"# the team\n{hugo.pw_name}\n{francisco.pw_name}\n")
        os.chown(members, run_user.pw_uid, run_user.pw_gid)
        server = alias_server(make_server, f"postmaster: root\nteam: :include:{members}\n")
        server.start()
        queue_id = server.send("sender@client.e2e.test", ["team@home.lan"], MESSAGE)
        for user in (hugo, francisco):
            [delivered] = wait_messages(maildir(user), 1)
            message = parse(delivered.read_bytes())
            assert message["Delivered-To"] == f"{user.pw_name}@mx.e2e.test"
            assert message["X-Original-To"] == "team@home.lan"
            assert message["Subject"] == "alias test"
        server.wait_queue_empty()
        assert re.search(rf"{queue_id}: to=<team@home.lan>, relay=local, .*status=sent \(forwarded as ",
                         server.log())
    finally:
        shutil.rmtree(lists, ignore_errors=True)
