"""Many logins at once through a root master: every mail process starts and serves.

Each IMAP login of a system user under a root master makes the worker (on
uvloop) ask the spawner for a mail process, in a thread, while the event
loop closes the log pipes of sessions that end. A pipe closed twice (once by
libuv, once by its file object) used to take the descriptor of whatever
another thread had just opened under the same number: about one login in
two hundred failed with ``[Errno 9] Bad file descriptor`` (``NO
[SERVERBUG]``) and sessions were cut mid-way.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailhorn.privsep import _PipeEnd
from tests.conftest import require
from tests.master.test_privsep import PASSWORD, System, system  # noqa: F401 - the root-master fixture

LOGINS = 300
CONCURRENCY = 30


def _session(system: System, n: int) -> str:
    """One login, SELECT and LOGOUT; '' when all went well, else what went wrong."""
    try:
        imap = imaplib.IMAP4("127.0.0.1", system.ports["imap"], timeout=60)
    except OSError as exc:
        return f"{n}: connect: {exc}"
    try:
        imap.login(system.user.pw_name, PASSWORD)
        status, data = imap.select("INBOX")
        if status != "OK":
            return f"{n}: SELECT {status} {data!r}"
        status, noop_data = imap.noop()
        if status != "OK":
            return f"{n}: NOOP {status} {noop_data!r}"
        imap.logout()
    except (imaplib.IMAP4.error, OSError) as exc:
        return f"{n}: {exc.__class__.__name__}: {exc}"
    return ""


def test_hundreds_of_concurrent_logins_all_get_a_mail_process(system: System) -> None:  # noqa: F811
    system.mh.started_workers()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        failures = [f for f in pool.map(lambda n: _session(system, n), range(LOGINS)) if f]
    log = system.mh.log()
    assert not failures, failures[:5]
    assert "cannot start the mail process" not in log
    assert "Bad file descriptor" not in log
    assert log.count("/imap-login[") >= LOGINS


def _race(run: object, iterations: int) -> list[str]:
    """Open and close pipe transports on the loop ``run`` gives while a thread opens sockets."""
    errors: list[str] = []
    stop = threading.Event()

    def opener() -> None:
        import socket
        while not stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                for _ in range(20):
                    os.fstat(sock.fileno())
            except OSError as exc:
                errors.append(str(exc))
            finally:
                try:
                    sock.close()
                except OSError as exc:
                    errors.append(str(exc))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(iterations):
            r, w = os.pipe2(os.O_CLOEXEC)
            reader = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                        _PipeEnd(r, loop))
            os.close(w)
            try:
                await asyncio.wait_for(reader.read(), 10)
            except TimeoutError:
                errors.append("the end of a pipe was never seen: its descriptor was taken")
                return
            finally:
                transport.close()
            await asyncio.sleep(0)

    thread = threading.Thread(target=opener)
    thread.start()
    try:
        run(main())  # type: ignore[operator]
    finally:
        stop.set()
        thread.join()
    return errors


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_pipe_transports_close_their_descriptor_once(loop_name: str) -> None:
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError:
            require(False, "uvloop is not installed")
        run: object = uvloop.run
    else:
        run = asyncio.run
    assert _race(run, 2000) == []
