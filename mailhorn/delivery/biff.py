"""The "new mail" notice to the local biff service (comsat), after a mailbox delivery.

What it does
    :func:`notify` sends one UDP datagram to :data:`BIFF_HOST` port
    :data:`BIFF_PORT` (``biff 512/udp`` in /etc/services, served by comsat):
    ``USER@OFFSET`` followed by a NUL byte, where OFFSET is the byte offset in
    the mailbox file at which the new message begins. These are the bytes
    Postfix 3.7's local(8) sends after appending to an mbox mailbox (spool
    or ``home_mailbox``); comsat then shows the start of the message on the
    terminals of a user who ran ``biff y``. Maildir deliveries and ``/file``
    destinations send nothing, as in Postfix.

    Fire and forget: UDP to a port where nothing listens is silently lost,
    and any error (no route, no buffer space) is logged as a warning and
    never changes the outcome of the delivery.

Parameters read
    None here: local(8) calls it when ``biff`` is yes.
"""

from __future__ import annotations

import socket

from mailhorn import log

#: Where comsat listens. Module constants, so a test can point them at its own socket.
BIFF_HOST = "127.0.0.1"
BIFF_PORT = 512


def datagram(user: str, offset: int) -> bytes:
    """The notice for ``user``: new mail starting at byte ``offset`` of the mailbox."""
    return f"{user}@{offset}".encode("utf-8", "surrogateescape") + b"\0"


def notify(user: str, offset: int, *, program: str = "local") -> None:
    """Tell comsat that ``user`` has new mail at ``offset``; never raises."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(datagram(user, offset), (BIFF_HOST, BIFF_PORT))
    except OSError as exc:
        log.warning(f"biff_notify: {exc.strerror or exc}", program=program)
