"""What tests see of a running mail system: its directory, log, queue and Maildirs.

:func:`private_dir` makes the directory a system runs under (not pytest's
private tmp: workers running as ``mail_owner`` must traverse it);
:class:`Observed` gives a class that has ``queue`` and ``log()`` the waits
the end-to-end and filter tests use (log lines, an empty queue), so no test
depends on timing; :func:`maildir_messages` lists what was delivered.
"""

from __future__ import annotations

import abc
import os
import pwd
import re
import tempfile
from pathlib import Path

from tests.master.util import wait_for

__all__ = ["Observed", "maildir_messages", "private_dir"]


def private_dir(prefix: str, owner: pwd.struct_passwd | None = None) -> Path:
    """A fresh directory under /tmp that other users may traverse, owned by ``owner``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def maildir_messages(maildir: Path) -> list[Path]:
    """Files in a Maildir's ``new`` and ``cur``, oldest name first."""
    found: list[Path] = []
    for sub in ("new", "cur"):
        d = maildir / sub
        if d.is_dir():
            found += sorted(d.iterdir())
    return found


class Observed(abc.ABC):
    """Log and queue waits for a mail system with ``queue`` (its queue_directory) and ``log()``."""

    queue: Path
    #: How long the waits wait unless told.
    wait_timeout = 30.0

    @abc.abstractmethod
    def log(self) -> str:
        ...

    def log_lines(self, pattern: str) -> list[str]:
        """Log lines matching ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        return [line for line in self.log().splitlines() if regex.search(line)]

    def wait_log(self, pattern: str, count: int = 1, timeout: float | None = None) -> list[str]:
        """Log lines matching ``pattern`` (a regex), once there are ``count`` of them."""
        assert wait_for(lambda: len(self.log_lines(pattern)) >= count, self.wait_timeout if timeout is None else timeout), \
            f"no {count} log lines matching {pattern!r}:\n{self.log()}"
        return self.log_lines(pattern)

    def queue_ids(self, queue: str) -> list[str]:
        """Names of the files in a queue (hashed subdirectories included)."""
        root = self.queue / queue
        if not root.is_dir():
            return []
        return sorted(name for _dir, _subdirs, names in os.walk(root) for name in names)

    def wait_queue_empty(self, timeout: float | None = None) -> None:
        queues = ("maildrop", "incoming", "active", "deferred")
        assert wait_for(lambda: not any(self.queue_ids(q) for q in queues), self.wait_timeout if timeout is None else timeout), \
            f"queue not empty: {[(q, self.queue_ids(q)) for q in queues]}\n{self.log()}"
