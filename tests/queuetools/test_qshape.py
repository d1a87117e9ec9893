"""qshape: Postfix's layout, buckets and options.

The expected tables are Postfix 3.7's qshape output for the same queue
(captured from a Postfix instance holding these messages; rows that tie in
count and name length, which Postfix prints in hash order, are in the order
mailhorn meets them). test_oracle.py compares with the live qshape.
"""

from __future__ import annotations

import time
from pathlib import Path

from mailhorn.cli import qshape
from mailhorn.queue.store import QueueStore
from tests.queuetools.util import Message, call, make_config, place


def queue(tmp_path: Path) -> tuple[Path, QueueStore]:
    etc, store = make_config(tmp_path)
    now = int(time.time())
    for msg in [
        Message("active", "62E4020C274", "alice@example.org",
                ["bob@example.com", "carol@example.net"], now - 180),
        Message("deferred", "695E220C285", "",
                ["x@long.example", "y@example.com", "z@example.net"], now - 180),
        Message("deferred", "4A5B6C7D8E", "frank@example.org", ["gina@example.com"], now - 180),
        Message("hold", "649FF20C263", "dave@example.org", ["erin@example.com"],
                now - 20 * 86400),
    ]:
        place(store, msg)
    return etc, store


HEAD = " " * 41 + "T  5 10 20 40 80 160 320 640 1280 1280+\n"


def test_default_queues_are_incoming_and_active(tmp_path: Path) -> None:
    etc, _store = queue(tmp_path)
    result = call(qshape.run, ["-c", str(etc)])
    assert (result.status, result.err) == (0, "")
    assert result.out == (
        HEAD
        + "                                  TOTAL  2  2  0  0  0  0   0   0   0    0     0\n"
        + "                            example.com  1  1  0  0  0  0   0   0   0    0     0\n"
        + "                            example.net  1  1  0  0  0  0   0   0   0    0     0\n")


def test_sender_domains_with_four_buckets(tmp_path: Path) -> None:
    etc, _store = queue(tmp_path)
    out = call(qshape.run, ["-c", str(etc), "-s", "-b", "4", "deferred", "hold", "active"]).out
    assert out == (
        "                                                                  T  5 10 20 20+\n"
        "                                                           TOTAL  4  3  0  0   1\n"
        "                                                     example.org  3  2  0  0   1\n"
        "                                                   MAILER-DAEMON  1  1  0  0   0\n")


def test_linear_buckets_wide_terminal_and_absolute_queue_path(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    out = call(qshape.run, ["-c", str(etc), "-l", "-t", "2", "-w", "100", "-b", "3", "hold",
                            str(Path(store.root, "deferred"))]).out
    pad = " " * 20
    assert out == (
        pad + "                                                                      T  2  4 4+\n"
        + pad + "                                                               TOTAL  5  0  4  1\n"
        + pad + "                                                         example.com  3  0  2  1\n"
        + pad + "                                                         example.net  1  0  1  0\n"
        + pad + "                                                        long.example  1  0  1  0\n")


def test_one_bucket(tmp_path: Path) -> None:
    etc, _store = queue(tmp_path)
    assert call(qshape.run, ["-c", str(etc), "-b", "1", "deferred"]).out == (
        "                                                                            T 0+\n"
        "                                                                     TOTAL  4  4\n"
        "                                                               example.com  2  2\n"
        "                                                               example.net  1  1\n"
        "                                                              long.example  1  1\n")


def test_many_buckets_keep_a_domain_field_of_18(tmp_path: Path) -> None:
    etc, _store = queue(tmp_path)
    out = call(qshape.run, ["-c", str(etc), "-w", "40", "-b", "12", "deferred"]).out
    assert out.splitlines() == [
        "                               T  5 10 20 40 80 160 320 640 1280 2560 5120 5120+",
        "                        TOTAL  4  4  0  0  0  0   0   0   0    0    0    0     0",
        "                  example.com  2  2  0  0  0  0   0   0   0    0    0    0     0",
        "                  example.net  1  1  0  0  0  0   0   0   0    0    0    0     0",
        "                 long.example  1  1  0  0  0  0   0   0   0    0    0    0     0",
    ]


def test_parent_domains_and_truncated_names(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    now = int(time.time())
    rcpts = [f"u@h{i}.sub.example.com" for i in range(5)]
    long_name = "a" * 50 + ".with.many.labels.example.org"
    rcpts += [f"v@{long_name}", "W@Example.NET."]
    place(store, Message("incoming", "1A2B3C4D", "s@example.org", rcpts, now - 60))
    out = call(qshape.run, ["-c", str(etc), "-p", "-b", "2"]).out.splitlines()
    width = 80 - 3 - 3 - 3
    assert out[0] == " " * width + "  T  5 5+"
    assert out[1] == "TOTAL".rjust(width) + "  7  7  0"
    # .sub.example.com has 5 subdomains and .example.com 1 (sub.example.com);
    # only the first reaches -m 5; TLDs are never rolled up.
    assert out[2] == ".sub.example.com".rjust(width) + "  5  5  0"
    rows = {line.split()[0]: line for line in out[3:]}
    assert ".example.com" not in rows
    assert "example.net" in rows
    assert "+" + long_name[-(width - 1):] in rows
    assert not any(name.startswith(".example.org") for name in rows)
    out = call(qshape.run, ["-c", str(etc), "-p", "-m", "1", "-b", "2"]).out.splitlines()
    assert ".example.org".rjust(width) + "  1  1  0" in out


def test_bad_option_dies_with_usage(tmp_path: Path) -> None:
    etc, _store = queue(tmp_path)
    result = call(qshape.run, ["-c", str(etc), "-x"])
    assert result.status == 255
    assert result.err.startswith("qshape: Unknown option: x\nUsage: qshape [ -s ] [ -p ]")
