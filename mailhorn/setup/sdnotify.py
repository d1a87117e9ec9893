"""sd_notify(3): tell systemd about the service's state (``Type=notify`` units).

systemd passes the path of a datagram socket in ``NOTIFY_SOCKET`` (a file
path, or an abstract socket written with a leading ``@``); the service sends
newline-separated ``NAME=value`` assignments to it. mailhorn's master sends
``READY=1`` once every listener is bound (systemd then considers the unit
started), ``RELOADING=1`` and ``READY=1`` around a reload, and
``STOPPING=1`` when it begins to stop.

Without ``NOTIFY_SOCKET`` (not started by systemd) every call does nothing
and returns False. A socket that cannot be reached is not an error for the
mail system: the call returns False.

Parameters read: none (the environment variable ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import os
import socket

ENVIRONMENT = "NOTIFY_SOCKET"


def _address(value: str) -> str | None:
    """The socket address of ``NOTIFY_SOCKET``: a path, or ``\\0name`` for ``@name``."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STATUS=text"``, ...); True when it was sent."""
    value = os.environ.get(ENVIRONMENT, "")
    address = _address(value) if value else None
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True


def ready(pid: int | None = None) -> bool:
    """The service is up: ``READY=1`` (with ``MAINPID`` when given)."""
    state = "READY=1"
    if pid is not None:
        state += f"\nMAINPID={pid}"
    return notify(state)


def reloading() -> bool:
    """A reload has begun; :func:`ready` ends it."""
    return notify("RELOADING=1")


def stopping() -> bool:
    """The service is stopping."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status that ``systemctl status`` shows."""
    return notify("STATUS=" + text.replace("\n", " "))
