"""smtpd's log lines, in Postfix's words.

- ``connect from name[addr]`` and ``disconnect from name[addr] ehlo=1 mail=1
  rcpt=0/1 data=0/1 commands=2/4``: the disconnect line counts each command
  as ``name=ok`` or ``name=ok/total`` in Postfix's command-table order, then
  ``unknown=`` for unrecognised commands, then ``commands=``
  (:class:`CommandCounters`);
- ``lost connection after CMD from name[addr]`` and ``timeout after CMD from
  name[addr]``; after DATA or BDAT content the byte count is added: ``lost
  connection after DATA (1234 bytes) from ...``;
- ``NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 <x@y>: Relay access
  denied; from=<a@b> to=<x@y> proto=ESMTP helo=<h>`` (:func:`whatsup`),
  used for rejects, ``warn:``, ``hold:``, ``discard:``, ``filter:``,
  ``redirect:`` alike;
- ``improper command pipelining after CMD from name[addr]: TEXT``.

``name[addr]`` gains ``:port`` when ``smtpd_client_port_logging = yes``.

Parameters read: none (the session passes the settings).  Errors: none.
"""

from __future__ import annotations

from typing import Final

from mailhorn import log
from mailhorn.smtp.reply import Reply, printable

__all__ = ["COMMAND_ORDER", "CommandCounters", "namaddr", "whatsup"]

#: Postfix's smtpd command table order, which the disconnect line follows.
COMMAND_ORDER: Final = (
    "helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt",
    "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit",
)


def namaddr(name: str, addr: str, port: str = "", *, with_port: bool = False) -> str:
    """``name[addr]`` (``name[addr]:port`` with smtpd_client_port_logging)."""
    text = f"{name}[{addr}]"
    return f"{text}:{port}" if with_port and port else text


class CommandCounters:
    """How many of each command arrived and how many succeeded."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.ok: dict[str, int] = {}

    def count(self, name: str, success: bool) -> None:
        key = name if name in COMMAND_ORDER else "unknown"
        self.total[key] = self.total.get(key, 0) + 1
        if success:
            self.ok[key] = self.ok.get(key, 0) + 1

    def succeed(self, name: str) -> None:
        """A command counted as failed turned out well (DATA, once its content is queued)."""
        self.ok[name] = self.ok.get(name, 0) + 1

    @staticmethod
    def _pair(ok: int, total: int) -> str:
        return str(ok) if ok == total else f"{ok}/{total}"

    def summary(self) -> str:
        """``ehlo=1 mail=1 rcpt=0/1 data=0/1 commands=2/4`` (empty when no command came)."""
        parts = []
        for name in (*COMMAND_ORDER, "unknown"):
            total = self.total.get(name, 0)
            if total:
                parts.append(f"{name}={self._pair(self.ok.get(name, 0), total)}")
        total = sum(self.total.values())
        ok = sum(self.ok.values())
        parts.append(f"commands={self._pair(ok, total)}")
        return " ".join(parts)


def whatsup(queue_id: str, action: str, stage: str, client: str, text: str, *,
            sender: str | None, recipient: str | None, protocol: str, helo: str | None) -> None:
    """Log ``QUEUEID: ACTION: STAGE from CLIENT: TEXT; from=<> to=<> proto=P helo=<h>``."""
    tail = []
    if sender is not None:
        tail.append(f"from=<{printable(sender)}>")
    if recipient is not None:
        tail.append(f"to=<{printable(recipient)}>")
    tail.append(f"proto={protocol}")
    if helo is not None:
        tail.append(f"helo=<{printable(helo)}>")
    log.info(f"{queue_id or 'NOQUEUE'}: {action}: {stage} from {client}: {printable(text)}; {' '.join(tail)}")


def reply_text(reply: Reply) -> str:
    """A reply as one log string: ``554 5.7.1 text``."""
    status = f" {reply.status}" if reply.status else ""
    return f"{reply.code}{status} {' '.join(reply.lines)}"
