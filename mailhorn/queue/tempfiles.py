"""Whether the writer of a temporary queue file still runs.

A :class:`~mailhorn.queue.store.QueueWriter` names its temporary file
``tmp.PID.THREAD.NANOS.N``: the writing process's ID comes first. At start,
:meth:`~mailhorn.queue.store.QueueStore.recover` removes the files whose
writer is gone, so a killed smtpd leaves no litter for an hour.

:func:`writer_alive` answers from ``/proc`` (Linux): the writer is gone when
no process has that ID, or when the process that has it now is another one:
it started after the file was last written (the ID was reused), or it is not
a mailhorn process (its command line does not name mailhorn). For a file
of our own process, without ``/proc``, or for a name that carries no
process ID, the answer is None (unknown) and the caller falls back to the
file's age.

Parameters read: none. Errors: none (unreadable ``/proc`` entries mean
"unknown" or "gone", as above).
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["writer_alive", "writer_pid"]

#: Slack between a process's start time as /proc gives it (clock ticks after
#: a boot time in whole seconds) and a file's modification time.
START_SLACK: Final = 2.0


def writer_pid(name: str, prefix: str) -> int | None:
    """The process ID in a temporary file name ``PREFIX PID . ...``, or None."""
    if not name.startswith(prefix):
        return None
    head = name[len(prefix):].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if it does not run."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # Field 22 (starttime, clock ticks after boot); the command name in
    # field 2 may hold spaces and parentheses, so count from the last ")".
    fields = text[text.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None  # a zombie has finished writing
    boot = _boot_time()
    if boot is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _is_mailhorn(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"mailhorn" in f.read()
    except OSError:
        return False


def writer_alive(name: str, prefix: str, mtime: float) -> bool | None:
    """Whether the process that wrote temporary file ``name`` (last written at ``mtime``) still runs.

    None when that cannot be told (no process ID in the name, no ``/proc``).
    """
    pid = writer_pid(name, prefix)
    if pid is None or not os.path.isdir("/proc/self"):
        return None
    if pid == os.getpid():
        return None  # one of our own writers may be at work: the age decides
    started = process_start(pid)
    if started is None:
        return False
    if started > mtime + START_SLACK:
        return False  # a newer process got the ID
    return _is_mailhorn(pid)
