"""The services table, endpoint resolution, the shared anvil and the qmgr wakeup."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from mailhorn.anvil import Anvil
from mailhorn.config.load import load
from mailhorn.config.mastercf import parse_master_cf
from mailhorn.master.listeners import BindError, Endpoint, ListenerSet, endpoints, resolve_port
from mailhorn.runtime_build import QmgrWakeup, build_runtime, qmgr_wakeup
from mailhorn.services import DEFAULT_MASTER_CF, INTERNAL, SERVICES, plan, read_services

MASTER_CF = """\
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
relay     unix  -       -       y       -       -       smtp
local     unix  -       n       n       -       -       local
mystery   unix  -       -       y       -       -       frobnicate
"""


def test_plan_sorts_services(confdir: Path) -> None:
    config = load(str(confdir))
    result = plan(parse_master_cf(MASTER_CF, "/etc/x/master.cf"), config)
    assert [p.service.name for p in result.network] == ["smtp", "submission"]
    assert [p.service.name for p in result.singletons] == ["pickup", "qmgr"]
    assert [(t.name, t.agent) for t in result.transports] == [("relay", "smtp"), ("local", "local")]
    assert result.warnings == (
        '/etc/x/master.cf: line 10: unknown command "frobnicate" for service mystery/unix; skipped',)
    submission = result.network[1].config
    assert submission.get("smtpd_tls_security_level") == "encrypt"
    assert submission.get("service_name") == "submission"
    assert result.network[0].config.get("smtpd_tls_security_level") == ""
    assert result.transports[0].config.get("service_name") == "relay"


def test_postfix_internal_daemons_are_accepted(confdir: Path) -> None:
    internal = [name for name, entry in SERVICES.items() if entry.kind == INTERNAL]
    text = "".join(f"s{i} unix - - y - - {name}\n" for i, name in enumerate(internal))
    result = plan(parse_master_cf(text, "m"), load(str(confdir)))
    assert result.warnings == () and result.network == () and result.transports == ()


def test_master_service_disable(confdir: Path) -> None:
    (confdir / "main.cf").write_text("master_service_disable = inet relay/unix\n")
    result = plan(parse_master_cf(MASTER_CF, "m"), load(str(confdir)))
    assert result.network == ()
    assert [t.name for t in result.transports] == ["local"]


def test_default_master_cf_when_missing(confdir: Path) -> None:
    (confdir / "master.cf").unlink()
    master = read_services(str(confdir))
    assert master.services == parse_master_cf(DEFAULT_MASTER_CF, str(confdir / "master.cf")).services
    result = plan(master, load(str(confdir)))
    assert result.warnings == ()
    assert [p.service.key for p in result.network] == ["smtp/inet"]
    assert [p.service.key for p in result.singletons] == ["pickup/unix", "qmgr/unix"]


def test_endpoints(confdir: Path) -> None:
    (confdir / "main.cf").write_text(
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\nqueue_directory = /q\n")
    config = load(str(confdir))
    assert resolve_port("smtp", config) == 25
    assert resolve_port("submission", config) == 587
    assert resolve_port("smtps", config) == 465
    with pytest.raises(BindError, match="unknown service: nosuchservice/tcp"):
        resolve_port("nosuchservice", config)

    def eps(line: str) -> list[Endpoint]:
        service = parse_master_cf(line + "\n", "m").services[0]
        return endpoints(service, config)

    assert eps("smtp inet n - n - - smtpd") == [Endpoint(socket.AF_INET, "127.0.0.1", 25)]
    assert eps("127.0.0.1:10025 inet n - n - - smtpd") == [Endpoint(socket.AF_INET, "127.0.0.1", 10025)]
    assert eps("2525 inet n - n - - smtpd") == [Endpoint(socket.AF_INET, "127.0.0.1", 2525)]
    assert eps("relay unix y - n - - smtpd") == [Endpoint(socket.AF_UNIX, "/q/private/relay")]
    assert eps("relay unix - - n - - smtpd") == [Endpoint(socket.AF_UNIX, "/q/private/relay")]
    assert eps("open unix n - n - - smtpd") == [Endpoint(socket.AF_UNIX, "/q/public/open")]


def test_endpoints_ipv6_and_all(confdir: Path) -> None:
    (confdir / "main.cf").write_text("inet_interfaces = all\ninet_protocols = all\n")
    config = load(str(confdir))
    service = parse_master_cf("[::1]:2526 inet n - n - - smtpd\n", "m").services[0]
    assert endpoints(service, config) == [Endpoint(socket.AF_INET6, "::1", 2526)]
    service = parse_master_cf("2526 inet n - n - - smtpd\n", "m").services[0]
    found = endpoints(service, config)
    assert Endpoint(socket.AF_INET, "0.0.0.0", 2526) in found


def test_public_unix_endpoint(confdir: Path) -> None:
    (confdir / "main.cf").write_text("queue_directory = /q\n")
    service = parse_master_cf("pub unix n - n - - smtpd\n", "m").services[0]
    private = parse_master_cf("pub unix y - n - - smtpd\n", "m").services[0]
    assert service.private is False
    assert endpoints(service, load(str(confdir))) == [Endpoint(socket.AF_UNIX, "/q/public/pub")]
    assert endpoints(private, load(str(confdir))) == [Endpoint(socket.AF_UNIX, "/q/private/pub")]


def test_bind_conflict_and_rebind() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        taken = Endpoint(socket.AF_INET, "127.0.0.1", port)
        with pytest.raises(BindError) as info:
            ListenerSet.empty().rebind([taken], None)
        assert str(info.value) == f"bind 127.0.0.1 port {port}: Address already in use"
        free = Endpoint(socket.AF_INET, "127.0.0.1", 0)
        first = ListenerSet.empty().rebind([free], None)
        sock = first.sockets[free]
        # Unchanged endpoints keep their socket; a failed rebind leaves the set alone.
        assert first.rebind([free], None).sockets[free] is sock
        with pytest.raises(BindError):
            first.rebind([free, taken], None)
        assert first.sockets[free] is sock and sock.getsockname()[0] == "127.0.0.1"
        first.close_except(ListenerSet.empty())
        assert sock.fileno() == -1
    finally:
        holder.close()


# -- anvil ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_anvil_counts_and_windows() -> None:
    clock = Clock()
    anvil = Anvil.create(60.0, workers=2)
    anvil.clock = clock
    try:
        assert anvil.connect("smtp", "127.0.0.2") == (1, 1)
        assert anvil.connect("smtp", "127.0.0.2") == (2, 2)
        assert anvil.connect("smtp", "127.0.0.3") == (1, 1)
        assert anvil.connect("submission", "127.0.0.2") == (1, 1)
        anvil.disconnect("smtp", "127.0.0.2")
        assert anvil.event("message", "smtp", "127.0.0.2") == 1
        assert anvil.event("rcpt", "smtp", "127.0.0.2") == 1
        assert anvil.event("rcpt", "smtp", "127.0.0.2") == 2
        clock.now += 59
        assert anvil.connect("smtp", "127.0.0.2") == (2, 3)
        clock.now += 1  # the window has passed: rates restart, open connections stay
        assert anvil.connect("smtp", "127.0.0.2") == (3, 1)
        assert anvil.event("rcpt", "smtp", "127.0.0.2") == 1
        with pytest.raises(ValueError):
            anvil.event("bogus", "smtp", "127.0.0.2")
    finally:
        anvil.close()


def test_anvil_is_shared_between_processes_and_forgets_dead_workers() -> None:
    anvil = Anvil.create(60.0, workers=3)
    try:
        children = []
        for worker in (1, 2):
            pid = os.fork()
            if pid == 0:
                mine = anvil.for_worker(worker)
                for _ in range(worker):
                    mine.connect("smtp", "127.0.0.9")
                os._exit(0)
            children.append(pid)
        for pid in children:
            assert os.waitpid(pid, 0)[1] == 0
        assert anvil.connect("smtp", "127.0.0.9") == (4, 4)
        anvil.forget_worker(2)
        assert anvil.connect("smtp", "127.0.0.9") == (3, 5)
    finally:
        anvil.close()


def test_anvil_reuses_idle_slots_and_fails_open_when_full() -> None:
    clock = Clock()
    anvil = Anvil.create(10.0, workers=1, slots=4)
    anvil.clock = clock
    try:
        for i in range(4):
            assert anvil.connect("smtp", f"10.0.0.{i}") == (1, 1)
        assert anvil.connect("smtp", "10.0.0.99") == (0, 0)  # full: not counted
        anvil.disconnect("smtp", "10.0.0.1")
        clock.now += 10
        assert anvil.connect("smtp", "10.0.0.99") == (1, 1)  # took the idle slot
        assert anvil.connect("smtp", "10.0.0.0") == (2, 1)
    finally:
        anvil.close()


# -- runtime ----------------------------------------------------------------------


def test_build_runtime_and_wakeup(confdir: Path, tmp_path: Path) -> None:
    (confdir / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n")
    runtime = build_runtime(load(str(confdir)))
    assert runtime.queue.root == f"{tmp_path}/q"
    assert runtime.anvil.connect("smtp", "127.0.0.2") == (1, 1)
    wakeup = qmgr_wakeup(runtime)

    async def main() -> None:
        wakeup.bind(asyncio.get_running_loop())
        runtime.wakeup_qmgr()
        await asyncio.wait_for(wakeup.event.wait(), 5)
        assert not wakeup.flush.is_set()
        wakeup.event.clear()
        await asyncio.to_thread(wakeup.notify, True)  # from another thread
        await asyncio.wait_for(wakeup.event.wait(), 5)
        assert wakeup.flush.is_set()

    asyncio.run(main())


def test_wakeup_through_the_pipe() -> None:
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK)
    try:
        sender = QmgrWakeup(write_fd)
        receiver = QmgrWakeup()
        for _ in range(100000):  # a full pipe is not an error
            sender()
        sender.notify(flush=True)

        async def main() -> None:
            receiver.bind(asyncio.get_running_loop())
            receiver.feed(os.read(read_fd, 1 << 20))
            await asyncio.wait_for(receiver.event.wait(), 5)

        asyncio.run(main())
    finally:
        os.close(read_fd)
        os.close(write_fd)
