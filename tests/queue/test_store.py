"""The on-disk queue: layout, queue IDs, durable writes, faults, moves, recovery."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import stat
import subprocess
import sys
import time
import tracemalloc
import hashlib
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.config.maincf import parse_main_cf
from mailhorn.iopool import IoPool, set_shared_pool
from mailhorn.queue.queuefile import CorruptQueueFile
from mailhorn.queue.store import (
    FREE_SPACE_TTL,
    QUEUE_NAMES,
    SAFE_ALPHABET,
    FsHooks,
    QueueError,
    QueueStore,
    QueueWriteError,
    hash_key,
    is_queue_id,
    make_queue_id,
)
from tests.helpers.loop import LoopProbe
from tests.queue.util import SAMPLE, make_store, write_sample


def queue_files(store: QueueStore, queue: str = "incoming") -> list[str]:
    return sorted(name for _dir, _sub, names in os.walk(os.path.join(store.root, queue)) for name in names)


# ---------------------------------------------------------------- layout


def test_setup_creates_private_directories(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    for name in QUEUE_NAMES:
        mode = os.stat(os.path.join(store.root, name)).st_mode
        assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700, name
    store.setup()  # idempotent


def test_world_writable_queue_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    os.chmod(os.path.join(store.root, "incoming"), 0o777)
    with pytest.raises(QueueError, match="world-writable"):
        store.setup()
    os.chmod(os.path.join(store.root, "incoming"), 0o700)
    os.chmod(store.root, 0o777)
    with pytest.raises(QueueError, match="world-writable"):
        QueueStore(store.root).setup()


def test_from_config_reads_queue_parameters(tmp_path: Path) -> None:
    text = (f"queue_directory = {tmp_path}/q\nhash_queue_names = deferred, hold\n"
            "hash_queue_depth = 2\nenable_long_queue_ids = yes\n")
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(text)
    store = QueueStore.from_config(Config(parse_main_cf(text, str(main_cf))))
    assert store.root == f"{tmp_path}/q" and store.long_ids and store.hash_depth == 2
    assert store.hash_names == frozenset({"deferred", "hold"})
    defaults = QueueStore.from_config(Config())
    assert defaults.hash_names == frozenset({"deferred", "defer"}) and defaults.hash_depth == 1
    assert not defaults.long_ids and defaults.root == "/var/spool/postfix"


def test_hashed_paths_follow_hash_queue_names(tmp_path: Path) -> None:
    store = make_store(tmp_path, hash_depth=2)
    assert store.path("deferred", "3F1A92C0D4") == f"{store.root}/deferred/3/F/3F1A92C0D4"
    assert store.path("incoming", "3F1A92C0D4") == f"{store.root}/incoming/3F1A92C0D4"
    # A long ID hashes on its microseconds in hex: the same directories as short IDs.
    long_id = make_queue_id(1700000000, 0x3F1A9, 12345, long=True)
    assert hash_key(long_id) == "3F1A9"
    assert store.path("defer", long_id) == f"{store.root}/defer/3/F/{long_id}"
    with pytest.raises(ValueError):
        store.path("deferred", "../../etc/passwd")
    with pytest.raises(ValueError):
        store.path("nosuchqueue", "3F1A92C0D4")


# ---------------------------------------------------------------- queue IDs


def _decode(text: str, base: int) -> int:
    value = 0
    for c in text:
        value = value * base + SAFE_ALPHABET.index(c)
    return value


def test_short_queue_id_format() -> None:
    assert make_queue_id(1700000000, 0x3F1A9, 0x2C0D4, long=False) == "3F1A92C0D4"
    assert make_queue_id(1, 5, 0xABC, long=False) == "00005ABC"
    assert is_queue_id("3F1A92C0D4") and not is_queue_id("3f1a92c0d4") and not is_queue_id("tmp.1.2")


def test_long_queue_id_format() -> None:
    # Postfix's documented example 4XsKQ25Zm5z9sHk decodes to a 2024 time.
    example = "4XsKQ25Zm5z9sHk"
    seconds, usec, inode = _decode(example[:6], 52), _decode(example[6:10], 52), _decode(example[11:], 51)
    assert make_queue_id(seconds, usec, inode, long=True) == example
    assert usec < 1_000_000 and 1.7e9 < seconds < 1.8e9
    qid = make_queue_id(1700000000, 999_999, 0, long=True)
    assert len(qid.split("z")[0]) == 10 and is_queue_id(qid)
    assert "z" not in make_queue_id(1, 2, 51 ** 5 - 1, long=True).split("z", 1)[1]
    assert not any(v in qid for v in "AEIOUaeiou")


def test_ids_come_from_the_file_inode(tmp_path: Path) -> None:
    for long in (False, True):
        store = make_store(tmp_path / str(long), long_ids=long)
        with store.writer() as w:
            inode = os.stat(w.temp_path).st_ino
            assert w.queue_id == make_queue_id(w.arrival[0], w.arrival[1], inode, long=long)
            w.sender("a@b")
            assert w.commit() == w.queue_id
        assert os.stat(store.path("incoming", w.queue_id)).st_ino == inode


def _burst(store: QueueStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        with store.writer(arrival=1700000000.0) as w:  # the same microsecond for all
            w.sender("a@b")
            w.recipient("c@d")
            ids.append(w.commit())
    return ids


def test_ids_unique_in_the_same_microsecond_across_threads(tmp_path: Path) -> None:
    store = make_store(tmp_path, hooks=FsHooks(fsync=lambda fd: None, dir_fsync=lambda fd: None))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _burst(store, 40), range(8)))
    ids = [qid for batch in results for qid in batch]
    assert len(ids) == len(set(ids)) == 320
    assert queue_files(store) == sorted(ids)


CHILD_BURST = """
import sys
from mailhorn.queue.store import FsHooks, QueueStore
store = QueueStore(sys.argv[1], hooks=FsHooks(fsync=lambda fd: None, dir_fsync=lambda fd: None))
for _ in range(int(sys.argv[2])):
    with store.writer(arrival=1700000000.0) as w:
        w.sender("a@b")
        print(w.commit(), flush=True)
