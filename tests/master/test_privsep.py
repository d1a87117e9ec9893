"""Privilege separation with a master started as root (seeds 001 and 004).

The workers run as a throwaway ``mail_owner``; deliveries to a system user's
``~/Maildir``, to a virtual Maildir as uid 5000, and POP3/IMAP logins with a
``chpasswd`` password all go through the spawner, checked on disk, with real
clients against the running master.
"""

from __future__ import annotations

import concurrent.futures
import imaplib
import json
import os
import poplib
import pwd
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.services import DEFAULT_MASTER_CF
from tests.conftest import require, run_mailhorn
from tests.helpers.ports import reserve_port
from tests.helpers.procs import process_tree
from tests.master.util import (
    Instance, as_owner_request, free_uid, send_mail, uid_of, useradd, userdel, wait_for,
)

PASSWORD = "Segredo-123"


def _groups_of(pid: int) -> tuple[int, int, list[int]]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return (int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0]),
            [int(g) for g in fields["Groups"].split()])


class System:
    """A running root master with its throwaway accounts."""

    def __init__(self, mh: Instance, owner: str, user: str, vmail: str, ports: dict[str, int]) -> None:
        self.mh = mh
        self.owner = pwd.getpwnam(owner)
        self.user = pwd.getpwnam(user)
        self.vmail = pwd.getpwnam(vmail)
        self.ports = ports
        self.vbase = mh.base / "vmail"


@pytest.fixture
def system() -> Iterator[System]:
    require(os.geteuid() == 0, "privilege separation needs a master started as root")
    for tool in ("useradd", "userdel", "chpasswd"):
        require(subprocess.run(["which", tool], capture_output=True).returncode == 0, f"{tool} is not installed")
    tag = os.getpid() % 100000
    owner, user, vmail = f"mhown{tag}", f"mhusr{tag}", f"mhvm{tag}"
    mh = Instance()
    made: list[str] = []
    try:
        useradd("--system", "--no-create-home", "--shell", "/usr/sbin/nologin", owner)
        made.append(owner)
        home = mh.base / "home" / user
        (mh.base / "home").mkdir(mode=0o755)
        useradd("--create-home", "--home-dir", str(home), "--shell", "/bin/sh", user)
        made.append(user)
        os.chmod(home, 0o700)
        subprocess.run(["chpasswd"], input=f"{user}:{PASSWORD}\n", text=True, check=True)
        vuid = 5000 if free_uid(5000) == 5000 else free_uid(5001)
        useradd("--system", "--no-create-home", "--uid", str(vuid), "--user-group", "--shell",
                 "/usr/sbin/nologin", vmail)
        made.append(vmail)
        vm = pwd.getpwnam(vmail)
        vbase = mh.base / "vmail"
        vbase.mkdir(mode=0o770)
        os.chown(vbase, vm.pw_uid, vm.pw_gid)
        out = mh.base / "cmdout"
        out.mkdir(mode=0o777)
        os.chmod(out, 0o1777)
        (mh.etc / "aliases").write_text(f"root: {user}\npostmaster: root\n"
                                        f"runcmd: \"|/bin/sh -c 'id -u > {out}/uid; cat > {out}/msg'\"\n")
        (mh.etc / "vmailbox").write_text("v@virt.test virt.test/v/\n")
        ports = {"smtp": reserve_port(), "pop3": reserve_port(), "imap": reserve_port()}
        mh.write_main(
            f"mail_owner = {owner}\nmyhostname = mail.home.lan\nmydomain = home.lan\n"
            "mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain\n"
            f"home_mailbox = Maildir/\nalias_maps = hash:{mh.etc}/aliases\n"
            "local_recipient_maps = unix:passwd.byname $alias_maps\n"
            f"virtual_mailbox_domains = virt.test\nvirtual_mailbox_base = {vbase}\n"
            f"virtual_mailbox_maps = texthash:{mh.etc}/vmailbox\n"
            f"virtual_uid_maps = static:{vm.pw_uid}\nvirtual_gid_maps = static:{vm.pw_gid}\n"
            "passdb_maps = unix:shadow.byname\nmynetworks = 127.0.0.0/8\n"
            "auth_failure_delay = 0\nqueue_run_delay = 1s\n")
        services = DEFAULT_MASTER_CF.replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            f"127.0.0.1:{ports['smtp']} inet n - y - - smtpd\n"
            f"127.0.0.1:{ports['pop3']} inet n - n - - pop3d\n"
            f"127.0.0.1:{ports['imap']} inet n - n - - imapd")
        mh.write_master(services)
        built = run_mailhorn("postalias", "-c", str(mh.etc), f"hash:{mh.etc}/aliases")
        assert built.returncode == 0, built.stderr
        started = mh.ctl("start")
        assert started.returncode == 0, started.stderr
        yield System(mh, owner, user, vmail, ports)
        assert mh.ctl("stop").returncode == 0
    finally:
        mh.remove()
        for name in reversed(made):
            userdel(name)


