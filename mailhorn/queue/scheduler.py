"""Delivery concurrency: per-transport process limits, per-destination windows, rate delays.

Postfix's queue manager limits parallel deliveries twice: per transport (the
master.cf ``maxproc`` column, ``-`` meaning ``default_process_limit``, ``0``
no limit) and per destination, a destination being a (transport, queue
name) pair where the queue name is the next hop, or ``user@nexthop`` for
transports that take one recipient per delivery (see
:func:`destination_name`).

Each destination has a concurrency *window* that starts at
``initial_destination_concurrency`` and moves with feedback, as postconf(5)
``default_destination_concurrency_positive_feedback`` and ``_negative_feedback``
describe with their default ``1/concurrency``: a delivery that is not
entirely deferred widens the window by 1/window, an entirely deferred one
narrows it by 1/window (never below 1); the window never passes
``TRANSPORT_destination_concurrency_limit`` (``0`` = no limit).
``TRANSPORT_destination_rate_delay`` > 0 means one delivery at a time with
that pause between starts (postconf(5) default_destination_rate_delay);
``TRANSPORT_transport_rate_delay`` spaces all deliveries of the transport.

Every ``TRANSPORT_`` parameter falls back to its ``default_`` one; the
built-in ``local_destination_concurrency_limit`` (2) and
``local_destination_recipient_limit`` (1) are simply the values for the
transport called ``local``.

Postfix also stops trying a destination whose deliveries keep failing
("dead" destinations, ``*_destination_concurrency_failed_cohort_limit``);
mailhorn keeps trying each message at its own backoff time instead.

Parameters read: ``default_process_limit``,
``default_destination_concurrency_limit``, ``initial_destination_concurrency``,
``default_destination_recipient_limit``, ``default_destination_rate_delay``,
``default_transport_rate_delay``, ``recipient_delimiter`` and their
``TRANSPORT_`` overrides.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailhorn.address.parse import split_extension
from mailhorn.config.load import Config
from mailhorn.services import Transport

__all__ = ["Scheduler", "TransportLimits", "destination_name", "transport_limits"]


@dataclass(frozen=True)
class TransportLimits:
    """The limits of one transport (0 = no limit)."""

    name: str
    process_limit: int
    destination_concurrency: int
    initial_concurrency: int
    recipient_limit: int
    destination_rate_delay: float = 0.0
    transport_rate_delay: float = 0.0


def _per_transport_int(config: Config, transport: str, suffix: str, default: str) -> int:
    name = f"{transport}_{suffix}"
    return config.int(name) if config.raw(name) is not None else config.int(default)


def _per_transport_time(config: Config, transport: str, suffix: str, default: str) -> int:
    name = f"{transport}_{suffix}"
    return config.time(name) if config.raw(name) is not None else config.time(default)


def transport_limits(transport: Transport) -> TransportLimits:
    """Read a transport's limits from its configuration (main.cf plus ``-o``)."""
    config = transport.config
    name = transport.name
    maxproc = transport.service.maxproc
    process = config.int("default_process_limit") if maxproc is None else maxproc
    return TransportLimits(
        name=name,
        process_limit=max(process, 0),
        destination_concurrency=max(_per_transport_int(
            config, name, "destination_concurrency_limit", "default_destination_concurrency_limit"), 0),
        initial_concurrency=max(_per_transport_int(
            config, name, "initial_destination_concurrency", "initial_destination_concurrency"), 1),
        recipient_limit=max(_per_transport_int(
            config, name, "destination_recipient_limit", "default_destination_recipient_limit"), 0),
        destination_rate_delay=float(_per_transport_time(
            config, name, "destination_rate_delay", "default_destination_rate_delay")),
        transport_rate_delay=float(_per_transport_time(
            config, name, "transport_rate_delay", "default_transport_rate_delay")),
    )


def destination_name(limits: TransportLimits, nexthop: str, recipient: str, delimiters: str) -> str:
    """The per-destination queue a recipient joins (qmgr_message_resolve).

    Normally the next hop. For a transport that takes one recipient per
    delivery (``error`` and ``retry`` excepted) it is ``user@nexthop``
    without the address extension, so one user cannot take every delivery
    slot and the concurrency limit becomes per recipient. Folded to lower
    case so one site has one queue.
    """
    name = nexthop
    if limits.recipient_limit == 1 and limits.name not in ("error", "retry"):
        local = recipient.rpartition("@")[0] if "@" in recipient else recipient
        split = split_extension(local, delimiters)
        if split is not None:
            local = split.base
        name = f"{local}@{nexthop}"
    return name.lower()


@dataclass
class _Destination:
    window: float
    active: int = 0
    waiting: int = 0
    #: Waiters woken for a free slot that have not run yet.
    woken: int = 0
    last_start: float = float("-inf")
    #: Deliveries waiting for a slot, first come first served.
    waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)


@dataclass
class _Transport:
    limits: TransportLimits
    active: int = 0
    woken: int = 0
    last_start: float = float("-inf")
    destinations: dict[str, _Destination] = field(default_factory=dict)


