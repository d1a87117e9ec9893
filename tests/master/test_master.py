"""The master as users run it: real processes, real sockets on loopback."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
import importlib

import pytest

from tests.conftest import require
from tests.helpers.ports import reserve_port
from tests.master.util import ROOT, Instance, gone, port_bound, uid_of, wait_for



def _importable(*names: str) -> bool:
    try:
        for name in names:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


#: Whether the SMTP server and what it loads are in place; until then a
#: worker whose smtpd service fails is restarted in a loop, so tests that
#: need steady workers leave smtpd out.
SMTPD_READY = _importable("mailhorn.smtpd.server", "mailhorn.smtpd.checks", "mailhorn.dns",
                          "mailhorn.cleanup.cleanup")


@pytest.fixture
def make() -> Iterator[type[Instance]]:
    made: list[Instance] = []

    class Tracked(Instance):
        def __init__(self, main_cf: str = "", master_cf: str = "") -> None:
            super().__init__(main_cf, master_cf)
            made.append(self)

    yield Tracked
    for instance in made:
        instance.remove()


def smtpd_entry(port: int, *overrides: str) -> str:
    line = f"127.0.0.1:{port} inet n - n - - smtpd\n"
    return line + "".join(f"  -o {o}\n" for o in overrides)


BASE_SERVICES = "pickup unix n - y 60 1 pickup\nrelay unix - - y - - smtp\n"


def steady(port: int) -> str:
    """Services whose workers keep running: smtpd on ``port`` once it is ready."""
    return (smtpd_entry(port) if SMTPD_READY else "") + BASE_SERVICES


def banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s, s.makefile("rb") as f:
        return f.readline().decode()


def test_start_status_stop(make: type[Instance]) -> None:
    port = reserve_port()
    mh = make(master_cf=smtpd_entry(port) + BASE_SERVICES)
    started = mh.ctl("start")
    assert (started.returncode, started.stderr) == (0, "mailhorn/postfix-script: starting the mail system\n")
    pid = mh.master_pid()
    assert pid is not None and pid > 0
    assert (mh.queue / "pid" / "master.pid").read_text() == f"{pid:>32}\n"
    control_sock = os.stat(mh.queue / "pid" / "master.control")
    assert stat.S_ISSOCK(control_sock.st_mode) and stat.S_IMODE(control_sock.st_mode) == 0o600
    assert port_bound(port)
    assert mh.listeners() == [f"127.0.0.1 port {port}"]

    status = mh.ctl("status")
    assert (status.returncode, status.stderr) == (
        0, f"mailhorn/postfix-script: the mail system is running: PID: {pid}\n")
    again = mh.ctl("start")
    assert (again.returncode, again.stderr) == (
        1, "mailhorn/postfix-script: fatal: the mail system is already running\n")

    stopped = mh.ctl("stop")
    assert stopped.returncode == 0
    assert stopped.stderr.startswith("mailhorn/postfix-script: stopping the mail system\n")
    assert mh.master_pid() is None
    assert gone(pid)
    assert not port_bound(port)
    status = mh.ctl("status")
    assert (status.returncode, status.stderr) == (1, "mailhorn/postfix-script: the mail system is not running\n")
    log = mh.log()
    assert f"mailhorn/master[{pid}]: daemon started -- version" in log
    assert f"mailhorn/master[{pid}]: terminating on signal 15" in log


def test_commands_when_not_running(make: type[Instance]) -> None:
    mh = make(master_cf=BASE_SERVICES)
    for command in ("stop", "abort", "reload"):
        result = mh.ctl(command)
        assert (result.returncode, result.stderr) == (
            1, "mailhorn/postfix-script: fatal: the mail system is not running\n"), command
    flush = mh.ctl("flush")
    assert (flush.returncode, flush.stderr) == (
        1, "mailhorn/postfix-script: fatal: Cannot flush mail queue - mail system is down\n")


def test_syslog_name_names_the_messages(make: type[Instance]) -> None:
    mh = make(main_cf="syslog_name = postfix\n", master_cf=BASE_SERVICES)
    assert mh.ctl("status").stderr == "postfix/postfix-script: the mail system is not running\n"


def test_bind_conflict_is_fatal(make: type[Instance]) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        mh = make(master_cf=BASE_SERVICES + smtpd_entry(port))
        result = mh.ctl("start")
        assert result.returncode == 1
        assert result.stderr.splitlines()[1:] == [
            f"mailhorn/master: fatal: bind 127.0.0.1 port {port}: Address already in use",
            "mailhorn/postfix-script: fatal: mail system startup failed",
        ]
        assert mh.master_pid() is None
        assert f"fatal: bind 127.0.0.1 port {port}: Address already in use" in mh.log()
    finally:
        holder.close()


def test_bad_configuration_is_fatal(make: type[Instance]) -> None:
    mh = make(master_cf="smtp inet n - n -\n")
    result = mh.ctl("start")
    assert result.returncode == 1
    # The check that start runs first (as postfix-script does) finds it.
    assert f"mailhorn/postfix-script: fatal: {mh.etc}/master.cf, line 1: bad field count" in result.stderr


def test_killed_worker_is_restarted(make: type[Instance]) -> None:
    port = reserve_port()
    mh = make(main_cf="master_worker_count = 2\n", master_cf=steady(port))
    assert mh.ctl("start").returncode == 0
    workers = mh.started_workers(2)
    assert sorted(workers) == [0, 1]
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: mh.workers().get(0) not in (None, victim))
    assert mh.workers()[1] == workers[1]
    assert f"warning: process worker-0 pid {victim} killed by signal 9" in mh.log()
    if SMTPD_READY:
        assert port_bound(port)
        for _ in range(4):
            assert banner(port).startswith("220 ")
    assert mh.ctl("stop").returncode == 0


def test_workers_run_as_mail_owner(make: type[Instance]) -> None:
    require(os.geteuid() == 0, "the privilege drop needs root")
    user = f"mhtest{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    mh: Instance | None = None
    try:
        entry = pwd.getpwnam(user)
        port = reserve_port()
        mh = make(main_cf=f"mail_owner = {user}\n", master_cf=steady(port))
        assert mh.ctl("start").returncode == 0
        master = mh.master_pid()
        assert master is not None and uid_of(master) == 0
        worker = mh.started_workers()[0]
        assert wait_for(lambda: uid_of(worker) == entry.pw_uid)
        assert port_bound(port) == SMTPD_READY
        for name in ("incoming", "active", "deferred", "private", "public"):
            assert os.stat(mh.queue / name).st_uid == entry.pw_uid, name
        assert os.stat(mh.queue).st_uid == 0 and os.stat(mh.queue / "pid").st_uid == 0
        assert mh.ctl("stop").returncode == 0
    finally:
        if mh is not None:
            mh.kill_everything()
        assert wait_for(lambda: subprocess.run(["userdel", user], capture_output=True).returncode in (0, 6))


def test_mail_owner_must_exist_and_be_unprivileged(make: type[Instance]) -> None:
    require(os.geteuid() == 0, "the privilege checks apply to root")
    mh = make(main_cf="mail_owner = no-such-user-here\n", master_cf=BASE_SERVICES)
    result = mh.ctl("start")
    assert result.returncode == 1
    assert "parameter mail_owner: unknown user name value: no-such-user-here" in result.stderr
    mh.write_main("mail_owner = root\n")
    result = mh.ctl("start")
    assert "parameter mail_owner: user root has privileged user ID: 0" in result.stderr


def test_start_as_an_ordinary_user(make: type[Instance]) -> None:
    require(os.geteuid() == 0, "switching to an ordinary user needs root")
    user = f"mhuser{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    mh: Instance | None = None
    try:
        entry = pwd.getpwnam(user)
        port = reserve_port()
        mh = make(master_cf=steady(port))
        for path in (mh.base, mh.etc, mh.etc / "main.cf", mh.etc / "master.cf"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # An ordinary user, allowed to read (only read) the interpreter wherever it is installed.
        mh.prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                     "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        started = mh.ctl("start")
        assert started.returncode == 0, started.stderr
        master = mh.master_pid()
        assert master is not None and uid_of(master) == entry.pw_uid
        worker = mh.started_workers()[0]
        assert wait_for(lambda: uid_of(worker) == entry.pw_uid)
        assert os.stat(mh.queue / "incoming").st_uid == entry.pw_uid
        assert port_bound(port) == SMTPD_READY
        status = mh.ctl("status")
        assert status.returncode == 0
        assert mh.ctl("stop").returncode == 0
        assert mh.master_pid() is None
    finally:
        if mh is not None:
            mh.kill_everything()
        assert wait_for(lambda: subprocess.run(["userdel", user], capture_output=True).returncode in (0, 6))


def test_reload(make: type[Instance]) -> None:
    old_port, new_port = reserve_port(), reserve_port()
    mh = make(master_cf=smtpd_entry(old_port, "{ smtpd_banner = $myhostname before }") + BASE_SERVICES)
    assert mh.ctl("start").returncode == 0
    if SMTPD_READY:
        assert banner(old_port).endswith(" before\r\n")
    first_worker = mh.started_workers()[0]
    mh.write_master(smtpd_entry(old_port, "{ smtpd_banner = $myhostname after }")
                    + smtpd_entry(new_port) + BASE_SERVICES)
    result = mh.ctl("reload")
    assert (result.returncode, result.stderr) == (0, "mailhorn/postfix-script: refreshing the mail system\n")
    assert wait_for(lambda: mh.workers().get(0) not in (None, first_worker))
    assert mh.listeners() == [f"127.0.0.1 port {old_port}", f"127.0.0.1 port {new_port}"]
    assert port_bound(new_port)
    if SMTPD_READY:
        assert wait_for(lambda: banner(old_port).endswith(" after\r\n"))

    mh.write_master(smtpd_entry(new_port) + BASE_SERVICES)
    assert mh.ctl("reload").returncode == 0
    assert wait_for(lambda: not port_bound(old_port))
    assert mh.listeners() == [f"127.0.0.1 port {new_port}"]

    # A broken configuration is refused and the running one stays.
    mh.write_master(smtpd_entry(old_port) + "broken inet n -\n")
    reloads = mh.log().count("reload -- version")
    result = mh.ctl("reload")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"mailhorn/postfix-script: fatal: reload failed: {mh.etc}/master.cf, line 2: bad field count")
    assert mh.log().count("reload -- version") == reloads
    assert mh.listeners() == [f"127.0.0.1 port {new_port}"]
    assert not port_bound(old_port)
    assert "error: reload refused, the running configuration is kept" in mh.log()

    # SIGHUP reloads too.
    mh.write_master(smtpd_entry(old_port) + BASE_SERVICES)
    pid = mh.master_pid()
    assert pid is not None
    os.kill(pid, signal.SIGHUP)
    assert wait_for(lambda: port_bound(old_port) and not port_bound(new_port))
    assert mh.ctl("stop").returncode == 0


def test_abort_kills_master_and_workers(make: type[Instance]) -> None:
    mh = make(main_cf="master_worker_count = 2\n", master_cf=steady(reserve_port()))
    assert mh.ctl("start").returncode == 0
    pid = mh.master_pid()
    workers = list(mh.started_workers(2).values())
    result = mh.ctl("abort")
    assert (result.returncode, result.stderr) == (0, "mailhorn/postfix-script: aborting the mail system\n")
    assert mh.master_pid() is None
    assert pid is not None and wait_for(lambda: all(gone(p) for p in (pid, *workers)))


def test_flush_reaches_the_master(make: type[Instance]) -> None:
    mh = make(master_cf=BASE_SERVICES)
    assert mh.ctl("start").returncode == 0
    result = mh.ctl("flush")
    assert (result.returncode, result.stderr) == (0, "")
    assert mh.ctl("stop").returncode == 0


def test_start_fg_stays_in_the_foreground(make: type[Instance]) -> None:
    port = reserve_port()
    mh = make(master_cf=smtpd_entry(port) + BASE_SERVICES)
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "mailhorn.cli.control", "-c", str(mh.etc), "start-fg"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_for(lambda: mh.master_pid() == proc.pid)
        assert wait_for(lambda: port_bound(port))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert err.startswith("mailhorn/postfix-script: starting the mail system\n")
        assert "master: daemon started -- version" in err
        assert "master: terminating on signal 15" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_connection_limits_are_shared_by_all_workers(make: type[Instance]) -> None:
    require(SMTPD_READY, "mailhorn.smtpd.server is not in place yet")
    port = reserve_port()
    mh = make(main_cf=("master_worker_count = 3\nsmtpd_client_connection_count_limit = 2\n"
                       "smtpd_client_event_limit_exceptions =\n"),
              master_cf=smtpd_entry(port) + BASE_SERVICES)
    assert mh.ctl("start").returncode == 0
    assert len(mh.started_workers(3)) == 3
    clients: list[socket.socket] = []

    def connect() -> tuple[socket.socket, str]:
        sock = socket.socket()
        sock.settimeout(30)
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        clients.append(sock)
        with sock.makefile("rb") as f:
            return sock, f.readline().decode()

    try:
        # Many connections, whichever worker accepts each: never more than two at once.
        first, reply = connect()
        assert reply.startswith("220 ")
        second, reply = connect()
        assert reply.startswith("220 ")
        for _ in range(4):
            _sock, reply = connect()
            assert reply.startswith("421 4.7.0 ") and "too many connections from 127.0.0.2" in reply
        first.close()

        def third_accepted() -> bool:
            return connect()[1].startswith("220 ")

        assert wait_for(third_accepted)
    finally:
        for sock in clients:
            sock.close()
    assert mh.ctl("stop").returncode == 0


def test_start_fg_tells_systemd_ready_reloading_and_stopping(make: type[Instance], tmp_path: Path) -> None:
    """A Type=notify unit learns READY=1 (with MAINPID), RELOADING=1/READY=1 and STOPPING=1."""
    port = reserve_port()
    mh = make(master_cf=smtpd_entry(port) + BASE_SERVICES)
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(30)
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), NOTIFY_SOCKET=notify_path)
    proc = subprocess.Popen([sys.executable, "-m", "mailhorn.cli.control", "-c", str(mh.etc), "start-fg"],
                            stderr=subprocess.DEVNULL, env=env)
    try:
        assert listener.recv(4096).decode() == f"READY=1\nMAINPID={proc.pid}"
        assert port_bound(port)
        proc.send_signal(signal.SIGHUP)
        assert listener.recv(4096).decode() == "RELOADING=1"
        assert listener.recv(4096).decode() == "READY=1"
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096).decode() == "STOPPING=1"
        assert proc.wait(timeout=60) == 0
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
