"""Build the :class:`mailhorn.runtime.Runtime` a worker's services share.

``build_runtime(config)`` makes:

* the queue store (``QueueStore.from_config``). Worker 0 prepares it with
  :func:`prepare_queue` (``setup()`` then ``recover()``) before any service
  runs; the other workers use it as they find it;
* the cleanup service, ``mailhorn.cleanup.cleanup.Cleanup(config, store)``,
  imported when the first message is opened (so the master runs, and a
  service that never submits mail works, whatever the state of that module);
* the anvil (:class:`mailhorn.anvil.Anvil`): the master's shared table when
  given, else a private one;
* ``wakeup_qmgr``: a :class:`QmgrWakeup`. Calling it sets
  :attr:`QmgrWakeup.event`, an :class:`asyncio.Event` the queue manager waits
  on (it clears the event, scans ``incoming``, and waits again). In a worker
  other than the queue manager's, the call writes one byte to the master's
  wakeup pipe, which worker 0 reads and turns into the same event; a full
  pipe means a wakeup is already pending, so nothing is lost. ``flush``
  requests (``mailhorn flush``) arrive the same way and also set
  :attr:`QmgrWakeup.flush`, meaning "retry deferred mail now".

Parameters read: those of the queue store and cleanup; ``anvil_rate_time_unit``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import Callable
from typing import Final, TYPE_CHECKING

from mailhorn import log
from mailhorn.anvil import Anvil
from mailhorn.queue.store import QueueStore, Recovery
from mailhorn.cleanup.request import CleanupResult, Outcome, SmtpdActions
from mailhorn.runtime import CleanupSession, Runtime

if TYPE_CHECKING:
    from mailhorn.cleanup.cleanup import Cleanup as RealCleanup
    from mailhorn.cleanup.cleanup import CleanupSession as RealCleanupSession
    from mailhorn.cleanup.request import CleanupRequest
    from mailhorn.config.load import Config

#: Bytes sent over the wakeup pipe.
WAKEUP: Final = b"w"
FLUSH: Final = b"f"


class QmgrWakeup:
    """Nudges the queue manager: new mail in ``incoming`` (or a flush request).

    ``event`` is set by every call; the queue manager clears it before each
    scan, so a wakeup arriving during a scan causes one more scan, never a
    missed message. Safe to call from any thread of the process.
    """

    def __init__(self, pipe_write: int | None = None) -> None:
        self.event = asyncio.Event()
        self.flush = asyncio.Event()
        self._pipe_write = pipe_write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver wakeups in this process, on ``loop`` (the queue manager's)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._pipe_write = None

    def _set(self, flush: bool) -> None:
        if flush:
            self.flush.set()
        self.event.set()

    def notify(self, flush: bool = False) -> None:
        """Wake the queue manager, here or through the master's pipe."""
        if self._pipe_write is not None:
            try:
                os.write(self._pipe_write, FLUSH if flush else WAKEUP)
            except BlockingIOError:
                pass  # the pipe is full: wakeups are pending already
            return
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._set, flush)
        else:
            self._set(flush)

    def __call__(self) -> None:
        self.notify()

    def feed(self, data: bytes) -> None:
        """Turn bytes read from the wakeup pipe into events."""
        if data:
            self._set(FLUSH in data)


class NotifyingSession:
    """A cleanup session that wakes the queue manager when its message is queued.

    Postfix's cleanup triggers qmgr after it writes a queue file; here every
    submission path (smtpd, pickup, local re-submission, bounce) goes through
    the runtime's cleanup, so the trigger lives in one place.
    """

    def __init__(self, inner: RealCleanupSession, wakeup: Callable[[], None]) -> None:
        self._inner = inner
        self._wakeup = wakeup

    async def start(self) -> str:
        """Create the queue file early; returns its queue ID (for smtpd's log line)."""
        return await self._inner.start()

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    def add_actions(self, actions: SmtpdActions) -> None:
        """Actions from smtpd_end_of_data_restrictions (see :class:`mailhorn.runtime.TakesLateActions`)."""
        self._inner.add_actions(actions)

    async def finish(self) -> CleanupResult:
        result = await self._inner.finish()
        if result.outcome is Outcome.QUEUED and not result.held:
            self._wakeup()
        return result

    async def abort(self) -> None:
        await self._inner.abort()


class LazyCleanup:
    """The cleanup service, imported and built on first use."""

    def __init__(self, config: Config, store: QueueStore, wakeup: Callable[[], None]) -> None:
        self._config = config
        self._store = store
        self._wakeup = wakeup
        self._service: RealCleanup | None = None

    def open(self, request: CleanupRequest) -> CleanupSession:
        """Start a message (see :class:`mailhorn.runtime.CleanupService`)."""
        if self._service is None:
            module = importlib.import_module("mailhorn.cleanup.cleanup")
            service: RealCleanup = module.Cleanup(self._config, self._store)
            self._service = service
        return NotifyingSession(self._service.open(request), self._wakeup)


def build_runtime(config: Config, *, anvil: Anvil | None = None, wakeup: QmgrWakeup | None = None) -> Runtime:
    """The shared facilities of one process (see the module docstring)."""
    store = QueueStore.from_config(config)
    counter = anvil if anvil is not None else Anvil.create(float(config.time("anvil_rate_time_unit")))
    waker = wakeup if wakeup is not None else QmgrWakeup()
    return Runtime(
        queue=store,
        cleanup=LazyCleanup(config, store, waker),
        anvil=counter,
        wakeup_qmgr=waker,
    )


def qmgr_wakeup(runtime: Runtime) -> QmgrWakeup:
    """The :class:`QmgrWakeup` of a runtime built here (what the queue manager waits on)."""
    wakeup = runtime.wakeup_qmgr
    if not isinstance(wakeup, QmgrWakeup):
        raise TypeError("runtime.wakeup_qmgr is not a QmgrWakeup")
    return wakeup


def prepare_queue(store: QueueStore) -> Recovery:
    """Create the queue directories and recover from a previous crash; logs what it did."""
    store.setup()
    recovery = store.recover()
    for queue_id in recovery.requeued:
        log.info(f"{queue_id}: requeued from active to incoming")
    for queue_id, why in recovery.corrupt:
        log.warning(f"{queue_id}: damaged queue file moved to corrupt: {why}")
    for name in recovery.unknown:
        log.warning(f"{store.root}/{name}: unexpected file in the queue")
    return recovery
