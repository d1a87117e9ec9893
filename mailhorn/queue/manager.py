"""qmgr(8): the queue manager, from ``incoming`` to the delivery agents and back.

:func:`run_qmgr` is a singleton service (worker 0 runs it once). It works
as Postfix's queue manager does:

Scanning
    ``incoming`` is scanned at each wakeup (``runtime.wakeup_qmgr``, set by
    cleanup after each new message) and with ``deferred`` every
    ``queue_run_delay``. A flush (``mailhorn flush``, ``postqueue -f``,
    ``-s``, ``-i``, ETRN: the wakeup's ``flush`` event) scans both at once,
    ignoring the retry times, and lifts ``defer_transports`` for the
    messages it takes. Files whose time stamp lies in the future (a
    deferred message's next attempt time, see Backoff) are skipped by
    ordinary scans. ``hold`` is never scanned. A file is moved to
    ``active`` before it is read; at most ``qmgr_message_active_limit``
    messages are in ``active`` at once. Files left in ``active`` by a crash
    are the master's business: its ``recover()`` returns them to
    ``incoming`` before this service starts.

One attempt of one message
    The file is read and validated (a damaged file moves to ``corrupt``
    with ``warning: corrupt file queue active id ID``); ``from=<...>,
    size=..., nrcpt=... (queue active)`` is logged; the message's
    ``defer/ID`` log is removed so that ``mailq`` shows the reasons of the
    last attempt only. Each pending recipient is resolved
    (:class:`mailhorn.address.resolve.Resolver`): a resolver failure goes to
    the ``retry`` transport with ``4.3.0 address resolver failure``, a
    malformed address to ``error`` with ``5.1.3 bad address syntax``, a
    transport in ``defer_transports`` to ``retry`` with ``4.3.2 deferred
    transport`` (unless flushed), an unknown transport to ``retry`` with
    ``4.3.0 mail transport unavailable``, local mail to
    ``double_bounce_sender`` is dropped (``undeliverable postmaster
    notification discarded``), and a message with a content filter goes to
    the filter instead. Recipients are grouped by (transport, destination)
    into :class:`~mailhorn.delivery.request.DeliveryRequest` s of at most
    ``TRANSPORT_destination_recipient_limit`` recipients and delivered under
    the limits of :mod:`mailhorn.queue.scheduler`, by the agents of
    :mod:`mailhorn.queue.agents`.

Results
    Each :class:`~mailhorn.delivery.request.RecipientStatus` is logged as
    the agent's ``to=<...>, relay=..., delay=..., delays=a/b/c/d, dsn=...,
    status=...`` record (:mod:`mailhorn.queue.qmgr_log`). Delivered,
    expanded and relayed recipients are marked done in the queue file
    (with a ``trace/ID`` record first when they asked for NOTIFY=SUCCESS);
    bounced ones get a durable ``bounce/ID`` record, then are marked done;
    deferred ones get a ``defer/ID`` record.

End of the attempt (Postfix's qmgr_active_done)
    A ``bounce/ID`` log asks the bounce service
    (``mailhorn.bounce.notify.send_dsn``) for a non-delivery notice, a
    ``trace/ID`` log for a success notice; each log is removed once its
    notice is queued. If recipients remain: past ``maximal_queue_lifetime``
    (``bounce_queue_lifetime`` for null-sender mail), counted from the
    queue file's creation time, or after ``postsuper -e``/``-f``, the
    message is returned (``status=expired, returned to sender``, or
    ``force-expired``): each remaining recipient's last defer reason
    becomes its bounce record, keeping its 4.X.X status as Postfix's
    reports do; else past the message's delay-warning time (the ``W``
    record cleanup writes from ``delay_warning_time``) a delay notice is
    sent once. With nothing left the file and its logs are removed
    (``ID: removed``).

Backoff
    A message with deferred recipients gets its next attempt time written
    as the file's modification time, then moves to ``deferred`` (as Postfix
    does): now plus the time the message has spent in the queue, bounded
    by ``minimal_backoff_time`` and ``maximal_backoff_time``, so the pause
    roughly doubles between attempts.

Durability
    A recipient is marked done only after its agent returned a final
    status and, for bounces and success notices, after the status record
    is on disk. When the last request of an attempt leaves nothing to do
    (every recipient done, no notice due) the file is removed instead of
    marked. Either happens while the delivery still holds its scheduler
    slot, so a crash between an agent's delivery and the done-mark (or the
    removal) delivers again after restart at most the recipients of the
    deliveries holding slots at the crash. A message whose file vanished
    from ``active`` (``postsuper -d``/``-h``/``-r`` meanwhile; ``ENOENT``)
    is forgotten, never recreated.

Requeue (``postsuper -r``: the requeue mark of ``listing.py``)
    As Postfix sends a requeued message through maildrop, pickup and
    cleanup, the queue manager hands such a message's content back to
    cleanup (``runtime.cleanup``, as a local submission from the mail
    system's own uid) with the same envelope: sender, the recipients still
    pending with their original recipients and DSN NOTIFY/ORCPT, ENVID and
    RET. Canonical and
    virtual alias mapping, header and body checks and ``content_filter``
    apply again, and cleanup puts a new ``Received:`` header first, as
    pickup does. Once the new queue file is durable the old one and its
    logs are removed; the new one is logged as ``NEWID: uid=N from=<...>
    orig_id=OLDID`` (pickup's record for requeued mail). A crash between
    the two leaves both, so the message may be delivered twice, never
    lost. A temporary cleanup failure keeps the message and its mark for
    the next attempt; a permanent one returns it to its sender with the
    reply's status and text; a discard removes it. The new file's arrival
    time is the time of the requeue (see docs/compatibility.md).

Parameters read: ``queue_run_delay``, ``minimal_backoff_time``,
``maximal_backoff_time``, ``maximal_queue_lifetime``,
``bounce_queue_lifetime``, ``qmgr_message_active_limit``,
``defer_transports``, ``double_bounce_sender``, ``allow_min_user``,
``default_filter_nexthop``, ``myhostname``, ``recipient_delimiter``,
``delay_logging_resolution_limit``, the scheduler's limits, and master.cf.

Errors: none escape :func:`run_qmgr` but cancellation; queue file system
errors are logged as warnings and the message is left for a later attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import stat
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from mailhorn import log
from mailhorn.address.resolve import RESOLVE_CLASS_LOCAL, Resolver
from mailhorn.cleanup.request import CleanupRequest, CleanupResult, Outcome, RecipientRequest, Source
from mailhorn.config.load import Config
from mailhorn.delivery.request import Action, DeliveryAgent, DeliveryRequest, RecipientStatus, ReusedContent
from mailhorn.queue import defer_log, qmgr_log
from mailhorn.queue.attempt import ActiveMessage, Job, PendingRecipient, RecordedStatus
from mailhorn.queue.agents import AgentPool, AgentUnavailable, builtin_error_transport
from mailhorn.queue.listing import EXPIRE_BIT, REQUEUE_BIT
from mailhorn.queue.queuefile import CorruptQueueFile, DsnNotify, QueueFile, Recipient, notify_names, read_queue_file
from mailhorn.queue.scheduler import Scheduler, destination_name, transport_limits
from mailhorn.iopool import IoPool
from mailhorn.queue.store import QueueStore
from mailhorn.runtime import Runtime
from mailhorn.runtime_build import QmgrWakeup, qmgr_wakeup
from mailhorn.services import Transport, plan, read_services

__all__ = ["QueueManager", "run_qmgr"]

ACTIVE: Final = "active"
QMGR: Final = "qmgr"
#: Threads for the queue manager's own file work (moves, reads, marks, removals). Most
#: of it waits on fsync, so more threads than cores let directory fsyncs be shared.
QMGR_THREADS: Final = 8
_T = TypeVar("_T")
_STATUS_WORD: Final = {Action.DEFERRED: "deferred", Action.BOUNCED: "bounced"}


def _transports(config: Config) -> list[Transport]:
    return list(plan(read_services(config.config_dir), config).transports)


class QueueManager:
    """The queue manager of one queue; :meth:`run` is the service loop.

    ``transports`` defaults to master.cf's; ``now`` (wall clock, seconds)
    is injectable so tests can move time for backoff and expiry.
    """

    def __init__(self, config: Config, runtime: Runtime, *, transports: Sequence[Transport] | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.runtime = runtime
        self.store: QueueStore = runtime.queue
        self.now = now
        self.transports: dict[str, Transport] = {}
        for transport in (_transports(config) if transports is None else transports):
            self.transports.setdefault(transport.name, transport)
        self.scheduler = Scheduler()
        for transport in self.transports.values():
            self.scheduler.register(transport_limits(transport))
        self.agents = AgentPool(runtime)
        self.resolver = Resolver(config)
        self.active_slots = asyncio.Semaphore(max(config.int("qmgr_message_active_limit"), 1))
        self.tasks: set[asyncio.Task[None]] = set()
        self.pool = IoPool(QMGR_THREADS, "qmgr")
        #: Files a scan took that are not in ``active`` yet.
        self.claimed: set[str] = set()
        self.defer_transports = frozenset(config.list("defer_transports"))
        self.delimiters = config.get("recipient_delimiter")
        self.max_digits = min(max(config.int("delay_logging_resolution_limit"), 0), 6)

    # -- transports -----------------------------------------------------------
    def transport(self, name: str) -> Transport | None:
        """A master.cf transport; ``error`` and ``retry`` always exist (built in)."""
        found = self.transports.get(name)
        if found is None and name in ("error", "retry"):
            found = self.transports[name] = builtin_error_transport(self.config, name)
            self.scheduler.register(transport_limits(found))
        return found

    # -- scanning ---------------------------------------------------------------
    async def scan(self, queue: str, *, scan_all: bool = False, flush: bool = False) -> int:
        """Claim the eligible files of ``queue`` and start their attempts; returns how many.

        The directory is listed (and, for an ordinary scan, each file's time
        stamp read) in one worker-thread call; each claimed file is then
        moved to ``active`` and read by its own attempt task (one
        worker-thread call for both), so that a large scan's files are taken
        up side by side. A claimed file is skipped by later scans until its
        move is done.
        """
        names = await self._io(self._eligible, queue, scan_all, frozenset(self.claimed))
        started = 0
        for queue_id in names:
            if queue_id in self.claimed:
                continue
            await self.active_slots.acquire()
            self.claimed.add(queue_id)
            task = asyncio.create_task(self._attempt(queue_id, flush, queue))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1
        return started

    def _eligible(self, queue: str, scan_all: bool, claimed: frozenset[str] = frozenset()) -> list[str]:
        """Queue IDs of ``queue`` in order; unless ``scan_all``, those whose time has come.

        ``claimed``: files an attempt has already taken (skipped without a
        look at their time stamp: under load a scan finds several of them).
        """
        names = sorted(name for name in self.store.scan(queue) if name not in claimed)
        if scan_all:
            return names
        limit = self.now() + 1
        due = []
        for queue_id in names:
            try:
                mtime = os.stat(self.store.path(queue, queue_id)).st_mtime
            except FileNotFoundError:
                continue
            if mtime <= limit:
                due.append(queue_id)
        return due

    def _activate(self, queue_id: str, queue: str) -> tuple[QueueFile, int, dict[str, defer_log.LogRecord]] | None:
        """Move a claimed file to ``active`` and read it (one worker-thread call);
        None when it is gone or cannot move. CorruptQueueFile from the read."""
        try:
            self.store.move(queue_id, queue, ACTIVE, durable=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning(f"{queue_id}: rename from {queue} to {ACTIVE}: {exc.strerror}", program=QMGR)
            return None
        return self._open(queue_id, self.store.path(ACTIVE, queue_id))

    async def _io(self, func: Callable[..., _T], *args: object) -> _T:
        """Run blocking file work in the queue manager's threads (the task's context goes along)."""
        return await self.pool.run(func, *args)

    async def drain(self) -> None:
        """Wait until every started attempt has finished."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def run(self, wakeup: QmgrWakeup | None = None) -> None:
        """Scan on wakeups and every ``queue_run_delay`` until cancelled."""
        wake = wakeup if wakeup is not None else qmgr_wakeup(self.runtime)
        run_delay = max(self.config.time("queue_run_delay"), 1)
        next_deferred = 0.0
        try:
            while True:
                flush = wake.flush.is_set()
                wake.flush.clear()
                wake.event.clear()
                try:
                    await self.scan("incoming", scan_all=flush, flush=flush)
                    if flush or self.now() >= next_deferred:
                        await self.scan("deferred", scan_all=flush, flush=flush)
                        next_deferred = self.now() + run_delay
                except OSError as exc:
                    log.warning(f"queue scan: {exc}", program=QMGR)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.event.wait(), max(next_deferred - self.now(), 0.01))
        finally:
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
            await self.agents.close()
            self.pool.close()

    # -- one attempt ----------------------------------------------------------------
    async def _attempt(self, queue_id: str, flush: bool, queue: str) -> None:
        try:
            try:
                opened = await self._io(self._activate, queue_id, queue)
            finally:
                self.claimed.discard(queue_id)
            if opened is not None:
                await self.attempt(queue_id, flush=flush, opened=opened)
        except CorruptQueueFile as exc:
            await self._corrupt(queue_id, exc)
        except asyncio.CancelledError:
            raise
        except FileNotFoundError:
            pass  # the message was deleted or moved under our feet (postsuper)
        except Exception as exc:  # one message's trouble must not stop the queue manager
            log.error(f"{queue_id}: {exc.__class__.__name__}: {exc}", program=QMGR)
        finally:
            self.claimed.discard(queue_id)
            self.active_slots.release()

    async def _corrupt(self, queue_id: str, exc: CorruptQueueFile) -> None:
        """A damaged file in ``active`` goes to ``corrupt``, with Postfix's log lines."""
        log.warning(f"{queue_id}: message rejected: {exc}", program=QMGR)
        try:
            await self.store.amove(queue_id, ACTIVE, "corrupt")
        except FileNotFoundError:
            return
        log.warning(f"corrupt file queue {ACTIVE} id {queue_id}", program=QMGR)

    async def attempt(self, queue_id: str, *, flush: bool = False,
                      opened: tuple[QueueFile, int, dict[str, defer_log.LogRecord]] | None = None) -> None:
        """Deliver one message that is in ``active`` (see the module docstring);
        ``opened``: what :meth:`_open` read of it already."""
        if opened is None:
            try:
                opened = await self._io(self._open, queue_id, self.store.path(ACTIVE, queue_id))
            except CorruptQueueFile as exc:
                await self._corrupt(queue_id, exc)
                return
        qf, mode, prior = opened
        msg = ActiveMessage(queue_id, qf, self.now(), bool(mode & EXPIRE_BIT), flush)
        if mode & REQUEUE_BIT:
            await self._requeue(msg)
            return
        qmgr_log.opened(queue_id, qf.sender, qf.content_size, len(qf.recipients))
        jobs = self._plan(msg, prior)
        msg.jobs_left = len(jobs)
        if jobs:
            await asyncio.gather(*(self._deliver(msg, job) for job in jobs))
        if msg.removed:
            qmgr_log.removed(queue_id)
        elif not msg.gone:
            await self._finish(msg)

    # -- requeue --------------------------------------------------------------------------
    async def _requeue(self, msg: ActiveMessage) -> None:
        """Send a ``postsuper -r`` message through cleanup again (see the module docstring)."""
        qf, queue_id = msg.qf, msg.queue_id
        pending = qf.pending
        if not pending:
            await self._remove(msg)
            return
        request = CleanupRequest(
            source=Source.PICKUP, sender=qf.sender,
            recipients=tuple(RecipientRequest(r.address, r.dsn_orcpt, notify_names(r.dsn_notify), r.orig_rcpt)
                             for r in pending),
            dsn_envid=qf.dsn_envid, dsn_ret=qf.dsn_ret.name if qf.dsn_ret is not None else None,
            body_type="8BITMIME" if qf.attributes.get("encoding") == "8bit" else "",
            smtputf8=qf.attributes.get("smtputf8") == "1", submit_uid=os.getuid())
        try:
            result = await self._resubmit(msg, request)
        except OSError as exc:
            log.warning(f"{queue_id}: requeue: {exc}", program=QMGR)
            await self._defer(msg)
            return
        if result.outcome is Outcome.QUEUED:
            log.info(f"{result.queue_id}: uid={request.submit_uid} from=<{qf.sender}> orig_id={queue_id}",
                     program="pickup")
        elif result.outcome is Outcome.REJECTED:
            reply = result.reply
            if reply is None or reply.code < 500:
                why = str(reply) if reply is not None else "cleanup failed"
                log.warning(f"{queue_id}: requeue: {why}", program=QMGR)
                await self._defer(msg)
                return
            # Postfix's cleanup returns mail it refuses from pickup to the sender.
            await self._io(self._bounce_all, msg, reply.status or "5.0.0", reply.text)
            await self._finish(msg)
            return
        with contextlib.suppress(FileNotFoundError):
            await self.store.aremove(ACTIVE, queue_id)
        await defer_log.aremove_logs(self.store, queue_id)

    async def _resubmit(self, msg: ActiveMessage, request: CleanupRequest) -> CleanupResult:
        """Stream the queued content into a new cleanup session."""
        session = self.runtime.cleanup.open(request)
        chunks = self.store.content(ACTIVE, msg.queue_id, msg.qf)
        try:
            while (piece := await self._io(next, chunks, None)) is not None:
                await session.write(piece)
        except BaseException:
            await session.abort()
            raise
        return await session.finish()

    def _bounce_all(self, msg: ActiveMessage, status: str, text: str) -> None:
        """Bounce records for every pending recipient, marked done."""
        store, queue_id = self.store, msg.queue_id
        done: list[int] = []
        for rec in msg.qf.pending:
            defer_log.record_bounce(store, queue_id, rec.address, status, text, offset=rec.offset,
                                    orig_rcpt=rec.orig_rcpt, when=int(self.now()))
            done.append(rec.offset)
        store.mark_done(ACTIVE, queue_id, done)

    def _open(self, queue_id: str, path: str) -> tuple[QueueFile, int, dict[str, defer_log.LogRecord]]:
        """Read the file and start the attempt's bookkeeping, in one worker-thread call.

        Returns the queue file, its permission bits (the administrative
        marks) and, for a forced expiry, the last defer reasons. Unless the
        message is to be requeued, the ``defer/ID`` log is dropped, so that
        ``mailq`` shows the reasons of the last attempt only.
        """
        with open(path, "rb") as stream:
            mode = stat.S_IMODE(os.fstat(stream.fileno()).st_mode)
            qf = read_queue_file(stream, verify_content=False)
        if mode & REQUEUE_BIT:
            return qf, mode, {}
        prior = defer_log.defer_reasons(self.store, queue_id) if mode & EXPIRE_BIT else {}
        defer_log.remove_logs(self.store, queue_id, ("defer",))
        return qf, mode, prior

    # -- resolution and grouping --------------------------------------------------------
    def _plan(self, msg: ActiveMessage, prior: dict[str, defer_log.LogRecord]) -> list[Job]:
        """Resolve the pending recipients and group them into delivery requests."""
        groups: dict[tuple[str, str, str], Job] = {}
        order: list[tuple[str, str, str]] = []
        filter_route = self._filter_route(msg.qf)
        for rec in msg.qf.pending:
            routed = self._route(msg, rec, prior, filter_route)
            if routed is None:
                continue
            transport, nexthop, address = routed
            limits = self.scheduler.limits(transport.name)
            dest = destination_name(limits, nexthop, address, self.delimiters)
            key = (transport.name, dest, nexthop)
            job = groups.get(key)
            if job is None:
                job = groups[key] = Job(transport, dest, nexthop)
                order.append(key)
            job.recipients.append(PendingRecipient(rec, address))
        jobs: list[Job] = []
        for key in sorted(order):
            job = groups[key]
            limit = self.scheduler.limits(job.transport.name).recipient_limit
            rcpts = sorted(job.recipients, key=lambda r: (r.address.rpartition("@")[2].lower(), r.address))
            step = limit if limit > 0 else len(rcpts)
            for start in range(0, len(rcpts), step):
                jobs.append(Job(job.transport, job.destination, job.nexthop, rcpts[start:start + step]))
        return jobs

    def _filter_route(self, qf: QueueFile) -> tuple[str, str] | None:
        if not qf.content_filter:
            return None
        transport, _, nexthop = qf.content_filter.partition(":")
        return transport, nexthop

    def _route(self, msg: ActiveMessage, rec: Recipient, prior: dict[str, defer_log.LogRecord],
               filter_route: tuple[str, str] | None) -> tuple[Transport, str, str] | None:
        """(transport, nexthop, address) for one recipient; None when handled here."""
        address = rec.address
        if msg.forced_expire:
            last = prior.get(address)
            reason = f"{last.status} {last.reason}" if last is not None and last.status.startswith("4") \
                else "4.7.0 message is administratively expired"
            return self._redirect("retry", reason, address)
        if filter_route is not None:
            name, nexthop = filter_route
            if not nexthop:
                nexthop = (self.config.get("default_filter_nexthop")
                           or address.rpartition("@")[2] or self.config.get("myhostname"))
            transport_name, flags = name, 0
        else:
            res = self.resolver.resolve(address, msg.qf.sender)
            if res.fail:
                return self._redirect("retry", "4.3.0 address resolver failure", address)
            if res.error:
                return self._redirect("error", "5.1.3 bad address syntax", address)
            address, transport_name, nexthop, flags = res.recipient, res.transport, res.nexthop, res.flags
        if not address:
            return self._redirect("error", "5.1.3 null recipient address", address)
        if flags & RESOLVE_CLASS_LOCAL and self._is_double_bounce(address):
            self._double_bounce(msg, rec, address)
            return None
        if transport_name in self.defer_transports and not msg.flush:
            return self._redirect("retry", "4.3.2 deferred transport", address)
        if not self.config.bool("allow_min_user") and address.startswith("-"):
            return self._redirect("error", "5.1.3 bad address syntax", address)
        transport = self.transport(transport_name)
        if transport is None:
            log.warning(f"connect to transport private/{transport_name}: No such file or directory", program=QMGR)
            return self._redirect("retry", "4.3.0 mail transport unavailable", address)
        return transport, nexthop, address

    def _redirect(self, name: str, reason: str, address: str) -> tuple[Transport, str, str]:
        transport = self.transport(name)
        assert transport is not None
        return transport, reason, address

    def _is_double_bounce(self, address: str) -> bool:
        local = address.rpartition("@")[0] if "@" in address else address
        return local.lower() == self.config.get("double_bounce_sender").lower()

    def _double_bounce(self, msg: ActiveMessage, rec: Recipient, address: str) -> None:
        """Mail to the local double-bounce address is dropped here (qmgr_message_resolve)."""
        now = self.now()
        rcpt = PendingRecipient(rec, address)
        status = RecipientStatus(rcpt.delivery(), Action.DELIVERED, "2.0.0",
                                 "undeliverable postmaster notification discarded", relay="none")
        delays = qmgr_log.Delays(msg.active_arrival - msg.arrival, now - msg.active_arrival, 0.0, 0.0)
        outcome = RecordedStatus(rcpt, status, delays, QMGR)
        self._log(msg, outcome)
        try:
            self.store.mark_done(ACTIVE, msg.queue_id, [rec.offset])
        except FileNotFoundError:
            msg.gone = True

    # -- delivery -------------------------------------------------------------------------
    def _request(self, msg: ActiveMessage, job: Job) -> DeliveryRequest:
        qf, store, queue_id = msg.qf, self.store, msg.queue_id
        return DeliveryRequest(
            queue_id=queue_id, queue_name=ACTIVE, transport=job.transport.name, nexthop=job.nexthop,
            sender=qf.sender, recipients=tuple(r.delivery() for r in job.recipients),
            open_content=ReusedContent(lambda: store.content(ACTIVE, queue_id, qf), qf.content_size),
            content_size=qf.content_size,
            arrival_time=msg.arrival, attributes=dict(qf.attributes), dsn_envid=qf.dsn_envid,
            dsn_ret=qf.dsn_ret.name if qf.dsn_ret is not None else None, content_filter=qf.content_filter,
        )

    async def _deliver(self, msg: ActiveMessage, job: Job) -> None:
        transport = job.transport
        request = self._request(msg, job)
        agent: DeliveryAgent | None
        try:
            agent = self.agents.get(transport)
            trouble = ""
        except AgentUnavailable as exc:
            agent, trouble = None, str(exc)
        async with self.scheduler.slot(transport.name, job.destination):
            handoff = self.now()
            statuses: Sequence[RecipientStatus] = ()
            if agent is not None:
                try:
                    statuses = await agent.deliver(request)
                except asyncio.CancelledError:
                    raise
                except CorruptQueueFile as exc:
                    log.warning(f"{msg.queue_id}: {exc}", program=QMGR)
                    msg.corrupt = True
                    trouble = "queue file is corrupt"
                except Exception as exc:  # an agent bug defers its recipients, it does not lose them
                    log.error(f"{msg.queue_id}: transport {transport.name}: {exc.__class__.__name__}: {exc}",
                              program=QMGR)
                    trouble = "unknown mail transport error"
            done = self.now()
            self.scheduler.feedback(transport.name, job.destination,
                                    success=any(s.action is not Action.DEFERRED for s in statuses))
            # Recorded while the slot is held, so that deliveries done but not yet
            # marked (the duplicates a crash can cause) never exceed the process limit.
            await self._record(msg, self._outcomes(msg, job, statuses, trouble, handoff, done))

    def _outcomes(self, msg: ActiveMessage, job: Job, statuses: Sequence[RecipientStatus], trouble: str,
                  handoff: float, done: float) -> list[RecordedStatus]:
        """One outcome per recipient of the job, with its delays."""
        transport = job.transport
        by_offset = {s.recipient.offset: s for s in statuses}
        outcomes: list[RecordedStatus] = []
        for rcpt in job.recipients:
            status = by_offset.get(rcpt.rec.offset)
            if status is None:
                if not trouble:
                    log.warning(f"{msg.queue_id}: transport {transport.name} gave no status for "
                                f"<{rcpt.address}>", program=QMGR)
                status = RecipientStatus(rcpt.delivery(), Action.DEFERRED, "4.3.0",
                                         trouble or "unknown mail transport error", relay="none")
            c, d = (status.delays[2], status.delays[3]) if status.delays is not None else (0.0, done - handoff)
            delays = qmgr_log.Delays(msg.active_arrival - msg.arrival, handoff - msg.active_arrival, c, d)
            outcomes.append(RecordedStatus(rcpt, status, delays, status.program or transport.agent))
        return outcomes

    def _log(self, msg: ActiveMessage, outcome: RecordedStatus) -> None:
        status = outcome.status
        word = _STATUS_WORD.get(status.action, "sent")
        log.info(qmgr_log.recipient_line(
            msg.queue_id, outcome.rcpt.address, outcome.rcpt.rec.orig_rcpt, status.relay, outcome.delays,
            status.dsn, word, status.text, max_digits=self.max_digits), program=outcome.program)

    @staticmethod
    def _needs_notice(outcome: RecordedStatus) -> bool:
        """Whether a recipient's status asks for a bounce or a success notice."""
        status, notify = outcome.status, outcome.rcpt.rec.dsn_notify
        return status.action is Action.BOUNCED or (
            status.action is not Action.DEFERRED and notify is not None and bool(notify & DsnNotify.SUCCESS))

    async def _record(self, msg: ActiveMessage, outcomes: list[RecordedStatus]) -> None:
        """Status records, log lines and done-marks for one request's recipients.

        When this is the message's last request and every recipient of the
        attempt is done with nothing to notify, the file is removed instead
        of marked: one unlink replaces the mark's write and file fsync, and
        it still happens while the delivery holds its slot.
        """
        if any(o.status.action is Action.DEFERRED for o in outcomes):
            msg.deferred = True
        if any(self._needs_notice(o) for o in outcomes):
            msg.noticed = True
        final = msg.jobs_left == 1 and not (msg.deferred or msg.noticed or msg.corrupt)
        try:
            await self._io(self._commit, msg, outcomes, final)
        except FileNotFoundError:
            msg.gone = True
        except OSError as exc:
            log.warning(f"{msg.queue_id}: update queue file: {exc}", program=QMGR)
            msg.deferred = True
        finally:
            msg.jobs_left -= 1

    def _commit(self, msg: ActiveMessage, outcomes: list[RecordedStatus], final: bool = False) -> None:
        store, queue_id = self.store, msg.queue_id
        if final and not any(self._logs_present(queue_id)):
            for outcome in outcomes:
                self._log(msg, outcome)
            self._remove_sync(queue_id)
            msg.removed = True
            return
        now = int(self.now())
        done: list[int] = []
        for outcome in outcomes:
            status, rec = outcome.status, outcome.rcpt.rec
            address = outcome.rcpt.address
            text = status.remote_reply or status.text
            if status.action is Action.DEFERRED:
                defer_log.record_defer(store, queue_id, address, status.dsn, text, offset=rec.offset,
                                       orig_rcpt=rec.orig_rcpt, when=now)
            elif status.action is Action.BOUNCED:
                defer_log.record_bounce(store, queue_id, address, status.dsn, text, offset=rec.offset,
                                        orig_rcpt=rec.orig_rcpt, when=now)
                done.append(rec.offset)
            else:
                if rec.dsn_notify is not None and rec.dsn_notify & DsnNotify.SUCCESS:
                    defer_log.record_trace(store, queue_id, address, status.dsn, text,
                                           action=status.action.value, offset=rec.offset,
                                           orig_rcpt=rec.orig_rcpt, when=now)
                done.append(rec.offset)
            self._log(msg, outcome)
        if done:
            store.mark_done(ACTIVE, queue_id, done)

    # -- end of the attempt ----------------------------------------------------------------
    async def _send_dsn(self, msg: ActiveMessage, kind: str) -> bool:
        """Ask the bounce service for a notice; False when it could not be queued now."""
        try:
            module = importlib.import_module("mailhorn.bounce.notify")
        except ImportError as exc:
            log.warning(f"{msg.queue_id}: cannot send {kind} notice: {exc}", program=QMGR)
            return False
        try:
            await module.send_dsn(self.config, self.runtime, self.store, ACTIVE, msg.queue_id, kind)
        except asyncio.CancelledError:
            raise
        except CorruptQueueFile as exc:
            log.warning(f"{msg.queue_id}: {exc}", program=QMGR)
            msg.corrupt = True
            return False
        except Exception as exc:  # the notice is retried at the next attempt; the logs stay
            log.warning(f"{msg.queue_id}: {kind} notice not sent: {exc.__class__.__name__}: {exc}", program=QMGR)
            return False
        return True

    def _log_exists(self, log_name: str, queue_id: str) -> bool:
        path = defer_log.log_path(self.store, log_name, queue_id)
        # access() first: most messages have no logs, and it fails without
        # raising an exception (see defer_log.remove_logs).
        if not os.access(path, os.F_OK):
            return False
        try:
            return os.path.getsize(path) > 0
        except OSError:
            return False

    def _logs_present(self, queue_id: str) -> tuple[bool, bool]:
        """Whether the ``bounce/ID`` and the ``trace/ID`` logs are non-empty (one thread call)."""
        return self._log_exists("bounce", queue_id), self._log_exists("trace", queue_id)

    async def _flush_log(self, msg: ActiveMessage, log_name: str, kind: str, present: bool | None = None) -> bool:
        """Send the notice a non-empty log asks for, then drop the log; False to keep the message.

        ``present`` is what the caller already knows of the log (None: look).
        """
        if present is None:
            present = await self._io(self._log_exists, log_name, msg.queue_id)
        if not present:
            return True
        if not await self._send_dsn(msg, kind):
            return False
        await defer_log.aremove_logs(self.store, msg.queue_id, (log_name,))
        return True

    def _expired(self, msg: ActiveMessage) -> bool:
        if msg.forced_expire:
            return True
        qf = msg.qf
        lifetime = self.config.time("maximal_queue_lifetime" if qf.sender else "bounce_queue_lifetime")
        created = qf.create_time if qf.create_time is not None else qf.arrival_time[0]
        return self.now() >= created + lifetime

    async def _finish(self, msg: ActiveMessage) -> None:
        bounce, trace = await self._io(self._logs_present, msg.queue_id)
        keep = not await self._flush_log(msg, "bounce", "failure", bounce)
        keep = not await self._flush_log(msg, "trace", "success", trace) or keep
        if msg.corrupt:
            # Postfix's agents mark such a file and qmgr saves it for inspection.
            with contextlib.suppress(FileNotFoundError):
                await self.store.amove(msg.queue_id, ACTIVE, "corrupt")
                log.warning(f"corrupt file queue {ACTIVE} id {msg.queue_id}", program=QMGR)
            return
        if msg.deferred:
            if self._expired(msg):
                qmgr_log.expired(msg.queue_id, msg.qf.sender, forced=msg.forced_expire)
                try:
                    await self._io(self._expire, msg)
                except FileNotFoundError:
                    return
                if await self._flush_log(msg, "bounce", "failure"):
                    await self._remove(msg)
                    return
                keep = True
            elif msg.qf.warn_time and self.now() >= msg.qf.warn_time:
                if await self._send_dsn(msg, "delay"):
                    with contextlib.suppress(FileNotFoundError):
                        await self._io(self.store.set_warn_time, ACTIVE, msg.queue_id, msg.qf, 0)
        if msg.deferred or keep:
            await self._defer(msg)
        else:
            await self._remove(msg)

    def _expire(self, msg: ActiveMessage) -> None:
        """Turn the remaining recipients' last defer reasons into bounce records, marked done."""
        store, queue_id = self.store, msg.queue_id
        qf = store.read(ACTIVE, queue_id, verify_content=False)
        reasons = defer_log.defer_reasons(store, queue_id)
        done: list[int] = []
        for rec in qf.pending:
            last = reasons.get(rec.address)
            status = last.status if last is not None else "4.4.7"
            reason = last.reason if last is not None else "delivery time expired"
            defer_log.record_bounce(store, queue_id, rec.address, status, reason, offset=rec.offset,
                                    orig_rcpt=rec.orig_rcpt, when=int(self.now()))
            done.append(rec.offset)
        if done:
            store.mark_done(ACTIVE, queue_id, done)

    def backoff(self, msg: ActiveMessage) -> float:
        """Seconds until the next attempt: time in queue, within the backoff bounds."""
        low = self.config.time("minimal_backoff_time")
        high = max(self.config.time("maximal_backoff_time"), low)
        return float(min(max(self.now() - msg.arrival, low), high))

    async def _defer(self, msg: ActiveMessage) -> None:
        when = self.now() + self.backoff(msg)
        path = self.store.path(ACTIVE, msg.queue_id)
        try:
            await self._io(os.utime, path, (when, when))
            await self.store.amove(msg.queue_id, ACTIVE, "deferred", durable=False)
        except FileNotFoundError:
            log.warning(f"{msg.queue_id}: rename from {ACTIVE} to deferred: {os.strerror(errno.ENOENT)}",
                        program=QMGR)

    def _remove_sync(self, queue_id: str) -> None:
        """Delete the file, then its logs (one worker-thread call); no directory
        fsync: a system crash may bring a delivered message back (at least once)."""
        self.store.remove(ACTIVE, queue_id, durable=False)
        defer_log.remove_logs(self.store, queue_id)

    async def _remove(self, msg: ActiveMessage) -> None:
        try:
            await self._io(self._remove_sync, msg.queue_id)
        except FileNotFoundError:
            log.warning(f"{msg.queue_id}: remove from {ACTIVE}: {os.strerror(errno.ENOENT)}", program=QMGR)
            return
        qmgr_log.removed(msg.queue_id)


async def run_qmgr(config: Config, runtime: Runtime) -> None:
    """The queue manager service: runs until cancelled (see the module docstring)."""
    log.set_program(QMGR)
    manager = QueueManager(config, runtime)
    await manager.run()