def _send(system: System, rcpt: str, subject: str) -> None:
    send_mail(system.ports["smtp"], rcpt, subject)


def _delivered(system: System, new: Path, count: int) -> list[Path]:
    assert wait_for(lambda: new.is_dir() and len(list(new.iterdir())) >= count, 60), system.mh.log()[-4000:]
    return sorted(new.iterdir())


def test_root_master_delivers_and_serves_through_the_spawner(system: System) -> None:
    mh, user = system.mh, system.user
    workers = mh.started_workers()
    master = mh.master_pid()
    assert master is not None and uid_of(master) == 0

    # (e) workers run as mail_owner, without any group that could read /etc/shadow.
    shadow = os.stat("/etc/shadow")
    for pid in workers.values():
        assert wait_for(lambda: uid_of(pid) == system.owner.pw_uid)
        uid, gid, groups = _groups_of(pid)
        assert (uid, gid) == (system.owner.pw_uid, system.owner.pw_gid)
        assert shadow.st_uid != uid and shadow.st_gid not in (gid, *groups) and not shadow.st_mode & 0o004

    # (a) seed 001: mail to the system user lands in ~/Maildir/new, owned by the user.
    _send(system, f"{user.pw_name}@home.lan", "direct")
    # (b) root: user.
    _send(system, "root@home.lan", "via-root")
    new = Path(user.pw_dir) / "Maildir" / "new"
    files = _delivered(system, new, 2)
    for path in files:
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), path
    texts = [p.read_text() for p in files]
    assert any("Subject: direct" in t for t in texts) and any("Subject: via-root" in t for t in texts)
    assert os.stat(new.parent).st_uid == user.pw_uid

    # (c) virtual delivery as uid 5000 (or the first free uid after it).
    _send(system, "v@virt.test", "virtual")
    vfiles = _delivered(system, system.vbase / "virt.test" / "v" / "new", 1)
    st = os.stat(vfiles[0])
    assert (st.st_uid, st.st_gid) == (system.vmail.pw_uid, system.vmail.pw_gid)
    assert "Subject: virtual" in vfiles[0].read_text()

    # |command of a root-owned alias runs as default_privs (nobody), never as root or mail_owner.
    _send(system, "runcmd@home.lan", "command")
    out = mh.base / "cmdout"
    assert wait_for(lambda: (out / "msg").exists() and "Subject: command" in (out / "msg").read_text(), 60), \
        mh.log()[-3000:]
    assert (out / "uid").read_text().strip() == str(pwd.getpwnam("nobody").pw_uid)
    assert os.stat(out / "msg").st_uid == pwd.getpwnam("nobody").pw_uid

    # (d) POP3 and IMAP logins with the shadow password read the delivered mail.
    pop = poplib.POP3("127.0.0.1", system.ports["pop3"], timeout=30)
    try:
        pop.user(user.pw_name)
        pop.pass_(PASSWORD)
        count, _size = pop.stat()
        assert count == 2
        bodies = [b"\n".join(pop.retr(n)[1]) for n in (1, 2)]
        assert any(b"Subject: direct" in b for b in bodies)
    finally:
        pop.quit()
    bad = poplib.POP3("127.0.0.1", system.ports["pop3"], timeout=30)
    try:
        bad.user(user.pw_name)
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            bad.pass_("wrong")
    finally:
        bad.quit()

    imap = imaplib.IMAP4("127.0.0.1", system.ports["imap"], timeout=30)
    try:
        imap.login(user.pw_name, PASSWORD)
        status, data = imap.select("INBOX")
        assert status == "OK" and data[0] == b"2"
        status, fetched = imap.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        subjects = b"".join(part[1] for part in fetched if isinstance(part, tuple))
        assert b"Subject: direct" in subjects and b"Subject: via-root" in subjects
        # The session runs in a mail process owned by the user, not in the worker.
        log = mh.log()
        mpids = [int(line.rsplit("mpid=", 1)[1].split(",")[0]) for line in log.splitlines()
                 if "/imap-login[" in line and "]: Login: user=<" in line]
        assert mpids and uid_of(mpids[-1]) == user.pw_uid
        assert mpids[-1] not in workers.values()
        status, _ = imap.store("1", "+FLAGS", "(\\Flagged)")
        assert status == "OK"
    finally:
        imap.logout()
    assert wait_for(lambda: f"/imap({user.pw_name})[" in mh.log() and "]: Disconnected: Logged out" in mh.log())
    flagged = [p for p in (Path(user.pw_dir) / "Maildir" / "cur").iterdir() if "F" in p.name.partition(":2,")[2]]
    assert flagged and all(os.stat(p).st_uid == user.pw_uid for p in flagged)
    assert f"/pop3({user.pw_name})[" in mh.log()


