"""postcat(1): show queue file contents in human-readable form.

``postcat [-bdehoqv] [-c config_dir] [files...]``

Prints each named queue file (or standard input) as Postfix's postcat does:
``*** ENVELOPE RECORDS name ***``, one ``label: value`` line per envelope
record, ``*** MESSAGE CONTENTS name ***`` and the message lines,
``*** HEADER EXTRACTED name ***`` and the extracted records, and
``*** MESSAGE FILE END name ***``.

Options as Postfix's: ``-e`` envelope, ``-h`` header, ``-b`` body (default:
all three); ``-q`` takes the names as queue IDs and searches the queue
(maildrop, incoming, active, deferred, hold, saved; the name shown is the
path relative to ``queue_directory``); ``-o`` prints each record's file
offset, ``-d`` its decimal type; ``-v`` labels content lines
``regular_text:``; ``-c DIR`` reads ``DIR/main.cf``.

Content lines are printed with a CR before the LF removed, as Postfix stores
lines without their line ends. With ``-o``/``-d`` a content line carries the
offset and type of the chunk record it starts in.

Parameters read: ``queue_directory`` (with ``-q``).

Exit status: 1 for bad usage, a file that cannot be opened, or a queue file
that fails validation (reported as a warning after the part printed so far);
0 otherwise.
"""

from __future__ import annotations

import getopt
import os
import sys
import time
from typing import BinaryIO

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import load
from mailhorn.queue.queuefile import CorruptQueueFile, Record, RecordType, iter_records, split_attributes
from mailhorn.queue.store import QueueStore

USAGE = ("usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] "
         "[-e (envelope records)] [-h (header text)] [-o (offsets)] [-q (access queue)] "
         "[-v] [file(s)...]")
OPTSTRING = "bc:dehoqv"

#: Queues searched by ``-q``, in Postfix's order.
SEARCH_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "saved")

#: Postfix's names for envelope and extracted records (rec_type_name()).
LABELS: dict[RecordType, str] = {
    RecordType.SIZE: "message_size",
    RecordType.TIME: "message_arrival_time",
    RecordType.CTIME: "queue_file_create_time",
    RecordType.FULLNAME: "sender_fullname",
    RecordType.CONTENT_FILTER: "content_inspector",
    RecordType.SENDER: "sender",
    RecordType.ATTR: "named_attribute",
    RecordType.DSN_RET: "dsn_return_flags",
    RecordType.DSN_ENVID: "dsn_envelope_id",
    RecordType.DSN_ORCPT: "dsn_original_recipient",
    RecordType.DSN_NOTIFY: "dsn_notify_flags",
    RecordType.ORIG_RCPT: "original_recipient",
    RecordType.RCPT: "recipient",
    RecordType.DONE: "done_recipient",
    RecordType.WARN: "warning_message_time",
    RecordType.RETURN_RECEIPT: "return_receipt",
    RecordType.ERRORS_TO: "errors_to",
}


class _Options:
    def __init__(self) -> None:
        self.envelope = False
        self.header = False
        self.body = False
        self.offsets = False
        self.decimal = False
        self.queue = False
        self.verbose = False
        self.config_dir: str | None = None


def _asctime(data: bytes) -> bytes:
    """A seconds value shown as Postfix shows it: asctime(localtime())."""
    seconds = int(data.split()[0])
    return time.asctime(time.localtime(seconds)).encode()


