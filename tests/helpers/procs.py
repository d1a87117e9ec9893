"""Processes of a server under test, read from ``/proc``.

A server started in a session of its own (``start_new_session=True``) has
its process ID as process group ID; :func:`group_members` lists the group,
:func:`process_tree` the group and every descendant of its leader, should
one have left the group (a helper that started a session of its own).
Zombies count as gone: they have exited and only wait for their parent.
:func:`stop_process` ends a peer started with :class:`subprocess.Popen`.
"""

from __future__ import annotations

import os
import subprocess

__all__ = ["group_members", "live_processes", "process_tree", "stop_process"]


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    """Ask ``proc`` to stop (SIGTERM), and kill it if it has not exited after ``grace`` seconds.

    A peer's clean shutdown can take longer than a test may wait on a loaded
    machine; the test then still ends with the process reaped, not left running.
    """
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def live_processes() -> dict[int, tuple[int, int]]:
    """``pid: (parent pid, process group ID)`` of every process that has not exited."""
    found: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: count from the last ")".
        fields = text[text.rfind(")") + 2:].split()
        if fields[0] != "Z":
            found[int(name)] = (int(fields[1]), int(fields[2]))
    return found


def group_members(pgid: int) -> list[int]:
    """Live members of a process group."""
    return sorted(pid for pid, (_ppid, group) in live_processes().items() if group == pgid)


def process_tree(pgid: int) -> list[int]:
    """Live members of a process group and every live descendant of its leader ``pgid``."""
    table = live_processes()
    found = {pid for pid, (_ppid, group) in table.items() if group == pgid}
    while True:
        below = {pid for pid, (ppid, _group) in table.items() if ppid in found or ppid == pgid} - found
        if not below:
            return sorted(found)
        found |= below
