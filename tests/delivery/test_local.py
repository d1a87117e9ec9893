"""local(8) delivery: system users' Maildirs, aliases re-submitted through cleanup,
``|command``, ``/file``, ``:include:``, ``.forward``, loops and unknown users (seeds 000, 001, 002, 004)."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
from pathlib import Path

import pytest

from mailhorn.cli import postalias
from mailhorn.delivery.local import make_agent
from mailhorn.delivery.privs import Identity
from mailhorn.delivery.request import Action, RecipientStatus
from mailhorn.queue.store import QueueStore
from tests.delivery.util import MESSAGE, content_of, make_config, make_store, queue_message, request_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="local delivery to system users needs root")

NOBODY = pwd.getpwnam("nobody")


def setup(tmp_path: Path, public_dir: Path, aliases: str, extra: str = "") -> tuple[QueueStore, object]:
    alias_file = public_dir / "aliases"
    alias_file.write_text(aliases)
    config = make_config(tmp_path, (
        "compatibility_level = 3.6\n"
        "myorigin = example.com\n"
        "mydestination = example.com\n"
        f"alias_maps = hash:{alias_file}\n"
        "local_recipient_maps = proxy:unix:passwd.byname $alias_maps\n"
        "home_mailbox = Maildir/\n"
        "recipient_delimiter = +\n" + extra))
    assert postalias.run(["-c", str(tmp_path / "etc"), f"hash:{alias_file}"]) == 0
    store = make_store(config)
    return store, config


def deliver(config: object, store: QueueStore, rcpts: list[tuple[str, str | None]], **kw: object) -> list[RecipientStatus]:
    qid = queue_message(store, rcpts, **kw)  # type: ignore[arg-type]
    agent = make_agent(config, "local")  # type: ignore[arg-type]
    return list(asyncio.run(agent.deliver(request_for(store, qid))))


def forwarded_id(status: RecipientStatus) -> str:
    match = re.search(r"forwarded as (\w+)", status.text)
    assert match, status.text
    return match.group(1)


def test_home_maildir_owned_by_the_user(tmp_path: Path, public_dir: Path, system_user: Identity) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n")
    address = f"{system_user.user}@example.com"
    [status] = deliver(config, store, [(address, address.upper())])
    assert status.action is Action.DELIVERED, status
    assert (status.dsn, status.text, status.relay) == ("2.0.0", "delivered to maildir", "local")
    new = Path(system_user.home) / "Maildir" / "new"
    [name] = os.listdir(new)
    st = os.stat(new / name)
    assert (st.st_uid, st.st_gid) == (system_user.uid, system_user.gid)
    assert os.stat(Path(system_user.home) / "Maildir").st_uid == system_user.uid
    data = (new / name).read_bytes()
    assert data == (b"Return-Path: <sender@example.org>\n"
                    + f"X-Original-To: {address.upper()}\nDelivered-To: {address}\n".encode() + MESSAGE)
    assert f",S={len(data)}," in name


def test_root_follows_its_alias(tmp_path: Path, public_dir: Path, system_user: Identity) -> None:
    store, config = setup(tmp_path, public_dir, f"root: {system_user.user}\n")
    [status] = deliver(config, store, [("root@example.com", "root@example.com")])
    assert status.action is Action.EXPANDED and status.dsn == "2.0.0", status
    new_id = forwarded_id(status)
    qf = store.read("incoming", new_id)
    assert [r.address for r in qf.recipients] == [f"{system_user.user}@example.com"]
    assert qf.sender == "sender@example.org"
    body = content_of(store, new_id)
    head, _, text = body.partition(b"\n\n")
    assert b"\nDelivered-To: root@example.com\n" in head
    assert MESSAGE.split(b"\n\n")[0] in head and MESSAGE.endswith(text)
    # Delivering the re-submitted message puts it in the user's Maildir.
    agent = make_agent(config, "local")  # type: ignore[arg-type]
    [second] = asyncio.run(agent.deliver(request_for(store, new_id)))
    assert second.action is Action.DELIVERED, second
    [name] = os.listdir(Path(system_user.home) / "Maildir" / "new")
    assert os.stat(Path(system_user.home) / "Maildir" / "new" / name).st_uid == system_user.uid


def test_alias_with_four_targets_is_one_new_queue_file(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, "root: hugo, a@x, b@y, francisco\n")
    [status] = deliver(config, store, [("root@example.com", None)])
    assert status.action is Action.EXPANDED, status
    qf = store.read("incoming", forwarded_id(status))
    assert [r.address for r in qf.recipients] == ["hugo@example.com", "a@x", "b@y", "francisco@example.com"]
    assert all(r.dsn_orcpt == "rfc822;root@example.com" for r in qf.recipients)


def test_command_gets_the_message_and_postfix_environment(tmp_path: Path, public_dir: Path) -> None:
    out = public_dir / "out"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    store, config = setup(tmp_path, public_dir,
                          f'cmd: "|env > {out}/env; id -u > {out}/uid; cat > {out}/msg"\n')
    attrs = {"client_name": "client.example", "client_address": "127.0.0.9", "helo_name": "helo.example",
             "protocol_name": "ESMTP", "sasl_method": "PLAIN", "sasl_username": "alice"}
    [status] = deliver(config, store, [("cmd+tag@example.com", "CMD+tag@example.com")], attributes=attrs)
    assert status.action is Action.EXPANDED, status
    assert status.text == f'delivered to command: env > {out}/env; id -u > {out}/uid; cat > {out}/msg'
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert env["SENDER"] == "sender@example.org"
    assert env["RECIPIENT"] == "cmd+tag@example.com"
    assert env["LOCAL"] == "cmd+tag"
    assert env["DOMAIN"] == "example.com"
    assert env["EXTENSION"] == "tag"
    assert env["ORIGINAL_RECIPIENT"] == "CMD+tag@example.com"
    assert env["USER"] == env["LOGNAME"] == "cmd"
    assert env["HOME"] == NOBODY.pw_dir and env["SHELL"] == NOBODY.pw_shell
    assert env["CLIENT_ADDRESS"] == "127.0.0.9" and env["CLIENT_HOSTNAME"] == "client.example"
    assert env["CLIENT_HELO"] == "helo.example" and env["CLIENT_PROTOCOL"] == "ESMTP"
    assert env["SASL_METHOD"] == "PLAIN" and env["SASL_USERNAME"] == "alice"
    assert "SASL_SENDER" not in env
    assert env["PATH"] == "/usr/bin:/bin"
    # Root owns the alias table: the command ran as default_privs.
    assert (out / "uid").read_text().strip() == str(NOBODY.pw_uid)
    msg = (out / "msg").read_bytes()
    first, rest = msg.split(b"\n", 1)
    assert re.fullmatch(rb"From sender@example\.org  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", first), first
    assert rest == (b"Return-Path: <sender@example.org>\nX-Original-To: CMD+tag@example.com\n"
                    b"Delivered-To: cmd+tag@example.com\n" + MESSAGE)


@pytest.mark.parametrize(("script", "action", "dsn", "text"), [
    ("true; exit 75", Action.DEFERRED, "4.3.0", "temporary failure"),
    ("echo no such mailbox; exit 1", Action.BOUNCED, "5.3.0",
     'Command died with status 1: "echo no such mailbox; exit 1". Command output: no such mailbox'),
    ("echo 5.2.1 mailbox disabled; exit 1", Action.BOUNCED, "5.2.1", "mailbox disabled"),
    ("echo busy; exit 77", Action.BOUNCED, "5.7.0", "permission denied. Command output: busy"),
])
def test_command_exit_status(tmp_path: Path, public_dir: Path, script: str, action: Action, dsn: str,
                             text: str) -> None:
    store, config = setup(tmp_path, public_dir, f'cmd: "|{script}"\n')
    [status] = deliver(config, store, [("cmd@example.com", None)])
    assert (status.action, status.dsn, status.text) == (action, dsn, text)


def test_command_time_limit(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, 'cmd: "|sleep 30"\n', "command_time_limit = 1s\n")
    [status] = deliver(config, store, [("cmd@example.com", None)])
    assert (status.action, status.dsn) == (Action.BOUNCED, "5.3.0")
    assert status.text == 'Command time limit exceeded: "sleep 30"'


def test_file_gets_an_mbox_append(tmp_path: Path, public_dir: Path) -> None:
    box = public_dir / "archive.mbox"
    store, config = setup(tmp_path, public_dir, f"archive: {box}\n")
    for _ in range(2):
        [status] = deliver(config, store, [("archive@example.com", "archive@example.com")])
        assert (status.action, status.text) == (Action.EXPANDED, f"delivered to file: {box}")
    data = box.read_bytes()
    assert os.stat(box).st_uid == NOBODY.pw_uid
    one = (b"Return-Path: <sender@example.org>\nX-Original-To: archive@example.com\n"
           b"Delivered-To: archive@example.com\n" + MESSAGE.replace(b"\nFrom the", b"\n>From the") + b"\n")
    messages = re.split(rb"(?m)^From sender@example\.org  .{24}\n", data)
    assert messages == [b"", one, one]
    assert not (public_dir / "archive.mbox.lock").exists()


def test_include_members_each_get_a_copy_with_the_owner_as_sender(tmp_path: Path, public_dir: Path) -> None:
    members = public_dir / "list.txt"
    members.write_text("# the list\nann@x.example\nbob@y.example, carl\n")
    store, config = setup(tmp_path, public_dir, f"staff: :include:{members}\nowner-staff: hugo\n")
    [status] = deliver(config, store, [("staff@example.com", None)])
    assert status.action is Action.EXPANDED, status
    qf = store.read("incoming", forwarded_id(status))
    assert [r.address for r in qf.recipients] == ["ann@x.example", "bob@y.example", "carl@example.com"]
    assert qf.sender == "owner-staff@example.com"


def test_include_file_destination_is_restricted_by_default(tmp_path: Path, public_dir: Path) -> None:
    members = public_dir / "list.txt"
    members.write_text(f"{public_dir}/x.mbox\n")
    store, config = setup(tmp_path, public_dir, f"staff: :include:{members}\n")
    [status] = deliver(config, store, [("staff@example.com", None)])
    assert (status.action, status.dsn, status.text) == (Action.BOUNCED, "5.7.1", "mail to file is restricted")
    assert not (public_dir / "x.mbox").exists()


def test_commands_not_allowed_from_aliases(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, 'cmd: "|true"\n', "allow_mail_to_commands = forward\n")
    [status] = deliver(config, store, [("cmd@example.com", None)])
    assert (status.action, status.dsn, status.text) == (Action.BOUNCED, "5.7.1", "mail to command is restricted")


def test_forwarding_loop_bounces(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n")
    looped = b"Delivered-To: Loop@example.com\n" + MESSAGE
    [status] = deliver(config, store, [("loop@example.com", None)], content=looped)
    assert (status.action, status.dsn, status.text) == (
        Action.BOUNCED, "5.4.6", "mail forwarding loop for loop@example.com")


def test_unknown_user(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n")
    [status] = deliver(config, store, [("desconhecido@example.com", None)])
    assert (status.action, status.dsn, status.text) == (
        Action.BOUNCED, "5.1.1", "User unknown in local recipient table")


def test_unknown_user_without_recipient_maps(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n", "local_recipient_maps =\n")
    [status] = deliver(config, store, [("desconhecido@example.com", None)])
    assert (status.action, status.dsn, status.text) == (Action.BOUNCED, "5.1.1", 'unknown user: "desconhecido"')


def test_luser_relay(tmp_path: Path, public_dir: Path) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n", "luser_relay = catch+$user@example.net\n")
    [status] = deliver(config, store, [("nosuch@example.com", None)])
    qf = store.read("incoming", forwarded_id(status))
    assert [r.address for r in qf.recipients] == ["catch+nosuch@example.net"]


def test_dot_forward_and_own_mailbox(tmp_path: Path, public_dir: Path, system_user: Identity) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n")
    forward = Path(system_user.home) / ".forward"
    forward.write_text(f"\\{system_user.user}, other@example.net\n")
    os.chown(forward, system_user.uid, system_user.gid)
    [status] = deliver(config, store, [(f"{system_user.user}@example.com", None)])
    assert status.action is Action.EXPANDED, status
    qf = store.read("incoming", forwarded_id(status))
    assert [r.address for r in qf.recipients] == [f"\\{system_user.user}@example.com", "other@example.net"]
    # The escaped name goes to the mailbox without .forward expansion.
    agent = make_agent(config, "local")  # type: ignore[arg-type]
    statuses = asyncio.run(agent.deliver(request_for(store, qf_id := forwarded_id(status))))
    assert statuses[0].action is Action.DELIVERED and statuses[0].text == "delivered to maildir", statuses
    assert qf_id
    assert len(os.listdir(Path(system_user.home) / "Maildir" / "new")) == 1


def test_mailbox_size_limit_bounces_and_leaves_the_mbox(tmp_path: Path, public_dir: Path,
                                                        system_user: Identity) -> None:
    store, config = setup(tmp_path, public_dir, "postmaster: root\n",
                          "home_mailbox = Mailbox\nmailbox_size_limit = 400\n")
    address = f"{system_user.user}@example.com"
    [first] = deliver(config, store, [(address, None)])
    assert (first.action, first.text) == (Action.DELIVERED, "delivered to mailbox"), first
    box = Path(system_user.home) / "Mailbox"
    size = box.stat().st_size
    assert box.stat().st_uid == system_user.uid
    [second] = deliver(config, store, [(address, None)])
    assert (second.action, second.dsn) == (Action.BOUNCED, "5.2.2"), second
    assert second.text == f"cannot update mailbox {box} for user {system_user.user}. error writing message: File too large"
    assert box.stat().st_size == size