class _Printer:
    """Writes one queue file's records to ``out`` in postcat's format."""

    def __init__(self, out: BinaryIO, opts: _Options, name: str) -> None:
        self.out = out
        self.opts = opts
        self.name = name.encode("utf-8", "surrogateescape")
        self.header_size = 0
        # Content line state: position of the next byte, line start, held CR.
        self.pos = 0
        self.at_start = True
        self.selected = False
        self.held_cr = False

    def banner(self, what: bytes) -> None:
        self.out.write(b"*** " + what + b" " + self.name + b" ***\n")

    def prefix(self, rec: Record) -> bytes:
        text = b""
        if self.opts.offsets:
            text += b"%9d " % rec.offset
        if self.opts.decimal:
            # Content lines show as Postfix's normal data record ('N', 78).
            number = 78 if rec.type is RecordType.CONTENT else rec.type.value[0]
            text += b"%3d " % number
        return text

    def record(self, rec: Record) -> None:
        t = rec.type
        opts = self.opts
        if t is RecordType.VERSION:
            if opts.envelope:
                self.banner(b"ENVELOPE RECORDS")
            return
        if t is RecordType.SIZE:
            self.header_size = int(rec.data.split()[5])
        if t is RecordType.MESSAGE:
            if opts.envelope:
                self.out.write(self.prefix(rec))
                self.banner(b"MESSAGE CONTENTS")
            return
        if t is RecordType.CONTENT:
            if opts.header or opts.body:
                self.content(rec)
            return
        if t is RecordType.EXTRACTED:
            self.end_content()
            if opts.envelope:
                self.out.write(self.prefix(rec))
                self.banner(b"HEADER EXTRACTED")
            return
        if t is RecordType.END:
            if opts.envelope:
                self.out.write(self.prefix(rec))
                self.banner(b"MESSAGE FILE END")
            return
        if not opts.envelope:
            return
        value = rec.data
        if t in (RecordType.TIME, RecordType.WARN):
            value = _asctime(value)
        elif t is RecordType.ATTR:
            # Several attributes share one record here; Postfix prints one
            # record per attribute, so each gets a line of its own.
            for name, attr in split_attributes(rec):
                self.out.write(self.prefix(rec) + b"named_attribute: " + f"{name}={attr}".encode() + b"\n")
            return
        self.out.write(self.prefix(rec) + LABELS[t].encode() + b": " + value + b"\n")

    def content(self, rec: Record) -> None:
        """Print content lines, streaming: no line is held in memory whole."""
        data = rec.data
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            piece = (b"\r" if self.held_cr else b"") + data[start:end]
            self.held_cr = False
            if piece.endswith(b"\r"):
                piece = piece[:-1]
                self.held_cr = newline < 0
            if self.at_start:
                line_pos = self.pos + start
                in_header = line_pos < self.header_size
                self.selected = self.opts.header if in_header else self.opts.body
                if self.selected:
                    label = b"regular_text: " if self.opts.verbose else b""
                    self.out.write(self.prefix(rec) + label)
            if self.selected:
                self.out.write(piece)
            if newline < 0:
                self.at_start = False
                break
            if self.selected:
                self.out.write(b"\n")
            self.at_start = True
            start = newline + 1
        self.pos += len(data)

    def end_content(self) -> None:
        if self.held_cr and self.selected:
            self.out.write(b"\r")
        self.held_cr = False
        if not self.at_start and self.selected:
            self.out.write(b"\n")
        self.at_start = True


def _show(stream: BinaryIO, name: str, opts: _Options, out: BinaryIO) -> bool:
    """Print one queue file; False (after a warning) when it fails validation."""
    printer = _Printer(out, opts, name)
    first = True
    try:
        for rec in iter_records(stream):
            first = False
            printer.record(rec)
    except CorruptQueueFile as exc:
        out.flush()
        if first:
            log.warning(f"{name}: input is not a valid queue file")
        else:
            log.warning(f"{name}: corrupt queue file: {exc}")
        return False
    return True


def _parse(argv: list[str]) -> tuple[_Options, list[str]]:
    opts = _Options()
    try:
        pairs, args = getopt.getopt(argv, OPTSTRING)
    except getopt.GetoptError as exc:
        log.warning(str(exc))
        log.fatal(USAGE)
    for flag, value in pairs:
        if flag == "-c":
            opts.config_dir = value
        elif flag == "-b":
            opts.body = True
        elif flag == "-d":
            opts.decimal = True
        elif flag == "-e":
            opts.envelope = True
        elif flag == "-h":
            opts.header = True
        elif flag == "-o":
            opts.offsets = True
        elif flag == "-q":
            opts.queue = True
        elif flag == "-v":
            opts.verbose = True
    if not (opts.envelope or opts.header or opts.body):
        opts.envelope = opts.header = opts.body = True
    return opts, args


def run(argv: list[str]) -> int:
    """Entry point: ``postcat [options] [files...]``."""
    log.setup("postcat", stderr=True)
    opts, names = _parse(argv)
    out = sys.stdout.buffer
    status = 0
    if not names:
        if opts.queue:
            log.fatal(USAGE)
        ok = _show(sys.stdin.buffer, "stdin", opts, out)
        out.flush()
        return 0 if ok else 1
    store: QueueStore | None = None
    if opts.queue:
        try:
            store = QueueStore.from_config(load(opts.config_dir))
        except ConfigError as exc:
            log.fatal(str(exc))
    for name in names:
        if store is not None:
            found = store.find(name, SEARCH_QUEUES)
            if found is None:
                out.flush()
                log.fatal(f"open queue file {name}: No such file or directory")
            path = found[1]
            shown = os.path.relpath(path, store.root)
        else:
            path = shown = name
        try:
            stream = open(path, "rb")
        except OSError as exc:
            out.flush()
            log.fatal(f"open {name}: {exc.strerror}")
        with stream:
            if not _show(stream, shown, opts, out):
                status = 1
    out.flush()
    return status
