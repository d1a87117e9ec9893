"""Serving connections (mailhorn/netserve.py): both accept paths, shutdown, descriptor exhaustion."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from mailhorn import netserve
from mailhorn.smtpd.stream import Connection

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    yield sock
    sock.close()


def run(kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[kind]) as runner:
        runner.run(main())


async def greet(conn: Connection) -> None:
    """A session: a greeting, then echo one read back and close."""
    assert conn.transport is not None
    peer = conn.transport.get_extra_info("peername")
    conn.write(f"220 hello {peer[0]}\r\n".encode())
    data = await conn.read()
    conn.write(data)
    await conn.drain()
    conn.close()


async def talk(port: int) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = await asyncio.wait_for(reader.readline(), 10)
    writer.write(b"ping\r\n")
    echo = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return greeting, echo


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_the_loop_accepts_and_sessions_get_a_reading_connection(kind: str, listener: socket.socket) -> None:
    assert netserve.in_loop_capable(listener)
    port = listener.getsockname()[1]

    async def main() -> None:
        task = asyncio.create_task(netserve.serve_in_loop(listener, greet, 1.0))
        results = await asyncio.gather(*(talk(port) for _ in range(20)))
        assert set(results) == {(b"220 hello 127.0.0.1\r\n", b"ping\r\n")}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(kind, main)
    # The master's socket stays open and listening: only the service stopped.
    assert listener.fileno() >= 0
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_stopping_gives_open_sessions_their_grace_then_cancels_them(kind: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    ended: list[str] = []

    async def linger(conn: Connection) -> None:
        conn.write(b"220 hello\r\n")
        try:
            await conn.read()  # the client never sends
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async def main() -> None:
        task = asyncio.create_task(netserve.serve_in_loop(listener, linger, 0.2))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.readline(), 10) == b"220 hello\r\n"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        writer.close()

    run(kind, main)
    assert ended == ["cancelled"]


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_service_out_of_descriptors_serves_again_once_it_has_some(kind: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main() -> None:
        task = asyncio.create_task(netserve.serve_in_loop(listener, greet, 1.0))
        await asyncio.sleep(0.1)
        clients = [socket.socket() for _ in range(3)]
        filler: list[int] = []
        top = max(int(name) for name in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))
        try:
            while True:  # no descriptor left for accept()
                try:
                    filler.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            for client in clients:
                client.setblocking(False)
                try:
                    client.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
            await asyncio.sleep(0.3)
        finally:
            for fd in filler:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for client in clients:
            client.close()
        await asyncio.sleep(netserve.RESTART_CHECK + 0.5)
        assert await talk(port) == (b"220 hello 127.0.0.1\r\n", b"ping\r\n")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(kind, main)


def test_unix_listeners_are_left_to_the_python_accept_loop(tmp_path: Any) -> None:
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "s"))
    assert not netserve.in_loop_capable(unix)
    unix.close()
