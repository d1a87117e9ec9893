"""postsuper: operations, queue-name arguments, stdin IDs and Postfix 3.7's messages.

Expected stderr texts are those of Postfix 3.7's postsuper for the same
commands on the same queue (see test_oracle.py for the live comparison).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from mailhorn.cli import postsuper
from mailhorn.queue.defer_log import log_path, read_log, record_bounce
from mailhorn.queue.listing import EXPIRE_BIT, REQUEUE_BIT
from mailhorn.queue.store import QueueStore
from tests.queuetools.util import Message, call, make_config, place, where

NOW = 1795272548.0


def queue(tmp_path: Path) -> tuple[Path, QueueStore]:
    """Five messages: incoming, active, two deferred (with defer logs), hold."""
    etc, store = make_config(tmp_path)
    for msg in [
        Message("incoming", "1A2B30C1", "a@example.org", ["x@example.com"], NOW),
        Message("active", "62E4020C274", "a@example.org", ["x@example.com"], NOW),
        Message("deferred", "695E220C285", "", ["y@example.com"], NOW,
                defer=[("y@example.com", "4.4.1", "test reason one")]),
        Message("deferred", "4A5B6C7D8E", "b@example.org", ["z@example.net"], NOW,
                defer=[("z@example.net", "4.7.1", "other reason")]),
        Message("hold", "649FF20C263", "c@example.org", ["w@example.com"], NOW),
    ]:
        place(store, msg)
    return etc, store


def test_seed_000_hold_release_delete_requeue_all(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    c = ["-c", str(etc)]
    result = call(postsuper.run, [*c, "-h", "ALL"])
    assert (result.status, result.err) == (0, "postsuper: Placed on hold: 4 messages\n")
    assert set(where(store).values()) == {"hold"}

    result = call(postsuper.run, [*c, "-H", "ALL"])
    assert result.err == "postsuper: Released from hold: 5 messages\n"
    assert set(where(store).values()) == {"deferred"}
    assert os.path.isfile(store.path("deferred", "1A2B30C1"))

    assert call(postsuper.run, [*c, "-h", "ALL", "deferred"]).err == (
        "postsuper: Placed on hold: 5 messages\n")
    assert call(postsuper.run, [*c, "-H", "62E4020C274"]).err == (
        "postsuper: 62E4020C274: released from hold\n"
        "postsuper: Released from hold: 1 message\n")
    result = call(postsuper.run, [*c, "-d", "ALL", "deferred"])
    assert result.err == "postsuper: Deleted: 1 message\n"
    assert "62E4020C274" not in where(store)

    result = call(postsuper.run, [*c, "-r", "ALL"])
    assert result.err == "postsuper: Requeued: 4 messages\n"
    assert set(where(store).values()) == {"incoming"}
    for queue_id in where(store):
        assert os.stat(store.path("incoming", queue_id)).st_mode & REQUEUE_BIT
    assert read_log(store, "defer", "695E220C285") == []


def test_seed_002_delete_one_message(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    record_bounce(store, "695E220C285", "y@example.com", "5.1.1", "unknown user")
    result = call(postsuper.run, ["-c", str(etc), "-d", "695E220C285"])
    assert (result.status, result.err) == (
        0, "postsuper: 695E220C285: removed\npostsuper: Deleted: 1 message\n")
    assert "695E220C285" not in where(store)
    assert not os.path.exists(log_path(store, "defer", "695E220C285"))
    assert not os.path.exists(log_path(store, "bounce", "695E220C285"))
    # Already gone, or a well-formed ID that is nowhere: nothing happens, silently.
    result = call(postsuper.run, ["-c", str(etc), "-d", "695E220C285", "-d", "BADID"])
    assert result.err == "postsuper: Deleted: 0 messages\n"


def test_operations_in_command_line_order_and_summary_in_postfix_order(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    result = call(postsuper.run, ["-c", str(etc), "-r", "4A5B6C7D8E", "-H", "649FF20C263",
                                  "-h", "695E220C285", "-e", "62E4020C274", "-d", "62E4020C274"])
    assert result.err == (
        "postsuper: 4A5B6C7D8E: requeued\n"
        "postsuper: 649FF20C263: released from hold\n"
        "postsuper: 695E220C285: placed on hold\n"
        "postsuper: 62E4020C274: expired\n"
        "postsuper: 62E4020C274: removed\n"
        "postsuper: Requeued: 1 message\n"
        "postsuper: Deleted: 1 message\n"
        "postsuper: Force-expired: 1 message\n"
        "postsuper: Placed on hold: 1 message\n"
        "postsuper: Released from hold: 1 message\n")
    assert where(store) == {"1A2B30C1": "incoming", "4A5B6C7D8E": "incoming",
                            "649FF20C263": "deferred", "695E220C285": "hold"}


def test_force_expire_and_release(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    c = ["-c", str(etc)]
    assert call(postsuper.run, [*c, "-e", "649FF20C263"]).err == (
        "postsuper: 649FF20C263: expired\npostsuper: Force-expired: 1 message\n")
    assert where(store)["649FF20C263"] == "hold"
    assert os.stat(store.path("hold", "649FF20C263")).st_mode & EXPIRE_BIT
    # Already marked: not counted again, but -f still releases it.
    assert call(postsuper.run, [*c, "-f", "649FF20C263"]).err == (
        "postsuper: 649FF20C263: released from hold\n"
        "postsuper: Force-expired: 0 messages\n"
        "postsuper: Released from hold: 1 message\n")
    assert os.stat(store.path("deferred", "649FF20C263")).st_mode & EXPIRE_BIT
    assert call(postsuper.run, [*c, "-f", "62E4020C274"]).err == (
        "postsuper: 62E4020C274: expired\n"
        "postsuper: Force-expired: 1 message\n"
        "postsuper: Released from hold: 0 messages\n")
    # Requeue clears the expiry.
    call(postsuper.run, [*c, "-r", "62E4020C274"])
    mode = os.stat(store.path("incoming", "62E4020C274")).st_mode
    assert not mode & EXPIRE_BIT and mode & REQUEUE_BIT


def test_ids_from_standard_input(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    result = call(postsuper.run, ["-c", str(etc), "-h", "-"],
                  stdin="4A5B6C7D8E\n 695E220C285  x\n649FF20C263\n")
    assert result.err == (
        "postsuper: 4A5B6C7D8E: placed on hold\n"
        "postsuper: warning: invalid mail queue id:  695E220C285  x\n"
        "postsuper: Placed on hold: 1 message\n")
    assert where(store)["4A5B6C7D8E"] == "hold"


def test_queue_names_restrict_operations(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    c = ["-c", str(etc)]
    assert call(postsuper.run, [*c, "-h", "ALL", "maildrop"]).err == (
        "postsuper: Placed on hold: 0 messages\n")
    assert call(postsuper.run, [*c, "-H", "ALL", "deferred"]).err == (
        "postsuper: Released from hold: 0 messages\n")
    assert call(postsuper.run, [*c, "-d", "62E4020C274", "deferred"]).err == (
        "postsuper: Deleted: 0 messages\n")
    assert call(postsuper.run, [*c, "-h", "ALL", "incoming", "active"]).err == (
        "postsuper: Placed on hold: 2 messages\n")
    assert call(postsuper.run, [*c, "-d", "ALL", "hold"]).err == "postsuper: Deleted: 3 messages\n"
    assert sorted(where(store)) == ["4A5B6C7D8E", "695E220C285"]


@pytest.mark.parametrize(("argv", "err"), [
    (["-h", "62E4020C274", "nosuch"], "postsuper: fatal: invalid directory name: nosuch\n"),
    (["-d"], "postsuper: option requires an argument -- 'd'\n"
             "postsuper: fatal: " + postsuper.USAGE + "\n"),
    (["-x"], "postsuper: invalid option -- 'x'\npostsuper: fatal: " + postsuper.USAGE + "\n"),
])
def test_usage_errors(tmp_path: Path, argv: list[str], err: str) -> None:
    etc, store = queue(tmp_path)
    result = call(postsuper.run, ["-c", str(etc), *argv])
    assert (result.status, result.err) == (1, err)
    assert where(store)["62E4020C274"] == "active"


def test_lower_case_all_is_a_queue_id(tmp_path: Path) -> None:
    etc, store = queue(tmp_path)
    assert call(postsuper.run, ["-c", str(etc), "-d", "all"]).err == (
        "postsuper: Deleted: 0 messages\n")
    assert len(where(store)) == 5


def test_structure_check_renames_moves_and_saves_corrupt_files(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    # Written by the queue writer: the name matches the inode.
    with store.writer() as writer:
        writer.sender("s@example.org")
        writer.recipient("r@example.com")
        writer.write(b"Subject: x\n\nbody\n")
        good = writer.commit()
    # A restored file: its name does not match its inode, and it has a defer log.
    restored = place(store, Message("deferred", "6AAAA1", "s@example.org", ["r@example.com"],
                                    NOW, defer=[("r@example.com", "4.4.1", "later")]))
    inode = os.stat(restored).st_ino
    # A file in the wrong hashed subdirectory, a bogus name, a damaged file.
    misplaced = place(store, Message("hold", "7BBBB1", "s@example.org", ["r@example.com"], NOW))
    os.makedirs(os.path.join(store.root, "deferred", "7"), exist_ok=True)
    wrong = os.path.join(store.root, "deferred", "7BBBB1")
    os.rename(misplaced, wrong)
    Path(store.root, "incoming", "junkfile").write_text("x")
    Path(store.root, "hold", "ABCDE12345").write_bytes(b"not a queue file")

    result = call(postsuper.run, ["-c", str(etc)])
    new_id = "6AAAA%X" % inode
    (moved_id,) = os.listdir(os.path.join(store.root, "deferred", "7"))
    assert moved_id == "7BBBB%X" % os.stat(store.path("deferred", moved_id)).st_ino
    assert result.err == (
        "postsuper: warning: bogus file name: incoming/junkfile\n"
        "postsuper: warning: saving corrupt file \"hold/ABCDE12345\" from queue \"hold\" "
        "to queue \"corrupt\": not a queue file (no version record) at offset 0\n"
        "postsuper: Renamed to match inode number: 2 messages\n"
        "postsuper: warning: QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS\n")
    found = where(store)
    assert found == {good: "incoming", new_id: "deferred", moved_id: "deferred",
                     "ABCDE12345": "corrupt"}
    assert os.path.isfile(store.path("deferred", moved_id))
    assert [r.reason for r in read_log(store, "defer", new_id)] == ["later"]
    assert stat.S_IMODE(os.stat(store.path("corrupt", "ABCDE12345")).st_mode) == 0o400
    # A second run finds nothing to do.
    assert call(postsuper.run, ["-c", str(etc), "-s"]).err == (
        "postsuper: warning: bogus file name: incoming/junkfile\n")


def test_purge_temporary_files(tmp_path: Path) -> None:
    etc, store = make_config(tmp_path)
    incoming = Path(store.root, "incoming")
    old = incoming / "tmp.1.2.3.0"
    old.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    linked = incoming / "tmp.1.2.4.0"
    linked.write_text("x")
    os.link(linked, incoming / "ABCDE1")
    young = incoming / "tmp.1.2.5.0"
    young.write_text("x")
    result = call(postsuper.run, ["-c", str(etc), "-p", "-v"])
    assert result.err == ("postsuper: removed file incoming/tmp.1.2.3.0\n"
                          "postsuper: removed file incoming/tmp.1.2.4.0\n")
    assert sorted(os.listdir(incoming)) == ["ABCDE1", "tmp.1.2.5.0"]


def test_log_lines_go_to_maillog_file(tmp_path: Path) -> None:
    etc, _store = queue(tmp_path)
    call(postsuper.run, ["-c", str(etc), "-d", "62E4020C274"])
    text = (tmp_path / "maillog").read_text()
    assert "mailhorn/postsuper[" in text and "]: 62E4020C274: removed\n" in text
    assert "]: Deleted: 1 message\n" in text
