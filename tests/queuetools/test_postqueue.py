"""postqueue -p / -j / mailq: Postfix 3.7's exact output, and the flush requests.

The expected texts are Postfix 3.7's own output for the same queue (captured
from a Postfix instance whose queue held these messages); test_oracle.py
compares with a live Postfix where one can run.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.cli import mailq, postqueue
from tests.queuetools.util import Message, call, make_config, place

ARRIVAL = 1795272548  # Sat Nov 21 14:49:08 2026 UTC
LONG_REASON = ("this is a rather long deferral reason text that keeps going and going "
               "well past eighty columns to see wrapping")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def messages(long_id: str | None = None) -> list[Message]:
    msgs = [
        Message("active", "62E4020C274", "alice@example.org",
                ["bob@example.com", "carol@example.net"], ARRIVAL, 270,
                defer=[("bob@example.com", "4.4.1", "test reason one"),
                       ("carol@example.net", "4.7.1", "other reason")]),
        Message("deferred", "695E220C285", "",
                ["x@long.example", "y@example.com", "z@example.net"], ARRIVAL, 263,
                defer=[("y@example.com", "4.4.1", "test reason one"),
                       ("x@long.example", "4.3.2", LONG_REASON)]),
        Message("hold", "649FF20C263", "dave@example.org", ["erin@example.com"],
                ARRIVAL - 20 * 86400, 273, mode_bits=stat.S_IXGRP),
    ]
    if long_id:
        msgs.append(Message("deferred", long_id, "frank@example.org", ["gina@example.com"],
                            ARRIVAL + 27, 265))
    return msgs


LONG_EXPECTED = """\
----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
62E4020C274*           270 Sat Nov 21 14:49:08 alice@example.org
                                                             (test reason one)
                                               bob@example.com
                                                                (other reason)
                                               carol@example.net

4jWw8b4b8wzJ9C4        265 Sat Nov 21 14:49:35 frank@example.org
                                               gina@example.com

695E220C285            263 Sat Nov 21 14:49:08 MAILER-DAEMON
                                                             (test reason one)
                                               y@example.com
(this is a rather long deferral reason text that keeps going and going well past eighty columns to see wrapping)
                                               x@long.example
                                                          (reason unavailable)
                                               z@example.net

649FF20C263!#          273 Sun Nov  1 14:49:08 dave@example.org
                                               erin@example.com

-- 1 Kbytes in 4 Requests.
"""

SHORT_EXPECTED = """\
-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
62E4020C274*     270 Sat Nov 21 14:49:08  alice@example.org
                                                             (test reason one)
                                         bob@example.com
                                                                (other reason)
                                         carol@example.net

695E220C285     263 Sat Nov 21 14:49:08  MAILER-DAEMON
                                                             (test reason one)
                                         y@example.com
(this is a rather long deferral reason text that keeps going and going well past eighty columns to see wrapping)
                                         x@long.example
                                                          (reason unavailable)
                                         z@example.net

649FF20C263!#     273 Sun Nov  1 14:49:08  dave@example.org
                                         erin@example.com

