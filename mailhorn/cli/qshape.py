"""qshape(1): the queue's distribution by domain and age.

``qshape [-s] [-p] [-m min_subdomains] [-b bucket_count] [-t bucket_time] [-l]
[-w terminal_width] [-N batch_msg_count] [-n batch_top_domains]
[-c config_directory] [queue_name ...]``

Counts the recipients (``-s``: the senders) of the messages in the named
queues (default ``incoming active``; names relative to ``queue_directory``,
absolute paths as they are) by domain and by age, in Postfix's layout::

                                             T  5 10 20 40 80 160 320 640 1280 1280+
                                      TOTAL  5  2  0  0  0  0   0   0   0    0     3
                                example.com  3  1  0  0  0  0   0   0   0    0     2

Column 0 is the total; bucket 1 counts messages younger than
``bucket_time`` minutes (default 5), each further bucket twice as old
(``-l``: the next multiple), the last one without a limit; ``-b`` sets the
number of buckets (default 10). A column is one wider than the longest of
its heading and its TOTAL count, at least 3. Domains are right-aligned so
the last column ends at ``terminal_width`` (default 80, ``-w`` only widens);
the domain field is at least 18 wide and a longer name shows as ``+`` and
its last characters (``.+`` for a parent domain). Rows are sorted by count,
then by name length; ties keep the order in which the domains were met.
The null sender shows as ``MAILER-DAEMON``.

``-p`` adds rows for parent domains (``.example.com``) with at least
``min_subdomains`` (``-m``, default 5) distinct subdomains; top-level domains
are never shown. On a terminal intermediate results are shown every
``batch_msg_count`` (``-N``, default 1000) messages and only the top
``batch_top_domains`` (``-n``, default 20) rows; otherwise every row, once.

The age of a message is measured from its arrival time. Unlike Postfix's
qshape, which counts only files whose "ready" permission bit is set (so a
message marked for forced expiry disappears from its output), every valid
mailhorn queue file is counted.

Parameters read: ``queue_directory``.

Exit status: 0; 255 for bad usage, as Postfix's qshape (a Perl ``die``).
"""

from __future__ import annotations

import getopt
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import load
from mailhorn.queue.queuefile import CorruptQueueFile, read_queue_file

PROGRAM = "qshape"
OPTSTRING = "lhc:psw:b:t:m:n:N:"
USAGE = (
    "Usage: qshape [ -s ] [ -p ] [ -m <min_subdomains> ] [ -l ]\n"
    "\t[ -b <bucket_count> ] [ -t <bucket_time> ] [ -w <terminal_width> ]\n"
    "\t[ -N <batch_msg_count> ] [ -n <batch_top_domains> ]\n"
    "\t[ -c <config_directory> ] [ <queue_name> ... ]\n"
    "The 's' option shows sender domain counts.\n"
    "The 'p' option shows address counts by for parent domains.\n"
    "Parent domains are shown with a leading '.' before the domain name.\n"
    "Parent domains are only shown if the domain is not a TLD, and at\n"
    "least <min_subdomains> (default 5) subdomains are shown in the output.\n\n"
    "The bucket age ranges in units of <bucket_time> minutes are\n"
    "[0,1), [1,2), [2,4), [4,8), [8, 16), ... i.e.:\n"
    "\tthe first bucket is [0, bucket_time) minutes\n"
    "\tthe second bucket is [bucket_time, 2*bucket_time) minutes\n"
    "\tthe third bucket is [2*bucket_time, 4*bucket_time) minutes...\n"
    "'-l' makes the ages linear, the number of buckets shown is <bucket_count>\n\n"
    "The default summary is for the incoming and active queues. An explicit\n"
    "list of queue names can be given on the command line. Non-absolute queue\n"
    "names are interpreted relative to the Postfix queue directory. Use\n"
    "<config_directory> to specify a non-default Postfix instance.  Values of\n"
    "the main.cf queue_directory parameter that use variable expansions are\n"
    "not supported. If necessary, use explicit absolute paths for all queues.\n"
)
EX_DIE = 255
DEFAULT_QUEUES = ("incoming", "active")
MIN_DOMAIN_WIDTH = 18
CLEAR_SCREEN = "\x1b[H\x1b[2J"

