"""Failed-login rate limiting per client address.

What it does
    :class:`Limiter` counts failed logins per client address within a
    sliding window and tells the servers how to treat the next attempt from
    that address:

    * a *penalty* delay before the attempt is processed, as Dovecot's auth
      penalty does: none after no failure, then ``delay`` doubled for each
      further failure (``delay``, ``2*delay``, ``4*delay`` …) up to ``cap``
      seconds (Dovecot: 2 s doubling up to 15 s);
    * a *refusal* once ``limit`` failures were counted within ``window``
      seconds: the attempt is refused without looking at the password
      until the oldest counted failure leaves the window.

    A successful login from the address clears its count (Dovecot clears the
    penalty the same way).  IPv6 clients are counted by their /64 network,
    since one host usually owns the whole /64; IPv4-mapped IPv6 addresses
    count as the IPv4 address.  At most ``max_clients`` addresses are
    remembered, the least recently failing ones forgotten first, so memory
    stays bounded under a flood from many addresses.

    :meth:`Limiter.failures` exposes the count for smtpd, whose
    ``smtpd_client_auth_rate_limit`` (anvil) limits AUTH commands itself.

Parameters read
    None directly: :class:`mailhorn.auth.passdb.Authenticator` passes
    ``auth_failure_delay`` as ``delay``.

Errors
    None; an address that does not parse is counted as the string given.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

#: Dovecot's AUTH_PENALTY_MAX_SECS: the longest penalty delay.
DEFAULT_CAP = 15.0
#: Dovecot's AUTH_PENALTY_TIMEOUT: failures older than this are forgotten.
DEFAULT_WINDOW = 3600.0
#: Failures within the window after which attempts are refused outright.
DEFAULT_LIMIT = 20
#: Failure times kept per address beyond the limit (the penalty's doublings).
_STAMPS = 33
#: Addresses remembered at most.
DEFAULT_MAX_CLIENTS = 65536


@dataclass(frozen=True)
class Verdict:
    """What to do with an attempt: wait ``delay`` seconds, or refuse it."""

    delay: float
    refused: bool
    failures: int


def client_key(addr: str) -> str:
    """The address failures are counted under (IPv6 by /64)."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class Limiter:
    """Failure counts per client address; thread-safe."""

    def __init__(self, *, delay: float = 2.0, cap: float = DEFAULT_CAP, window: float = DEFAULT_WINDOW,
                 limit: int = DEFAULT_LIMIT, max_clients: int = DEFAULT_MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = max(0.0, delay)
        self.cap = max(0.0, cap)
        self.window = window
        self.limit = limit
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> deque[float] | None:
        """The failure times of ``key`` still inside the window (caller holds the lock)."""
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def failures(self, addr: str) -> int:
        """Failed logins from ``addr`` within the window."""
        with self._lock:
            times = self._current(client_key(addr), self._clock())
            return len(times) if times else 0

    def penalty(self, failures: int) -> float:
        """The delay before an attempt after ``failures`` failures."""
        if failures <= 0 or self.delay <= 0:
            return 0.0
        # Exponent bounded so a long count cannot overflow the float.
        return min(self.delay * 2.0 ** min(failures - 1, 32), self.cap)

    def check(self, addr: str) -> Verdict:
        """How to treat the next attempt from ``addr``."""
        count = self.failures(addr)
        return Verdict(self.penalty(count), self.limit > 0 and count >= self.limit, count)

    def record_failure(self, addr: str) -> None:
        """Count one failed login from ``addr``."""
        key = client_key(addr)
        with self._lock:
            now = self._clock()
            times = self._current(key, now)
            if times is None:
                # Enough stamps to see the limit reached and the penalty at its cap.
                times = deque(maxlen=max(self.limit + 1, _STAMPS))
                self._failures[key] = times
            times.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def record_success(self, addr: str) -> None:
        """Forget the failures of ``addr`` after a successful login."""
        with self._lock:
            self._failures.pop(client_key(addr), None)
