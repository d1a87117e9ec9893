"""What the queue manager keeps while it makes one delivery attempt of a message.

:class:`ActiveMessage` is a message in ``active`` during one attempt (its
validated envelope and the attempt's flags); its pending recipients, each
with the address it resolved to (:class:`PendingRecipient`), are grouped
into :class:`Job`\\ s, one delivery request per transport and destination;
each recipient's :class:`RecordedStatus` is what gets written back to the
queue file and logged.  Plain records: the logic is in
:mod:`mailhorn.queue.manager`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhorn.delivery.request import DeliveryRecipient, RecipientStatus
from mailhorn.queue import qmgr_log
from mailhorn.queue.queuefile import QueueFile, Recipient, notify_names
from mailhorn.services import Transport

__all__ = ["ActiveMessage", "Job", "PendingRecipient", "RecordedStatus"]


@dataclass
class PendingRecipient:
    """A pending recipient and the address it resolved to."""

    rec: Recipient
    address: str

    def delivery(self) -> DeliveryRecipient:
        return DeliveryRecipient(self.address, self.rec.offset, self.rec.orig_rcpt, self.rec.dsn_orcpt,
                                 notify_names(self.rec.dsn_notify))


@dataclass
class Job:
    """Recipients for one delivery request."""

    transport: Transport
    destination: str
    nexthop: str
    recipients: list[PendingRecipient] = field(default_factory=list)

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, transport: Transport, destination: str, nexthop: str,
                 recipients: list[PendingRecipient] | None = None) -> None:
        self.transport = transport
        self.destination = destination
        self.nexthop = nexthop
        self.recipients = recipients if recipients is not None else []


@dataclass
class ActiveMessage:
    """One message during one attempt."""

    queue_id: str
    qf: QueueFile
    active_arrival: float
    forced_expire: bool
    flush: bool
    deferred: bool = False
    gone: bool = False
    corrupt: bool = False
    #: A bounce or success record was written in this attempt (a notice is due).
    noticed: bool = False
    #: Delivery requests not recorded yet.
    jobs_left: int = 0
    #: The file was removed when the last request was recorded.
    removed: bool = False

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, queue_id: str, qf: QueueFile, active_arrival: float, forced_expire: bool, flush: bool,
                 deferred: bool = False, gone: bool = False, corrupt: bool = False, noticed: bool = False,
                 jobs_left: int = 0, removed: bool = False) -> None:
        self.queue_id = queue_id
        self.qf = qf
        self.active_arrival = active_arrival
        self.forced_expire = forced_expire
        self.flush = flush
        self.deferred = deferred
        self.gone = gone
        self.corrupt = corrupt
        self.noticed = noticed
        self.jobs_left = jobs_left
        self.removed = removed

    @property
    def arrival(self) -> float:
        return self.qf.arrival_time[0] + self.qf.arrival_time[1] / 1e6


@dataclass(frozen=True)
class RecordedStatus:
    """A recipient's status ready to be recorded and logged."""

    rcpt: PendingRecipient
    status: RecipientStatus
    delays: qmgr_log.Delays
    program: str

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, rcpt: PendingRecipient, status: RecipientStatus, delays: qmgr_log.Delays,
                 program: str) -> None:
        object.__setattr__(self, "rcpt", rcpt)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "delays", delays)
        object.__setattr__(self, "program", program)