_QUEUE_FILE_NAME = re.compile(r"[A-Za-z0-9]{6,}")
_PARENT = re.compile(r"^\.?[^.]+\.(.*\.)")
_OUTER_DOTS = re.compile(r"\.?(.+?)\.?$", re.DOTALL)


class UsageError(Exception):
    """Bad options: qshape prints the usage text and exits 255."""


def _number(text: str) -> float | None:
    """A numeric option value; None when it is not a positive number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def _label(value: float) -> str:
    """A bucket limit as Perl prints a number: ``5``, ``2.5``."""
    return str(int(value)) if value == int(value) else repr(value)


@dataclass
class Options:
    senders: bool = False
    parents: bool = False
    linear: bool = False
    buckets: int = 10
    tick: float = 5.0
    width: int = 80
    min_subdomains: int = 5
    batch_messages: int | None = None
    batch_top: int | None = None
    config_dir: str | None = None
    queues: list[str] = field(default_factory=lambda: list(DEFAULT_QUEUES))


def parse_args(argv: list[str]) -> Options:
    try:
        pairs, args = getopt.getopt(argv, OPTSTRING)
    except getopt.GetoptError as exc:
        raise UsageError(f"Unknown option: {exc.opt}") from None
    opts = Options()
    for flag, value in pairs:
        if flag == "-h":
            raise UsageError("")
        if flag == "-s":
            opts.senders = True
        elif flag == "-p":
            opts.parents = True
        elif flag == "-l":
            opts.linear = True
        elif flag == "-c":
            opts.config_dir = value
        else:
            number = _number(value)
            if flag == "-w" and number is not None and number > 80:
                opts.width = int(number)
            elif flag == "-b" and number is not None:
                opts.buckets = int(number)
            elif flag == "-t" and number is not None:
                opts.tick = number
            elif flag == "-m" and number is not None:
                opts.min_subdomains = int(number)
            elif flag == "-N":
                opts.batch_messages = int(number or 0)
            elif flag == "-n":
                opts.batch_top = int(number or 0)
    if args:
        opts.queues = args
    return opts


def domain_of(address: str) -> str:
    """The domain counted for an address, normalised as qshape does."""
    if address == "":
        return "MAILER-DAEMON"
    domain = address.lower()
    domain = domain[domain.rfind("@") + 1:]
    domain = domain.replace("..", ".")
    match = _OUTER_DOTS.match(domain)
    return match.group(1) if match else domain


class Shape:
    """Counts per domain and age bucket (bucket 0 is the total)."""

    def __init__(self, opts: Options, now: float) -> None:
        self.opts = opts
        self.now = now
        self.rows: dict[str, list[int]] = {}
        self.subdomains: dict[str, int] = {}

    def _row(self, key: str) -> list[int]:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * (self.opts.buckets + 1)
        return row

    def bucket(self, arrival: float) -> int:
        minutes = (self.now - arrival) / (60 * self.opts.tick)
        if minutes < 1:
            return 1
        index = int(minutes + 1) if self.opts.linear else 2 + int(math.log(minutes) / math.log(2))
        return min(index, self.opts.buckets)

    def add(self, arrival: float, sender: str, recipients: list[str]) -> None:
        b = self.bucket(arrival)
        addresses = [sender] if self.opts.senders else recipients
        for address in addresses:
            total = self._row("TOTAL")
            total[0] += 1
            total[b] += 1
            domain = domain_of(address)
            new = False
            while True:
                row = self._row(domain)
                row[0] += 1
                old = row[0] > 1
                row[b] += 1
                if new:
                    self.subdomains[domain] = self.subdomains.get(domain, 0) + 1
                new = not old
                if not self.opts.parents:
                    break
                domain, changed = _PARENT.subn(r".\1", domain, count=1)
                if not changed:
                    break

    def report(self, out: TextIO, top: int) -> None:
        """Print the heading and the rows, as qshape's results()."""
        opts = self.opts
        total = self._row("TOTAL")
        heads: list[str] = []
        widths: list[int] = []
        domain_width = opts.width
        limit: float = 0
        limit_text = ""
        for i in range(opts.buckets + 1):
            head = "T" if i == 0 else (limit_text or _label(limit))
            size = max(len(str(total[i])), len(head))
            size = size + 1 if size > 2 else 3
            heads.append(head)
            widths.append(size)
            domain_width -= size
            if i + 1 < opts.buckets:
                limit += limit if (limit and not opts.linear) else opts.tick
            else:
                limit_text = (limit_text or _label(limit)) + "+"
        domain_width = max(domain_width, MIN_DOMAIN_WIDTH)

        def line(name: str, cells: list[str]) -> None:
            if len(name) > domain_width:
                if name.startswith("."):
                    shown = ".+" + name[len(name) - domain_width + 2:]
                else:
                    shown = "+" + name[len(name) - domain_width + 1:]
            else:
                shown = name.rjust(domain_width)
            out.write(shown + "".join(c.rjust(w) for c, w in zip(cells, widths)) + "\n")

        line("", heads)
        shown = 0
        order = sorted(self.rows, key=lambda d: (-self.rows[d][0], len(d)))
        for name in order:
            if name.startswith(".") and self.subdomains.get(name, 0) < opts.min_subdomains:
                continue
            shown += 1
            if top > 0 and shown > top:
                break
            line(name, [str(n) for n in self.rows[name]])