-- 0 Kbytes in 3 Requests.
"""


def test_listing_with_long_queue_ids(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path, "enable_long_queue_ids = yes\n")
    for msg in messages("4jWw8b4b8wzJ9C4"):
        place(store, msg)
    result = call(postqueue.run, ["-c", str(etc), "-p"])
    assert (result.status, result.err) == (0, "")
    assert result.out == LONG_EXPECTED


def test_listing_with_short_queue_ids(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    for msg in messages():
        place(store, msg)
    result = call(postqueue.run, ["-c", str(etc), "-p"])
    assert result.out == SHORT_EXPECTED
    assert call(mailq.run, ["-C", str(etc)]).out == SHORT_EXPECTED


def test_seed_002_layout_and_single_request(tmp_path: Path) -> None:
    """The listing shown in seed 002 (10-character ID, active, four recipients)."""
    etc, store = make_config(tmp_path)
    rcpts = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    place(store, Message("active", "91C6A19679", "someone@example.org", rcpts,
                         1785073180, 293782))
    out = call(postqueue.run, ["-c", str(etc), "-p"]).out
    lines = out.splitlines()
    assert lines[1] == "91C6A19679*  293782 Sun Jul 26 13:39:40  someone@example.org"
    assert lines[2:6] == [" " * 41 + r for r in rcpts]
    assert lines[-1] == "-- 286 Kbytes in 1 Request."


def test_done_recipients_and_stale_log_entries_are_not_shown(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    place(store, Message("deferred", "ABCDE1234", "s@example.org",
                         ["one@example.com", "two@example.com", "one@example.com"], ARRIVAL,
                         done=["two@example.com"],
                         defer=[("two@example.com", "4.0.0", "gone since"),
                                ("one@example.com", "4.0.0", "first"),
                                ("one@example.com", "4.0.0", "second")]))
    out = call(postqueue.run, ["-c", str(etc), "-p"]).out
    assert out.splitlines()[1:4] == [
        "ABCDE1234       300 Sat Nov 21 14:49:08  s@example.org",
        " " * 70 + "(second)",
        " " * 41 + "one@example.com",
    ]
    assert out.splitlines()[4] == ""


def test_empty_queue(tmp_path: Path) -> None:
    etc, _store = make_config(tmp_path)
    assert call(postqueue.run, ["-c", str(etc), "-p"]).out == "Mail queue is empty\n"
    assert call(postqueue.run, ["-c", str(etc), "-j"]).out == ""


def test_json_lines(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path, "enable_long_queue_ids = yes\n")
    for msg in messages("4jWw8b4b8wzJ9C4"):
        place(store, msg)
    out = call(postqueue.run, ["-c", str(etc), "-j"]).out
    lines = out.splitlines()
    # Postfix 3.7's own lines for the same queue, byte for byte.
    assert lines[0] == (
        '{"queue_name": "active", "queue_id": "62E4020C274", "arrival_time": 1795272548, '
        '"message_size": 270, "forced_expire": false, "sender": "alice@example.org", '
        '"recipients": [{"address": "bob@example.com", "delay_reason": "test reason one"}, '
        '{"address": "carol@example.net", "delay_reason": "other reason"}]}')
    assert lines[2] == (
        '{"queue_name": "deferred", "queue_id": "695E220C285", "arrival_time": 1795272548, '
        '"message_size": 263, "forced_expire": false, "sender": "MAILER-DAEMON", '
        '"recipients": [{"address": "y@example.com", "delay_reason": "test reason one"}, '
        '{"address": "x@long.example", "delay_reason": "' + LONG_REASON + '"}, '
        '{"address": "z@example.net"}]}')
    assert lines[3] == (
        '{"queue_name": "hold", "queue_id": "649FF20C263", "arrival_time": 1793544548, '
        '"message_size": 273, "forced_expire": true, "sender": "dave@example.org", '
        '"recipients": [{"address": "erin@example.com"}]}')
    assert [json.loads(line)["queue_id"] for line in lines] == [
        "62E4020C274", "4jWw8b4b8wzJ9C4", "695E220C285", "649FF20C263"]


def test_reason_with_control_characters_stays_on_one_line(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    place(store, Message("deferred", "ABCDE1234", "s@example.org", ["r@example.com"], ARRIVAL,
                         defer=[("r@example.com", "4.0.0", "line one\r\nline\ttwo")]))
    out = call(postqueue.run, ["-c", str(etc), "-p"]).out
    assert out.splitlines()[2] == " " * 58 + "(line one  line?two)"


def test_corrupt_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    place(store, Message("deferred", "ABCDE1234", "s@example.org", ["r@example.com"], ARRIVAL))
    bad = Path(store.path("deferred", "ABCDE9999"))
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"garbage")
    result = call(postqueue.run, ["-c", str(etc), "-p"])
    assert result.out.endswith("-- 0 Kbytes in 1 Request.\n")
    assert "postqueue: warning: deferred/ABCDE9999: corrupt queue file" in result.err


USAGE = ("postqueue: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | "
         "postqueue -p | postqueue -s site\n")


@pytest.mark.parametrize(("argv", "err"), [
    ([], USAGE),
    (["-p", "-f"], USAGE),
    (["-x"], "postqueue: invalid option -- 'x'\n" + USAGE),
    (["-s"], "postqueue: option requires an argument -- 's'\n" + USAGE),
    (["-p", "extra"], USAGE),
])
def test_usage_errors_exit_69(tmp_path: Path, argv: list[str], err: str) -> None:
    etc, _store = make_config(tmp_path)
    result = call(postqueue.run, ["-c", str(etc), *argv])
    assert (result.status, result.err) == (69, err)


def test_flush_when_the_mail_system_is_down(tmp_path: Path) -> None:
    etc, _store = make_config(tmp_path, "fast_flush_domains = example.com\n")
    down = "postqueue: fatal: Cannot flush mail queue - mail system is down\n"
    refused = "postqueue: warning: connect to public/flush: Connection refused\n"
    assert (call(postqueue.run, ["-c", str(etc), "-f"]).err) == down
    result = call(postqueue.run, ["-c", str(etc), "-i", "ABCDE1234"])
    assert (result.status, result.err) == (69, refused + down)
    # Subdomains qualify (parent_domain_matches_subdomains lists fast_flush_domains).
    assert call(postqueue.run, ["-c", str(etc), "-s", "sub.example.com"]).err == refused + down
    result = call(postqueue.run, ["-c", str(etc), "-s", "[1.2.3.4]"])
    assert (result.status, result.err) == (
        69, 'postqueue: fatal: Flush service is not configured for destination "[1.2.3.4]"\n')


def test_flush_reaches_a_running_master() -> None:
    import subprocess
    import sys

    from tests.master.util import ROOT, Instance, wait_for

    mh = Instance(master_cf="pickup unix n - y 60 1 pickup\n")
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    master = subprocess.Popen(
        [sys.executable, "-m", "mailhorn.cli.control", "-c", str(mh.etc), "start-fg"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=str(mh.base))
    try:
        assert wait_for(lambda: mh.master_pid() is not None)
        for argv in (["-f"], ["-i", "ABCDE1234"]):
            result = call(postqueue.run, ["-c", str(mh.etc), *argv])
            assert (result.status, result.err) == (0, ""), argv
        assert mh.ctl("stop").returncode == 0
        master.wait(timeout=60)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        mh.remove()