def test_concurrent_virtual_deliveries_share_one_helper(system: System) -> None:
    """Deliveries to one identity run side by side through one helper process:
    each concurrent delivery gets a channel to it, not a process of its own."""
    master = system.mh.master_pid()
    assert master is not None
    count = 24
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _send(system, "v@virt.test", f"parallel {n}"), range(count)))
    files = _delivered(system, system.vbase / "virt.test" / "v" / "new", count)
    assert len(files) == count
    assert {os.stat(p).st_uid for p in files} == {system.vmail.pw_uid}
    subjects = {p.read_text().split("Subject: ", 1)[1].split("\n", 1)[0] for p in files}
    assert subjects == {f"parallel {n}" for n in range(count)}
    as_vmail = [pid for pid in process_tree(master) if uid_of(pid) == system.vmail.pw_uid]
    assert len(as_vmail) == 1, as_vmail


def _as_owner_request(system: System, message: dict[str, object], fds_wanted: int) -> str:
    return as_owner_request(system.mh, system.owner, message, fds_wanted)


def test_spawner_refuses_root_and_strangers(system: System) -> None:
    mh = system.mh
    mh.started_workers()
    path = mh.base / "queue" / "pid" / "privsep" / "spawner"
    assert wait_for(path.exists)
    directory = os.stat(path.parent)
    assert (directory.st_uid, directory.st_gid, directory.st_mode & 0o7777) == (0, system.owner.pw_gid, 0o710)
    sock_st = os.stat(path)
    assert (sock_st.st_uid, sock_st.st_mode & 0o777) == (system.owner.pw_uid, 0o600)

    root = {"kind": "local", "user": "root", "uid": 0, "gid": 0, "groups": [0], "home": "/root"}
    answer = json.loads(_as_owner_request(system, {"op": "helper", "identity": root}, 1))
    assert answer["error"]["kind"] == "refused" and "privileged" in answer["error"]["message"]

    low = {"kind": "virtual", "user": "x@virt.test", "uid": 5, "gid": 5000, "groups": [5000], "home": "/"}
    answer = json.loads(_as_owner_request(system, {"op": "helper", "identity": low}, 1))
    assert answer["error"]["kind"] == "refused" and "virtual_minimum_uid" in answer["error"]["message"]

    stranger = free_uid(60000)
    ghost = {"kind": "local", "user": "ghost", "uid": stranger, "gid": stranger, "groups": [stranger], "home": "/"}
    answer = json.loads(_as_owner_request(system, {"op": "helper", "identity": ghost}, 1))
    assert answer["error"]["kind"] == "refused" and "passwd" in answer["error"]["message"]

    # Root itself (not mail_owner) is refused by its peer credentials, before it says anything.
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        answer = json.loads(sock.recv(65536))
    assert answer == {"error": {"kind": "refused", "message": "not mail_owner"}}
    # And so is an ordinary user: the directory keeps it out before the socket does.
    script = (f"import os, socket\nos.setgroups([]); os.setgid({system.user.pw_gid}); os.setuid({system.user.pw_uid})\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
              f"try:\n    s.connect({str(path)!r})\nexcept PermissionError:\n    print('denied')\n")
    done = subprocess.run(["python3", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "denied", done.stderr

    # The narrow password check answers yes/no without showing a hash.
    import base64
    good = base64.b64encode(PASSWORD.encode()).decode()
    answer = json.loads(_as_owner_request(system, {"op": "verify", "user": system.user.pw_name,
                                                   "password": good}, 0))
    assert answer == {"ok": {"result": "yes"}}
    answer = json.loads(_as_owner_request(system, {"op": "verify", "user": "no-such-user-x",
                                                   "password": good}, 0))
    assert answer == {"ok": {"result": "unknown"}}
    assert "refused request: refusing to run as uid 0 gid 0: privileged" in mh.log()
