"""mail_spool_directory mbox delivery under a master started as root.

Postfix's default mailbox (no ``home_mailbox``, no ``mailbox_command``) is
``mail_spool_directory/USER``, an mbox in a spool that is root's
(``root:mail`` 2775 like Debian's /var/mail). The workers run as
``mail_owner`` and cannot write there, so the spawner appends the message as
root with the path and locking of its own configuration: checked here on
the spool file on disk after mail sent over SMTP, and by the spawner's
refusals (root, a name with ``/``, a uid or gid that is not the account's).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import Config, load
from mailhorn.master.spawner import Policy, Refusal, spool_parameters
from mailhorn.services import DEFAULT_MASTER_CF
from tests.conftest import require
from tests.helpers.ports import reserve_port
from tests.master.util import Instance, as_owner_request, free_uid, send_mail, useradd, userdel, wait_for


class Spool:
    """A running root master whose local(8) delivers to ``spool``."""

    def __init__(self, mh: Instance, owner: str, user: str, port: int) -> None:
        self.mh = mh
        self.owner = pwd.getpwnam(owner)
        self.user = pwd.getpwnam(user)
        self.port = port
        self.spool = mh.base / "spool"


@pytest.fixture
def spool_system() -> Iterator[Spool]:
    require(os.geteuid() == 0, "the spool test needs a master started as root")
    for tool in ("useradd", "userdel"):
        require(subprocess.run(["which", tool], capture_output=True).returncode == 0, f"{tool} is not installed")
    tag = os.getpid() % 100000
    owner, user = f"mhsow{tag}", f"mhsus{tag}"
    mh = Instance()
    made: list[str] = []
    try:
        useradd("--system", "--no-create-home", "--shell", "/usr/sbin/nologin", owner)
        made.append(owner)
        (mh.base / "home").mkdir(mode=0o755)
        useradd("--create-home", "--home-dir", str(mh.base / "home" / user), "--shell", "/bin/sh", user)
        made.append(user)
        spool = mh.base / "spool"
        spool.mkdir()
        try:
            mail_gid = grp.getgrnam("mail").gr_gid
        except KeyError:
            mail_gid = 0
        os.chown(spool, 0, mail_gid)
        os.chmod(spool, 0o2775)
        port = reserve_port()
        mh.write_main(
            f"mail_owner = {owner}\nmyhostname = mail.home.lan\nmydomain = home.lan\n"
            "mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain\n"
            f"home_mailbox =\nmail_spool_directory = {spool}\n"
            "alias_maps =\nlocal_recipient_maps = unix:passwd.byname\n"
            "mynetworks = 127.0.0.0/8\nqueue_run_delay = 1s\n")
        mh.write_master(DEFAULT_MASTER_CF.replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            f"127.0.0.1:{port} inet n - y - - smtpd"))
        started = mh.ctl("start")
        assert started.returncode == 0, started.stderr
        yield Spool(mh, owner, user, port)
        assert mh.ctl("stop").returncode == 0
    finally:
        mh.remove()
        for name in reversed(made):
            userdel(name)


def _send(system: Spool, rcpt: str, subject: str) -> None:
    send_mail(system.port, rcpt, subject)


def _messages(mailbox: Path) -> list[bytes]:
    """The messages of an mbox, each from its ``From `` line to its blank line."""
    data = mailbox.read_bytes()
    assert data.startswith(b"From ")
    return [b"From " + part for part in data[len(b"From "):].split(b"\n\nFrom ")]


def test_spool_mailbox_written_for_the_user(spool_system: Spool) -> None:
    mh, user = spool_system.mh, spool_system.user
    mh.started_workers()
    mailbox = spool_system.spool / user.pw_name

    _send(spool_system, f"{user.pw_name}@home.lan", "first")
    assert wait_for(lambda: mailbox.exists() and b"body first" in mailbox.read_bytes(), 60), mh.log()[-4000:]
    st = os.stat(mailbox)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    data = mailbox.read_bytes()
    assert data.startswith(b"From sender@example.org ") and data.endswith(b"\n\n")
    assert b"\nSubject: first\n" in data and b"\n\nbody first\n\n" in data

    _send(spool_system, f"{user.pw_name}@home.lan", "second")
    assert wait_for(lambda: b"body second" in mailbox.read_bytes(), 60), mh.log()[-4000:]
    messages = _messages(mailbox)
    assert len(messages) == 2
    assert b"Subject: first" in messages[0] and b"Subject: second" in messages[1]
    assert mailbox.read_bytes().endswith(b"\n\n")
    st = os.stat(mailbox)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, user.pw_gid, 0o600)
    assert not (spool_system.spool / f"{user.pw_name}.lock").exists()
    assert sorted(p.name for p in spool_system.spool.iterdir()) == [user.pw_name]
    assert "status=sent (delivered to mailbox)" in mh.log()

    # root's own mailbox is written for default_privs (nobody), as Postfix's local(8) does.
    _send(spool_system, "root@home.lan", "for-root")
    rootbox = spool_system.spool / "root"
    assert wait_for(lambda: rootbox.exists() and b"body for-root" in rootbox.read_bytes(), 60), mh.log()[-4000:]
    nobody = pwd.getpwnam("nobody")
    assert (os.stat(rootbox).st_uid, os.stat(rootbox).st_gid) == (nobody.pw_uid, nobody.pw_gid)


def _as_owner_request(system: Spool, message: dict[str, object]) -> dict[str, object]:
    """Send ``message`` with one socket to the spawner, as mail_owner; its answer."""
    answer = json.loads(as_owner_request(system.mh, system.owner, message))
    assert isinstance(answer, dict)
    return answer


def test_spawner_refuses_spool_requests_over_its_socket(spool_system: Spool) -> None:
    mh, user = spool_system.mh, spool_system.user
    mh.started_workers()
    assert wait_for((mh.base / "queue" / "pid" / "privsep" / "spawner").exists)
    for request in ({"user": "root", "uid": 0, "gid": 0},
                    {"user": f"../{user.pw_name}", "uid": user.pw_uid, "gid": user.pw_gid},
                    {"user": user.pw_name, "uid": user.pw_uid + 1, "gid": user.pw_gid}):
        answer = _as_owner_request(spool_system, {"op": "spool", "service": "local", **request})
        assert answer["error"]["kind"] == "refused", answer  # type: ignore[index]
    assert list(spool_system.spool.iterdir()) == []
    assert "refused request: spool: " in mh.log()


# -- the checks alone -----------------------------------------------------------------------

@pytest.fixture
def checks(tmp_path: Path) -> tuple[Policy, Config]:
    (tmp_path / "main.cf").write_text("mail_spool_directory = /var/spool/mhtest\n"
                                      "mailbox_delivery_lock = fcntl, dotlock\nmailbox_size_limit = 1000\n")
    return Policy(owner_uid=12345, virtual_minimum_uid=100, config_dir=str(tmp_path)), load(str(tmp_path))


def _nobody(**changes: object) -> dict[str, object]:
    nobody = pwd.getpwnam("nobody")
    return {"user": "nobody", "uid": nobody.pw_uid, "gid": nobody.pw_gid, **changes}


def test_spool_parameters_come_from_the_spawners_configuration(checks: tuple[Policy, Config]) -> None:
    policy, config = checks
    nobody = pwd.getpwnam("nobody")
    params = spool_parameters(_nobody(path="/etc/passwd", size_limit=0), config, policy)
    assert params["path"] == "/var/spool/mhtest/nobody"
    assert params["owner"] == [nobody.pw_uid, nobody.pw_gid] and params["require_owner"] == nobody.pw_uid
    assert params["locks"] == ["fcntl", "dotlock"] and params["size_limit"] == 1000


def test_roots_mailbox_belongs_to_default_privs(checks: tuple[Policy, Config]) -> None:
    policy, config = checks
    nobody = pwd.getpwnam("nobody")
    params = spool_parameters(_nobody(user="root"), config, policy)
    assert params["path"] == "/var/spool/mhtest/root" and params["owner"] == [nobody.pw_uid, nobody.pw_gid]


@pytest.mark.parametrize("changes, reason", [
    ({"user": "root", "uid": 0, "gid": 0}, "is not for uid 0 gid 0"),
    ({"user": "nobody/../root"}, "not a mailbox name"),
    ({"user": "../nobody"}, "not a mailbox name"),
    ({"user": ".lock"}, "not a mailbox name"),
    ({"user": ""}, "not a mailbox name"),
    ({"uid": 0, "gid": 0}, "is not for uid 0 gid 0"),
    ({"uid": free_uid(61000)}, "is not for uid"),
    ({"gid": free_uid(61000)}, "is not for uid"),
    ({"gid": "65534"}, "required"),
    ({"user": "no-such-account-mh"}, "not in the passwd database"),
])
def test_spool_requests_refused(checks: tuple[Policy, Config], changes: dict[str, object], reason: str) -> None:
    policy, config = checks
    with pytest.raises(Refusal, match=reason):
        spool_parameters(_nobody(**changes), config, policy)


def test_maildir_spool_is_not_the_spawners(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("mail_spool_directory = /var/spool/mhtest/\n")
    policy = Policy(owner_uid=12345, virtual_minimum_uid=100, config_dir=str(tmp_path))
    with pytest.raises(Refusal, match="not an mbox spool"):
        spool_parameters(_nobody(), load(str(tmp_path)), policy)