def _queue_files(path: str) -> Iterator[str]:
    for directory, subdirs, files in os.walk(path):
        subdirs.sort()
        for name in sorted(files):
            if _QUEUE_FILE_NAME.fullmatch(name):
                yield os.path.join(directory, name)


def _envelope(path: str) -> tuple[int, str, list[str]] | None:
    """(arrival seconds, sender, pending recipients) of a valid queue file."""
    try:
        with open(path, "rb") as stream:
            qf = read_queue_file(stream, verify_content=False)
    except (OSError, CorruptQueueFile):
        return None
    return qf.arrival_time[0], qf.sender, [r.address for r in qf.recipients if not r.done]


def shape(opts: Options, queue_root: str, out: TextIO, *, terminal: bool) -> None:
    """Count the queues and print the result (intermediate ones on a terminal)."""
    batch = (1000 if opts.batch_messages is None else opts.batch_messages) if terminal else 0
    top = (20 if opts.batch_top is None else opts.batch_top) if terminal else 0
    clear = CLEAR_SCREEN if batch > 0 else ""
    counts = Shape(opts, float(int(time.time())))
    messages = 0
    for queue in opts.queues:
        path = queue if os.path.isabs(queue) else os.path.join(queue_root, queue)
        if not os.path.isdir(path):
            print(f"{PROGRAM}: Can't stat {queue}: No such file or directory", file=sys.stderr)
            continue
        for file in _queue_files(path):
            envelope = _envelope(file)
            if envelope is None:
                continue
            counts.add(*envelope)
            messages += 1
            if batch > 0 and messages % batch == 0:
                out.write(clear)
                counts.report(out, top)
                out.flush()
    out.write(clear)
    counts.report(out, top)
    out.flush()


def run(argv: list[str]) -> int:
    """Entry point: ``qshape [options] [queue_name ...]``."""
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        if str(exc):
            print(f"{PROGRAM}: {exc}", file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        return EX_DIE
    queue_root = ""
    if any(not os.path.isabs(q) for q in opts.queues):
        try:
            queue_root = load(opts.config_dir).get("queue_directory")
        except ConfigError as exc:
            print(f"{PROGRAM}: postconf failed: {exc}", file=sys.stderr)
            return EX_DIE
        if not os.path.isdir(queue_root):
            print(f"{PROGRAM}: chdir({queue_root}): No such file or directory", file=sys.stderr)
            return EX_DIE
    shape(opts, queue_root, sys.stdout, terminal=sys.stdout.isatty())
    return 0
