"""Per-client connection and rate counting shared by all workers (Postfix's anvil(8)).

smtpd asks, for each new connection, how many connections this client has
open now and how many it opened in the current time unit, and counts
messages, recipients, new TLS sessions and AUTH commands the same way; it
compares the answers with ``smtpd_client_connection_count_limit``,
``smtpd_client_connection_rate_limit`` and the other ``*_rate_limit``
parameters.

The counts must be shared by every worker process, since a client's
connections land on whichever worker accepts them. They live in a table in
shared memory (a ``memfd`` mapped ``MAP_SHARED``) created by the master before
it forks the workers; each worker updates it under a POSIX record lock on the
same file (a lock that the kernel releases if the worker dies holding it).
One table slot per (service, client address) holds:

* the start of the client's current rate window and its connection, message,
  recipient, new-TLS and AUTH counts in that window. As in Postfix's anvil,
  all of a client's rates restart together once ``anvil_rate_time_unit``
  (default 60s) has passed since the window began;
* one simultaneous-connection count per worker, so that when a worker dies
  the master can drop exactly the connections that died with it
  (:meth:`Anvil.forget_worker`).

Slots are found by open addressing (a 128-bit hash of the key, at most
:data:`MAX_PROBE` slots probed). A slot is reused once its client has no
connection open and its window has passed. When every probed slot is busy the
client is not counted (the answer is zero) and a warning is logged once: the
limits are a defence, and failing open under a flood of distinct addresses
beats refusing everyone.

Parameters read: ``anvil_rate_time_unit``.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Final

from mailhorn import log

#: Slots probed for a key before giving up.
MAX_PROBE: Final = 64
#: Slots in the table by default (about 1 MB with a few workers).
DEFAULT_SLOTS: Final = 16384

#: The events smtpd counts besides connections, with their index in a slot.
EVENTS: Final[dict[str, int]] = {"message": 1, "rcpt": 2, "newtls": 3, "auth": 4}
_CONNECT: Final = 0
_RATES: Final = 5
_EMPTY: Final = bytes(16)
_HEAD: Final = struct.Struct("<16sd5I4x")


class Anvil:
    """A :class:`mailhorn.runtime.ConnectionCounter` over a shared-memory table.

    Create one with :meth:`create` in the master before forking; each worker
    calls :meth:`for_worker` with its index.
    """

    def __init__(self, fd: int, region: mmap.mmap, rate_time_unit: float, workers: int, slots: int,
                 worker: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._fd = fd
        self._region = region
        self.rate_time_unit = rate_time_unit
        self.workers = workers
        self.slots = slots
        self.worker = worker
        self._counts = struct.Struct(f"<{workers}I")
        self._slot_size = _HEAD.size + self._counts.size + (-(self._counts.size) % 8)
        self._thread_lock = threading.Lock()
        self._warned = False
        #: The time source (CLOCK_MONOTONIC is the same in every process).
        self.clock = clock

    @classmethod
    def create(cls, rate_time_unit: float, workers: int = 1, slots: int = DEFAULT_SLOTS) -> Anvil:
        """A new, empty table for ``workers`` worker processes."""
        if workers < 1 or slots < 1:
            raise ValueError("anvil needs at least one worker and one slot")
        counts = 4 * workers
        slot_size = _HEAD.size + counts + (-counts % 8)
        fd = os.memfd_create("mailhorn-anvil", os.MFD_CLOEXEC)
        os.ftruncate(fd, slot_size * slots)
        region = mmap.mmap(fd, slot_size * slots, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(fd, region, rate_time_unit, workers, slots)

    def for_worker(self, worker: int) -> Anvil:
        """The same table, counting connections as worker ``worker``."""
        if not 0 <= worker < self.workers:
            raise ValueError(f"worker {worker} out of range")
        return Anvil(self._fd, self._region, self.rate_time_unit, self.workers, self.slots, worker, self.clock)

    # -- locking ------------------------------------------------------------
    def _lock(self) -> None:
        self._thread_lock.acquire()
        fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    # -- slots --------------------------------------------------------------
    @staticmethod
    def _key(service: str, client_addr: str) -> bytes:
        digest = hashlib.blake2b(f"{service}\0{client_addr}".encode("utf-8", "surrogateescape"),
                                 digest_size=16).digest()
        return digest if digest != _EMPTY else b"\1" + digest[1:]

    def _read(self, index: int) -> tuple[bytes, float, list[int], list[int]]:
        offset = index * self._slot_size
        key, start, *rates = _HEAD.unpack_from(self._region, offset)
        counts = list(self._counts.unpack_from(self._region, offset + _HEAD.size))
        return key, start, rates, counts

    def _write(self, index: int, key: bytes, start: float, rates: list[int], counts: list[int]) -> None:
        offset = index * self._slot_size
        _HEAD.pack_into(self._region, offset, key, start, *rates)
        self._counts.pack_into(self._region, offset + _HEAD.size, *counts)

    def _find(self, key: bytes, now: float, create: bool) -> int | None:
        """The slot of ``key``; with ``create``, a fresh or reclaimed one when absent."""
        first = int.from_bytes(key[:8], "little") % self.slots
        reusable: int | None = None
        for step in range(min(MAX_PROBE, self.slots)):
            index = (first + step) % self.slots
            slot_key, start, _rates, counts = self._read(index)
            if slot_key == key:
                return index
            if slot_key == _EMPTY:
                # Slots are never emptied, only reclaimed, so the key is not further on.
                if reusable is None:
                    reusable = index
                break
            if reusable is None and not any(counts) and now - start >= self.rate_time_unit:
                reusable = index
        if not create:
            return None
        if reusable is None:
            if not self._warned:
                self._warned = True
                log.warning("anvil: client table full; connection and rate limits not applied")
            return None
        self._write(reusable, key, now, [0] * _RATES, [0] * self.workers)
        return reusable

    def _count(self, service: str, client_addr: str, rate_index: int, connect: int) -> tuple[int, int]:
        now = self.clock()
        key = self._key(service, client_addr)
        self._lock()
        try:
            index = self._find(key, now, create=True)
            if index is None:
                return 0, 0
            _key, start, rates, counts = self._read(index)
            if now - start >= self.rate_time_unit:
                start, rates = now, [0] * _RATES
            rates[rate_index] += 1
            counts[self.worker] += connect
            self._write(index, key, start, rates, counts)
            return sum(counts), rates[rate_index]
        finally:
            self._unlock()

    # -- ConnectionCounter ----------------------------------------------------
    def connect(self, service: str, client_addr: str) -> tuple[int, int]:
        """Count a new connection: (simultaneous connections, connections this time unit)."""
        return self._count(service, client_addr, _CONNECT, 1)

    def disconnect(self, service: str, client_addr: str) -> None:
        """A connection of this client ended."""
        key = self._key(service, client_addr)
        self._lock()
        try:
            index = self._find(key, self.clock(), create=False)
            if index is None:
                return
            _key, start, rates, counts = self._read(index)
            if counts[self.worker] > 0:
                counts[self.worker] -= 1
                self._write(index, key, start, rates, counts)
        finally:
            self._unlock()

    def event(self, kind: str, service: str, client_addr: str) -> int:
        """Count a ``message``, ``rcpt``, ``newtls`` or ``auth`` event; the rate this time unit."""
        rate_index = EVENTS.get(kind)
        if rate_index is None:
            raise ValueError(f"unknown anvil event {kind!r}")
        return self._count(service, client_addr, rate_index, 0)[1]

    # -- master side ----------------------------------------------------------
    def forget_worker(self, worker: int) -> None:
        """Drop the open connections counted for a worker that has died."""
        self._lock()
        try:
            for index in range(self.slots):
                key, start, rates, counts = self._read(index)
                if key != _EMPTY and counts[worker]:
                    counts[worker] = 0
                    self._write(index, key, start, rates, counts)
        finally:
            self._unlock()

    def close(self) -> None:
        """Release this process's mapping of the table."""
        self._region.close()
        os.close(self._fd)
