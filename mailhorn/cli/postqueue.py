"""postqueue(1): list the mail queue, or ask for its delivery.

``postqueue [-v] [-c config_dir] -p | -j | -f | -i queue_id | -s site``

* ``-p``: the sendmail-style listing (``mailq``), as Postfix 3.7 prints it.
  With ``enable_long_queue_ids = no``::

      -Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
      62E4020C274*     270 Sat Nov 21 14:49:08  alice@example.org
                                                                   (test reason one)
                                               bob@example.com

  that is ID and status marks left-aligned in 11 columns, the size in 8,
  a space, the arrival time (``%a %b %e %H:%M:%S``, local time), two spaces
  and the sender (``MAILER-DAEMON`` for ``<>``); recipients indented 41
  columns. With ``enable_long_queue_ids = yes`` the header is
  ``----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------``,
  the ID field 17 columns followed by a space, one space before the sender,
  recipients indented 47. Status marks: ``*`` active, ``!`` on hold, ``#``
  forced to expire. A reason line ``(reason)`` is right-aligned to column 78
  (no padding when longer) and printed whenever the reason changes from the
  previous recipient's; a recipient without a reason after one with a reason
  shows ``(reason unavailable)``. A blank line ends each message; the footer
  is ``-- N Kbytes in M Requests.`` (N = total message size / 1024, rounded
  down; ``Request`` for one) or ``Mail queue is empty``.
* ``-j``: one JSON object per message and line, with Postfix's members
  ``queue_name``, ``queue_id``, ``arrival_time``, ``message_size``,
  ``forced_expire``, ``sender``, ``recipients`` (``address`` and, when
  known, ``delay_reason``).
* ``-f``, ``-i queue_id``, ``-s site``: ask the queue manager, through the
  master's control socket, to retry deferred mail now. ``-s`` first checks
  that the site is eligible (``fast_flush_domains``) as Postfix does.
  mailhorn keeps no per-destination flush logs, so ``-s`` and ``-i`` retry
  the whole deferred queue.

The listing reads the queue directly (mailhorn has no showq daemon), so it
works whether or not the mail system runs.

Parameters read: ``queue_directory``, ``hash_queue_names``,
``hash_queue_depth``, ``enable_long_queue_ids``, ``fast_flush_domains``,
``parent_domain_matches_subdomains``, ``process_id_directory``.

Exit status: 0 on success; 69 (EX_UNAVAILABLE, as Postfix) for bad usage,
a site not eligible for flushing, or a mail system that is not running.
"""

from __future__ import annotations

import getopt
import json
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.master import control
from mailhorn.queue.listing import QueueEntry, scan
from mailhorn.queue.store import QueueStore
from mailhorn.tables.base import TableRetry
from mailhorn.tables.matchlist import domain_list_from_config

PROGRAM = "postqueue"
OPTSTRING = "c:fi:jps:v"
USAGE = ("usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | "
         "postqueue -s site")
#: sysexits.h EX_UNAVAILABLE: Postfix's postqueue exit status for every failure.
EX_UNAVAILABLE = 69

SHORT_HEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
LONG_HEADER = "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
#: Reasons are right-aligned so that the closing parenthesis ends in column 78.
REASON_WIDTH = 76
NO_REASON = "reason unavailable"


def _fatal(text: str) -> None:
    log.fatal(text, EX_UNAVAILABLE)


def arrival_text(seconds: int) -> str:
    """Arrival time as showq prints it: ``Sat Nov  1 14:49:08`` (local time)."""
    return time.strftime("%a %b %e %H:%M:%S", time.localtime(seconds))


def _printable(text: str) -> str:
    """Control characters become ``?`` so a listing line stays one line."""
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def sender_text(sender: str) -> str:
    return "MAILER-DAEMON" if sender == "" else sender


def format_entry(entry: QueueEntry, *, long_ids: bool) -> str:
    """One message of the ``-p`` listing, with its closing blank line."""
    ident = entry.queue_id + entry.status_marks
    date = arrival_text(entry.arrival_time)
    sender = _printable(sender_text(entry.sender))
    if long_ids:
        lines = [f"{ident:<17} {entry.message_size:8d} {date} {sender}"]
        indent = " " * 47
    else:
        lines = [f"{ident:<11}{entry.message_size:8d} {date}  {sender}"]
        indent = " " * 41
    shown = ""
    for rcpt in entry.recipients:
        reason = rcpt.reason or ""
        if reason != shown:
            text = _printable(reason or NO_REASON)
            lines.append(" " * max(0, REASON_WIDTH - len(text)) + f"({text})")
            shown = reason
        lines.append(indent + _printable(rcpt.address))
    return "\n".join(lines) + "\n\n"


