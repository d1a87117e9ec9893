"""pickup(8): moves local submissions from ``maildrop/`` through cleanup into the queue.

:func:`run_pickup` scans ``$queue_directory/maildrop`` every
``poll_interval`` seconds and whenever a datagram arrives on
``$queue_directory/public/pickup`` (``sendmail`` sends one after each
submission, as Postfix's postdrop triggers pickup). Each complete file (a
queue-ID name; ``tmp.*`` files are still being written) is read and
validated, streamed through a cleanup session of source ``pickup`` and
removed once cleanup has committed the queue file, so a crash in between
can only deliver the message twice, never lose it.

A file cleanup refuses for good (header_checks REJECT, no recipients) is
logged and removed; Postfix returns such mail to its sender, which needs the
bounce service and comes with it. A temporary failure (a full disk, a table
that cannot be read) leaves the file for the next scan. A file that does not
validate moves to ``corrupt/``.

Log lines (Postfix's): ``QUEUEID: uid=N from=<sender>`` when a submission
enters cleanup, ``QUEUEID: reject: ...`` lines come from cleanup.

Parameters read: ``queue_directory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from mailhorn import log
from mailhorn.cleanup.cleanup import CleanupSession as ConcreteSession
from mailhorn.cleanup.request import CleanupRequest, Outcome, RecipientRequest, Source
from mailhorn.config.load import Config
from mailhorn.iopool import offload
from mailhorn.queue.maildrop import ATTR_EXTRACT, ATTR_UID, PICKUP_SOCKET
from mailhorn.queue.queuefile import CorruptQueueFile, QueueFile, iter_content, notify_names
from mailhorn.queue.store import QueueStore, is_queue_id
from mailhorn.runtime import Runtime

def _request(qf: QueueFile) -> CleanupRequest:
    uid = int(qf.attributes.get(ATTR_UID, "0") or 0)
    return CleanupRequest(
        source=Source.PICKUP,
        sender=qf.sender,
        recipients=tuple(RecipientRequest(r.address, r.dsn_orcpt, notify_names(r.dsn_notify))
                         for r in qf.recipients),
        sender_fullname=qf.fullname,
        extract_recipients=qf.attributes.get(ATTR_EXTRACT) == "1",
        submit_uid=uid,
        dsn_envid=qf.dsn_envid,
        dsn_ret=qf.dsn_ret.name if qf.dsn_ret is not None else None,
    )


async def pickup_file(store: QueueStore, runtime: Runtime, name: str) -> bool:
    """Feed one maildrop file through cleanup; True when it is done with."""
    try:
        qf = await store.aread("maildrop", name)
    except FileNotFoundError:
        return True
    except CorruptQueueFile as exc:
        log.warning(f"{name}: corrupt maildrop file: {exc}")
        with contextlib.suppress(OSError):
            await store.amove(name, "maildrop", "corrupt")
        return True
    request = _request(qf)
    session = runtime.cleanup.open(request)
    if isinstance(session, ConcreteSession):
        queue_id = await session.start()
        log.info(f"{queue_id}: uid={request.submit_uid} from=<{qf.sender}>")
    try:
        stream = await offload(open, store.path("maildrop", name), "rb")
        try:
            chunks = iter_content(stream, qf)
            while (chunk := await offload(next, chunks, None)) is not None:
                await session.write(chunk)
        finally:
            stream.close()
    except (OSError, CorruptQueueFile) as exc:
        await session.abort()
        log.warning(f"{name}: read maildrop file: {exc}")
        return False
    result = await session.finish()
    if result.outcome is Outcome.REJECTED and result.reply is not None and result.reply.is_transient:
        log.warning(f"{name}: {result.reply}")
        return False
    if result.outcome is Outcome.REJECTED and result.reply is not None:
        log.info(f"{result.queue_id}: from=<{qf.sender}>, status=rejected ({result.reply})")
    await store.aremove("maildrop", name)
    if result.outcome is Outcome.QUEUED and not result.held:
        runtime.wakeup_qmgr()
    return True


async def scan_once(store: QueueStore, runtime: Runtime) -> int:
    """Pick up every complete maildrop file once; returns how many were done."""
    names = await offload(lambda: sorted(n for n in os.listdir(os.path.join(store.root, "maildrop"))
                                                   if is_queue_id(n)))
    done = 0
    for name in names:
        if await pickup_file(store, runtime, name):
            done += 1
    return done


def _bind_trigger(store: QueueStore) -> socket.socket | None:
    path = os.path.join(store.root, PICKUP_SOCKET)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o622)
    except OSError as exc:
        sock.close()
        log.warning(f"bind {path}: {exc.strerror}; polling only")
        return None
    sock.setblocking(False)
    return sock


async def run_pickup(config: Config, runtime: Runtime, *, poll_interval: float = 5.0) -> None:
    """The pickup service: runs until cancelled (see module doc)."""
    log.set_program("pickup")
    store = runtime.queue
    wake = asyncio.Event()
    sock = _bind_trigger(store)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        assert sock is not None
        with contextlib.suppress(OSError):
            while sock.recv(64):
                pass
        wake.set()

    if sock is not None:
        loop.add_reader(sock.fileno(), readable)
    try:
        while True:
            wake.clear()
            try:
                await scan_once(store, runtime)
            except OSError as exc:
                log.warning(f"scan maildrop: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_interval)
    finally:
        if sock is not None:
            loop.remove_reader(sock.fileno())
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(store.root, PICKUP_SOCKET))
