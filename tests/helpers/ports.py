"""Loopback ports for test servers, allocated without races.

Two ways, one for each kind of server:

* A server that runs in the test's own process takes the socket itself:
  :func:`listening_socket` binds port 0 and listens, so the kernel's choice is
  held from the start and nothing can take it in between.
* A server in another process (the mail system started from a master.cf, a
  private Postfix, a database client told "nothing listens here") needs a
  number before it binds. :func:`reserve_port` gives one from a block of
  ports this process owns: the blocks lie below the kernel's ephemeral range
  (``net.ipv4.ip_local_port_range``), so no ``bind(port 0)`` and no outgoing
  connection's source port can fall into them, and a block is claimed by
  binding an abstract Unix socket named after it, which every test process
  tries first, and which the kernel lets go when the process ends. A port is
  handed out once per process and only when a probe bind (without
  ``SO_REUSEADDR``, on the wildcard address, TCP and UDP) shows that nothing
  holds it, not even a connection in TIME_WAIT left by an earlier process.

The former way, binding port 0, closing, and handing the number on, let
another test's socket take the port before the server bound it ("Address
already in use" now and then in full runs).
"""

from __future__ import annotations

import atexit
import errno
import os
import random
import socket
import threading

__all__ = ["bind_tcp_and_udp", "listening_socket", "reserve_port"]

#: Ports per block a process claims at a time.
BLOCK = 64
#: The lowest port handed out: above the well-known ports and the usual
#: fixed ones of mail software (10024-10026 content filters, 3306, 5432, ...).
LOWEST = 20000
_LOCK_PREFIX = "mailhorn-tests-ports-"

_lock = threading.Lock()
_blocks: list[socket.socket] = []
_pending: list[int] = []
_tried_blocks: set[int] = set()


def listening_socket(host: str = "127.0.0.1", backlog: int = 128,
                     family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """A TCP socket bound to a port of the kernel's choice on ``host``, listening."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_tcp_and_udp(host: str = "127.0.0.1", backlog: int = 8) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket bound to the same port (a DNS server's pair).

    The TCP socket takes a port of the kernel's choice; when the same UDP
    port is taken, both are let go and another port is tried.
    """
    for _ in range(100):
        tcp = listening_socket(host, backlog)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((host, tcp.getsockname()[1]))
        except OSError as exc:
            tcp.close()
            udp.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return tcp, udp
    raise OSError(errno.EADDRINUSE, "no port free for both TCP and UDP")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _claim_block(index: int) -> socket.socket | None:
    """Bind the abstract socket that marks block ``index`` as this process's, or None if taken."""
    marker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        marker.bind(f"\0{_LOCK_PREFIX}{index}")
    except OSError:
        marker.close()
        return None
    return marker


def _unused(port: int) -> bool:
    """Whether nothing holds ``port`` on any IPv4 address, TCP or UDP, even in TIME_WAIT."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def _next_block() -> None:
    """Claim one more block of ports for this process (caller holds ``_lock``)."""
    high = _ephemeral_low()
    low = LOWEST if high - LOWEST >= 4 * BLOCK else 1024
    count = (high - low) // BLOCK
    if count <= 0:
        raise RuntimeError(f"no ports below the ephemeral range (it starts at {high})")
    # Processes start at different blocks, so they seldom meet on a marker.
    start = random.SystemRandom().randrange(count)
    for step in range(count):
        index = (start + step) % count
        if index in _tried_blocks:
            continue
        marker = _claim_block(index)
        if marker is None:
            continue
        _tried_blocks.add(index)
        _blocks.append(marker)
        first = low + index * BLOCK
        _pending.extend(range(first + BLOCK - 1, first - 1, -1))
        return
    raise RuntimeError(f"every block of test ports is claimed or used up (pid {os.getpid()})")


@atexit.register
def _release_blocks() -> None:
    """Let the blocks go at exit (the kernel would, but quietly is better)."""
    while _blocks:
        _blocks.pop().close()


def reserve_port() -> int:
    """A loopback TCP/UDP port no other test process is given and nothing holds now.

    For servers started in another process, which bind the port themselves;
    and for a port a client must find closed. Each call gives a new port;
    the port stays this process's until it ends.
    """
    with _lock:
        while True:
            if not _pending:
                _next_block()
            port = _pending.pop()
            if _unused(port):
                return port