class Scheduler:
    """Hands out delivery slots under the limits of each transport and destination.

    A delivery that finds no free slot waits in its destination's queue,
    first come first served; a slot that frees up wakes only as many
    waiters as can start (the destination's own first, then those of other
    destinations when the transport's process limit was what held them), so
    thousands of queued deliveries cost nothing while they wait.

    ``now`` and ``sleep`` are injectable so tests can drive rate delays
    with a controlled clock.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._now = now
        self._sleep = sleep
        self._transports: dict[str, _Transport] = {}
        #: Highest number of deliveries seen at once, per transport (for ``status`` and tests).
        self.peak: dict[str, int] = {}
        #: Highest number of deliveries seen at once, per (transport, destination).
        self.peak_destination: dict[tuple[str, str], int] = {}

    def register(self, limits: TransportLimits) -> None:
        """Declare (or update) a transport's limits."""
        state = self._transports.get(limits.name)
        if state is None:
            self._transports[limits.name] = _Transport(limits)
        else:
            state.limits = limits
            self._wake(state, None)

    def limits(self, transport: str) -> TransportLimits:
        return self._transports[transport].limits

    def window(self, transport: str, destination: str) -> float:
        """The current concurrency window of a destination."""
        state = self._transports[transport]
        dest = state.destinations.get(destination)
        return dest.window if dest is not None else self._initial(state.limits)

    @staticmethod
    def _initial(limits: TransportLimits) -> float:
        if limits.destination_rate_delay > 0:
            return 1.0
        window = float(limits.initial_concurrency)
        if limits.destination_concurrency:
            window = min(window, float(limits.destination_concurrency))
        return window

    def _wait_time(self, state: _Transport, dest: _Destination) -> float | None:
        """0 when a slot is free now, the seconds to wait for a rate delay, None when full."""
        limits = state.limits
        if limits.process_limit and state.active >= limits.process_limit:
            return None
        if dest.active >= max(int(dest.window), 1):
            return None
        now = self._now()
        wait = 0.0
        if limits.destination_rate_delay > 0:
            wait = max(wait, dest.last_start + limits.destination_rate_delay - now)
        if limits.transport_rate_delay > 0:
            wait = max(wait, state.last_start + limits.transport_rate_delay - now)
        return wait

    def slot(self, transport: str, destination: str) -> Slot:
        """Hold one delivery slot of ``transport`` for ``destination`` (``async with``)."""
        return Slot(self, transport, destination)

    async def _acquire(self, transport: str, destination: str) -> tuple[_Transport, _Destination]:
        """Wait for a slot of ``transport`` for ``destination`` and take it."""
        state = self._transports[transport]
        dest = state.destinations.get(destination)
        if dest is None:
            dest = state.destinations[destination] = _Destination(self._initial(state.limits))
        dest.waiting += 1
        try:
            woken = False
            while True:
                wait = self._wait_time(state, dest)
                if wait is None:
                    waiter = asyncio.get_running_loop().create_future()
                    # A waiter that was woken and still found no slot keeps its place.
                    if woken:
                        dest.waiters.appendleft(waiter)
                    else:
                        dest.waiters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter.done() and not waiter.cancelled():
                            self._unwoken(state, dest)
                        raise
                    self._unwoken(state, dest)
                    woken = True
                elif wait > 0:
                    await self._sleep(wait)
                else:
                    break
        except BaseException:
            dest.waiting -= 1
            self._forget(state, destination, dest)
            self._wake(state, dest)  # pass on a wake-up this delivery no longer uses
            raise
        dest.waiting -= 1
        dest.active += 1
        state.active += 1
        start = self._now()
        dest.last_start = start
        state.last_start = start
        self.peak[transport] = max(self.peak.get(transport, 0), state.active)
        key = (transport, destination)
        self.peak_destination[key] = max(self.peak_destination.get(key, 0), dest.active)
        return state, dest

    def _release(self, state: _Transport, destination: str, dest: _Destination) -> None:
        """Give back a slot :meth:`_acquire` took and wake who may use it."""
        state.active -= 1
        dest.active -= 1
        self._wake(state, dest)
        self._forget(state, destination, dest)

    @staticmethod
    def _unwoken(state: _Transport, dest: _Destination) -> None:
        dest.woken -= 1
        state.woken -= 1

    def _wake(self, state: _Transport, first: _Destination | None) -> None:
        """Wake the waiters that the free slots allow, ``first``'s before the others'."""
        limit = state.limits.process_limit
        candidates = [first] if first is not None else []
        if first is None or (limit and state.active + state.woken < limit):
            candidates += [d for d in state.destinations.values() if d is not first and d.waiters]
        for dest in candidates:
            while dest.waiters and dest.active + dest.woken < max(int(dest.window), 1):
                if limit and state.active + state.woken >= limit:
                    return
                waiter = dest.waiters.popleft()
                if waiter.done():
                    continue  # cancelled while it waited
                waiter.set_result(None)
                dest.woken += 1
                state.woken += 1

    def _forget(self, state: _Transport, name: str, dest: _Destination) -> None:
        """Drop an idle destination that has nothing to remember (no rate delay running)."""
        limits = state.limits
        if (dest.active == 0 and dest.waiting == 0 and limits.destination_rate_delay <= 0
                and dest.window == self._initial(limits)):
            state.destinations.pop(name, None)

    def feedback(self, transport: str, destination: str, *, success: bool) -> None:
        """Widen (success) or narrow (all recipients deferred) a destination's window."""
        state = self._transports[transport]
        dest = state.destinations.get(destination)
        if dest is None or state.limits.destination_rate_delay > 0:
            return
        step = 1.0 / max(dest.window, 1.0)
        if success:
            dest.window += step
            if state.limits.destination_concurrency:
                dest.window = min(dest.window, float(state.limits.destination_concurrency))
            self._wake(state, dest)
        else:
            dest.window = max(dest.window - step, 1.0)


class Slot:
    """One delivery slot: waited for on entering ``async with``, given back on leaving."""

    def __init__(self, scheduler: Scheduler, transport: str, destination: str) -> None:
        self._scheduler = scheduler
        self._transport = transport
        self._destination = destination
        self._held: tuple[_Transport, _Destination] | None = None

    async def __aenter__(self) -> None:
        self._held = await self._scheduler._acquire(self._transport, self._destination)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            state, dest = self._held
            self._held = None
            self._scheduler._release(state, self._destination, dest)