"""


def test_ids_unique_across_processes(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_BURST, store.root, "50"],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids += out.split()
    assert len(ids) == len(set(ids)) == 200
    assert queue_files(store) == sorted(ids)


# ---------------------------------------------------------------- faults


def _enospc(fd: int, data: bytes) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_gives_452_and_leaves_no_file(tmp_path: Path) -> None:
    store = make_store(tmp_path, hooks=FsHooks(write=_enospc))
    with pytest.raises(QueueWriteError) as info:
        write_sample(store)
    assert info.value.disk_full
    assert str(info.value.reply) == "452 4.3.1 Insufficient system storage"
    assert queue_files(store) == []


def test_disk_full_during_streaming(tmp_path: Path) -> None:
    written = [0]

    def write(fd: int, data: bytes) -> int:
        written[0] += len(data)
        if written[0] > 1 << 20:
            raise OSError(errno.EDQUOT, "quota")
        return os.write(fd, data)

    store = make_store(tmp_path, hooks=FsHooks(write=write))
    w = store.writer()
    w.sender("a@b")
    with pytest.raises(QueueWriteError) as info:
        for _ in range(64):
            w.write(b"x" * 65536)
    assert info.value.reply.code == 452
    assert queue_files(store) == []
    with pytest.raises(QueueWriteError):
        w.commit()
    w.abort()


@pytest.mark.parametrize("hook", ["fsync", "dir_fsync", "pwrite"])
def test_other_errors_give_451_and_no_file(tmp_path: Path, hook: str) -> None:
    def fail(*args: object) -> int:
        raise OSError(errno.EIO, "I/O error")

    hooks = FsHooks()
    setattr(hooks, hook, fail)
    store = QueueStore(str(tmp_path / "queue"))
    store.setup()
    store.hooks = hooks
    # The size record is rewritten in place (pwrite) only once the start of
    # the file has left the buffer: a message over the flush size.
    content = SAMPLE + b"x" * 300_000 if hook == "pwrite" else SAMPLE
    with pytest.raises(QueueWriteError) as info:
        write_sample(store, content)
    assert not info.value.disk_full
    assert str(info.value.reply) == "451 4.3.0 Error: queue file write error"
    assert queue_files(store) == []


def test_abandoned_writer_removes_its_file(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.sender("a@b")
            w.write(SAMPLE)
            raise RuntimeError("client went away")
    assert queue_files(store) == []


# ---------------------------------------------------------------- state changes


def test_done_marks_survive_reopen(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    qid = write_sample(store, recipients=("a@x", "b@x", "c@x"))
    qf = store.read("incoming", qid)
    store.mark_done("incoming", qid, [qf.recipients[0].offset, qf.recipients[2].offset])
    again = QueueStore(store.root).read("incoming", qid)
    assert [r.done for r in again.recipients] == [True, False, True]
    assert [r.address for r in again.pending] == ["b@x"]
    store.mark_done("incoming", qid, [qf.recipients[0].offset])  # idempotent
    with pytest.raises(CorruptQueueFile):
        store.mark_done("incoming", qid, [qf.recipients[0].offset + 1])


def test_warning_time_updated_in_place(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    qid = write_sample(store)
    qf = store.read("incoming", qid)
    store.set_warn_time("incoming", qid, qf, 1800000000)
    assert store.read("incoming", qid).warn_time == 1800000000


def test_moves_between_queues(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    qid = write_sample(store)
    store.move(qid, "incoming", "active")
    assert store.find(qid) == ("active", store.path("active", qid))
    path = store.move(qid, "active", "deferred")
    assert path == f"{store.root}/deferred/{qid[0]}/{qid}"
    assert list(store.scan("deferred")) == [qid]
    store.move(qid, "deferred", "hold")
    store.move(qid, "hold", "corrupt")
    assert stat.S_IMODE(os.stat(store.path("corrupt", qid)).st_mode) == 0o400
    store.remove("corrupt", qid)
    assert store.find(qid) is None


def test_recover(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    active = write_sample(store)
    store.move(active, "incoming", "active")
    good = write_sample(store)
    bad = write_sample(store)
    with open(store.path("incoming", bad), "r+b") as f:
        f.truncate(200)
    stale = store.writer()
    stale.sender("a@b")
    stale_path = stale.temp_path
    os.utime(stale_path, (time.time() - 7200, time.time() - 7200))
    fresh = store.writer()
    linked = store.writer()
    linked.sender("a@b")

    class Stop(Exception):
        pass

    def stop_at(point: str) -> None:
        if point == "after-link":
            raise Stop(point)

    store.hooks.crash_point = stop_at
    with pytest.raises(Stop):
        linked.commit()  # the state of a crash between link and unlink
    store.hooks.crash_point = lambda point: None
    (Path(store.root) / "incoming" / "README").write_text("not mail")
    report = store.recover()
    assert report.requeued == (active,)
    assert set(report.removed_temp) == {os.path.basename(stale_path),
                                        os.path.basename(linked.temp_path)}
    assert [qid for qid, _why in report.corrupt] == [bad]
    assert report.unknown == ("incoming/README",)
    assert os.path.exists(fresh.temp_path)  # may belong to a live writer
    assert sorted(store.scan("incoming")) == sorted([active, good, linked.queue_id])
    assert store.read("incoming", linked.queue_id).sender == "a@b"
    assert list(store.scan("corrupt")) == [bad]
    for w in (stale, fresh, linked):
        w.abort()


# ---------------------------------------------------------------- group commit


def test_concurrent_commits_share_directory_fsyncs(tmp_path: Path) -> None:
    calls: list[int] = []
    store = make_store(tmp_path)
    group = store._group(os.path.join(store.root, "incoming"))
    count = 16

    def dir_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            # Hold the first fsync until every commit waits on the directory,
            # so the outcome does not depend on thread timing.
            deadline = time.monotonic() + 30
            while group.waiting < count and time.monotonic() < deadline:
                time.sleep(0.001)
        os.fsync(fd)

    store.hooks.dir_fsync = dir_fsync
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        ids = list(pool.map(lambda _: write_sample(store), range(count)))
    assert len(set(ids)) == count
    assert len(calls) == 2  # one that was running, one for all who queued behind it
    for qid in ids:
        store.read("incoming", qid)


def test_async_commits_share_fsyncs_and_do_not_block_the_loop(tmp_path: Path) -> None:
    calls: list[int] = []
    store = make_store(tmp_path)
    group = store._group(os.path.join(store.root, "incoming"))
    count = 12
    probe = LoopProbe()
    loop_ran: list[bool] = []

    def dir_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            deadline = time.monotonic() + 30
            while group.waiting < count and time.monotonic() < deadline:
                time.sleep(0.001)
            # Every commit now waits in a thread; the loop must still turn.
            loop_ran.append(probe.loop_answers())
        os.fsync(fd)

    store.hooks.dir_fsync = dir_fsync

    async def one(i: int) -> str:
        writer = await store.awriter()
        writer.sender("a@b")
        writer.recipient(f"r{i}@x")
        await writer.awrite(SAMPLE)
        await writer.awrite(b"z" * 300_000)
        return await writer.acommit()

    async def main() -> list[str]:
        set_shared_pool(IoPool(count + 2))  # every commit waits in a thread of its own
        return list(await probe.around(asyncio.gather(*(one(i) for i in range(count)))))

    ids = asyncio.run(main())
    assert loop_ran == [True]  # the loop kept running while commits waited
    assert len(set(ids)) == count and len(calls) == 2
    for qid in ids:
        qf = store.read("incoming", qid)
        assert qf.content_size == len(SAMPLE) + 300_000


# ---------------------------------------------------------------- big messages


def test_200_mb_message_streams_with_bounded_memory(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    block = bytes(range(256)) * 4096  # 1 MiB
    header = b"Subject: big\n\n"
    digest = hashlib.sha256(header)
    tracemalloc.start()
    try:
        with store.writer() as w:
            w.sender("a@b")
            w.recipient("c@d")
            w.write(header)
            for i in range(200):
                piece = block[:-1] + bytes([i])
                digest.update(piece)
                w.write(piece)
            qid = w.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        qf = store.read("incoming", qid)
        check = hashlib.sha256()
        for chunk in store.content("incoming", qid, qf):
            check.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert qf.content_size == len(header) + 200 * len(block)
    assert check.digest() == digest.digest()
    assert write_peak < 8 * 1024 * 1024, write_peak
    assert read_peak < 8 * 1024 * 1024, read_peak


def test_free_space_is_asked_of_the_file_system_at_most_once_a_second(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path)
    asked: list[str] = []
    real = os.statvfs

    def counting(path: str) -> os.statvfs_result:
        asked.append(path)
        return real(path)

    monkeypatch.setattr(os, "statvfs", counting)
    assert store.has_space(1000) and store.has_space(2000)
    assert asked == [store.root]
    free = store._free_space[1]
    assert not store.has_space(free)  # 1.5 times the size must fit: decided on the remembered answer
    store._free_space = (time.monotonic() - FREE_SPACE_TTL, free)
    assert store.has_space(1000)
    assert asked == [store.root, store.root]
