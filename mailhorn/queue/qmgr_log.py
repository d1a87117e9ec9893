"""The queue manager's log records, in Postfix's exact format.

Log analysers (pflogsumm, postfix_exporter, fail2ban) parse these lines, so
their text follows Postfix's:

* ``QUEUEID: from=<sender>, size=N, nrcpt=M (queue active)`` when a message
  enters the active queue (Postfix's ``opened()``, logged by ``qmgr``);
* ``QUEUEID: to=<rcpt>, orig_to=<orig>, relay=R, delay=D,
  delays=a/b/c/d, dsn=X.Y.Z, status=sent (text)`` per recipient and
  attempt (Postfix's ``log_adhoc()``), logged under the delivery agent's
  program name (``local``, ``smtp``, ``pipe``, ...): the queue manager logs
  on the agents' behalf from the :class:`RecipientStatus` they return;
* ``QUEUEID: from=<sender>, status=expired, returned to sender`` (or
  ``status=force-expired`` after ``postsuper -e``/``-f``);
* ``QUEUEID: removed`` when the queue file is deleted.

``orig_to`` appears only when the original recipient differs (ignoring
case) from the recipient. ``delay`` is the time since the message arrived;
``delays`` splits it in four: before the queue manager (a), in the queue
manager (b), connection set-up (c) and transmission (d). Each figure is
printed as Postfix's ``format_tv()`` does: two significant digits for
values under ten seconds, never more decimals than
``delay_logging_resolution_limit``, whole seconds from ten seconds on.

Parameters read: ``delay_logging_resolution_limit`` (by the caller, passed
as ``max_digits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailhorn import log

__all__ = [
    "Delays",
    "expired",
    "format_delay",
    "format_tv",
    "opened",
    "recipient_line",
    "removed",
]

MILLION: Final = 1_000_000
#: Postfix logs delays with two significant digits (log_adhoc.c SIG_DIGS).
SIG_DIGITS: Final = 2
_POW10: Final = (1, 10, 100, 1000, 10000, 100000, 1000000)


def format_tv(sec: int, usec: int, sig_digits: int = SIG_DIGITS, max_digits: int = 2) -> str:
    """A time as Postfix's format_tv() prints it (limited precision, no trailing zeros).

    The resolution is the coarser of ``max_digits`` decimals and
    ``sig_digits`` significant digits; the value is rounded to it and
    printed without trailing zeros (``0.12``, ``1.3``, ``12``, ``0``).
    """
    if not 0 <= max_digits <= 6:
        raise ValueError(f"bad maximum decimal count {max_digits}")
    if not 1 <= sig_digits <= 6:
        raise ValueError(f"bad significant decimal count {sig_digits}")
    sec = max(sec, 0)
    usec = min(max(usec, 0), MILLION)
    ures = MILLION // _POW10[max_digits]
    wid = _POW10[sig_digits]
    if ures < MILLION:
        if sec > 0:
            n = 1
            while sec >= n and n <= wid // 10:
                n *= 10
            ures = (MILLION // wid) * n
        else:
            while usec >= wid * ures:
                ures *= 10
    if ures > 1:
        usec += ures // 2
        if usec >= MILLION:
            sec += 1
            usec -= MILLION
    out = [str(sec)]
    if usec >= ures:
        out.append(".")
        rem, n = usec, MILLION // 10
        while rem >= ures and n > 0:
            out.append("0123456789"[rem // n])
            rem %= n
            n //= 10
    return "".join(out)


def format_delay(seconds: float, max_digits: int = 2) -> str:
    """A duration in seconds (negative counts as zero) through :func:`format_tv`."""
    micros = max(int(round(seconds * MILLION)), 0)
    sec, usec = divmod(micros, MILLION)
    return format_tv(sec, usec, SIG_DIGITS, max_digits)


@dataclass(frozen=True)
class Delays:
    """The four parts of a recipient's delay, in seconds (log_adhoc's pdelay/adelay/sdelay/xdelay)."""

    before_qmgr: float
    in_qmgr: float
    conn_setup: float
    transmission: float

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, before_qmgr: float, in_qmgr: float, conn_setup: float, transmission: float) -> None:
        object.__setattr__(self, "before_qmgr", before_qmgr)
        object.__setattr__(self, "in_qmgr", in_qmgr)
        object.__setattr__(self, "conn_setup", conn_setup)
        object.__setattr__(self, "transmission", transmission)

    @property
    def total(self) -> float:
        return self.before_qmgr + self.in_qmgr + self.conn_setup + self.transmission

    def render(self, max_digits: int = 2) -> str:
        """``delay=D, delays=a/b/c/d``."""
        parts = "/".join(format_delay(x, max_digits)
                         for x in (self.before_qmgr, self.in_qmgr, self.conn_setup, self.transmission))
        return f"delay={format_delay(self.total, max_digits)}, delays={parts}"


def opened(queue_id: str, sender: str, size: int, nrcpt: int, queue: str = "active") -> None:
    """``ID: from=<sender>, size=N, nrcpt=M (queue active)``, logged by qmgr."""
    log.info(f"{queue_id}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue {queue})", program="qmgr")


def recipient_line(queue_id: str, recipient: str, orig_rcpt: str | None, relay: str,
                   delays: Delays, dsn: str, status: str, text: str, *, max_digits: int = 2) -> str:
    """The text of one ``to=<...>`` record (log_adhoc's layout)."""
    parts = [f"{queue_id}: to=<{recipient}>"]
    if orig_rcpt and orig_rcpt.lower() != recipient.lower():
        parts.append(f"orig_to=<{orig_rcpt}>")
    parts.append(f"relay={relay}")
    parts.append(delays.render(max_digits))
    parts.append(f"dsn={dsn}")
    parts.append(f"status={status} ({text})")
    return ", ".join(parts)


def expired(queue_id: str, sender: str, *, forced: bool) -> None:
    """``ID: from=<sender>, status=expired, returned to sender`` (qmgr)."""
    status = "force-expired" if forced else "expired"
    log.info(f"{queue_id}: from=<{sender}>, status={status}, returned to sender", program="qmgr")


def removed(queue_id: str) -> None:
    """``ID: removed`` (qmgr)."""
    log.info(f"{queue_id}: removed", program="qmgr")