def print_listing(entries: Iterable[QueueEntry], out: TextIO, *, long_ids: bool) -> None:
    """The whole ``-p`` listing: header, messages, footer."""
    count = 0
    total = 0
    for entry in entries:
        if count == 0:
            out.write((LONG_HEADER if long_ids else SHORT_HEADER) + "\n")
        out.write(format_entry(entry, long_ids=long_ids))
        count += 1
        total += entry.message_size
    if count == 0:
        out.write("Mail queue is empty\n")
    else:
        out.write(f"-- {total // 1024} Kbytes in {count} Request{'' if count == 1 else 's'}.\n")


def json_entry(entry: QueueEntry) -> str:
    """One ``-j`` line (members in Postfix's order)."""
    recipients: list[dict[str, str]] = []
    for rcpt in entry.recipients:
        item = {"address": rcpt.address}
        if rcpt.reason:
            item["delay_reason"] = rcpt.reason
        recipients.append(item)
    obj = {
        "queue_name": entry.queue_name,
        "queue_id": entry.queue_id,
        "arrival_time": entry.arrival_time,
        "message_size": entry.message_size,
        "forced_expire": entry.forced_expire,
        "sender": sender_text(entry.sender),
        "recipients": recipients,
    }
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _store(config: Config) -> QueueStore:
    try:
        return QueueStore.from_config(config)
    except (ConfigError, ValueError) as exc:
        _fatal(str(exc))
        raise AssertionError("unreachable") from exc


def _on_corrupt(queue: str, queue_id: str, exc: Exception) -> None:
    log.warning(f"{queue}/{queue_id}: corrupt queue file: {exc}")


def show_queue(config: Config, *, as_json: bool, out: TextIO) -> int:
    """``-p`` / ``-j`` (and ``mailq``)."""
    store = _store(config)
    entries = scan(store, on_error=_on_corrupt)
    if as_json:
        for entry in entries:
            out.write(json_entry(entry))
    else:
        print_listing(entries, out, long_ids=config.bool("enable_long_queue_ids"))
    out.flush()
    return 0


def _flush(config: Config, *, flush_service: bool) -> int:
    """Wake the queue manager through the master; Postfix's texts when it is down."""
    if control.running_pid(config) is None:
        if flush_service:
            log.warning("connect to public/flush: Connection refused")
        _fatal("Cannot flush mail queue - mail system is down")
    try:
        control.request(config, "flush")
    except control.ControlError as exc:
        log.warning(f"flush request: {exc}")
        _fatal("Cannot flush mail queue - mail system is down")
    return 0


def flush_site(config: Config, site: str) -> int:
    """``-s site``: only a destination listed in ``fast_flush_domains`` qualifies."""
    name = site[1:-1] if site.startswith("[") and site.endswith("]") else site
    try:
        allowed = domain_list_from_config(config, "fast_flush_domains").match(name.lower())
    except ConfigError as exc:
        _fatal(str(exc))
    except TableRetry:
        _fatal(f"Cannot flush mail queue for \"{site}\" - try again later")
    if not allowed:
        _fatal(f"Flush service is not configured for destination \"{site}\"")
    return _flush(config, flush_service=True)


def _parse(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        return getopt.getopt(argv, OPTSTRING)
    except getopt.GetoptError as exc:
        if exc.opt and "requires argument" in exc.msg:
            print(f"{PROGRAM}: option requires an argument -- '{exc.opt}'", file=sys.stderr)
        else:
            print(f"{PROGRAM}: invalid option -- '{exc.opt}'", file=sys.stderr)
        _fatal(USAGE)
        raise AssertionError("unreachable") from exc


def run(argv: list[str]) -> int:
    """Entry point: ``postqueue [-v] [-c config_dir] -f|-i ID|-j|-p|-s site``."""
    log.setup(PROGRAM, stderr=True)
    pairs, args = _parse(argv)
    config_dir: str | None = None
    mode: str | None = None
    value = ""
    for flag, arg in pairs:
        if flag == "-c":
            config_dir = arg
        elif flag == "-v":
            continue
        else:
            if mode is not None:
                _fatal(USAGE)
            mode, value = flag, arg
    if mode is None or args:
        _fatal(USAGE)
    try:
        config = load(config_dir)
        log.setup(PROGRAM, syslog_name=config.get("syslog_name") or "mailhorn",
                  facility=config.get("syslog_facility"),
                  maillog_file=config.get("maillog_file"), stderr=True)
    except ConfigError as exc:
        _fatal(str(exc))
    if mode == "-p":
        return show_queue(config, as_json=False, out=sys.stdout)
    if mode == "-j":
        return show_queue(config, as_json=True, out=sys.stdout)
    if mode == "-s":
        return flush_site(config, value)
    if mode == "-i":
        return _flush(config, flush_service=True)
    return _flush(config, flush_service=False)
