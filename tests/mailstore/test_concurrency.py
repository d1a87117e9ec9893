"""Several processes delivering and listing at once; kills in the middle of a delivery."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mailhorn.mailstore import quota
from mailhorn.mailstore.maildir import Mailbox, parse_name
from mailhorn.mailstore.writer import deliver
from tests.conftest import ROOT

WORKERS = 6
PER_WORKER = 25


def _message(worker: int, n: int) -> bytes:
    return f"From: w{worker}@example.org\nSubject: {worker}/{n}\n\n".encode() + b"body\n" * (n + 1)


def _worker(root: str, worker: int) -> None:
    for n in range(PER_WORKER):
        deliver(root, io.BytesIO(_message(worker, n)))
        if n % 5 == 0:
            Mailbox(root).sync()  # listing races with the other writers


def test_concurrent_deliveries_never_collide_or_lose_mail(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver(root, io.BytesIO(b"first\n"))
    quota.set_limits(root, quota.QuotaLimits(None, 100_000))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(root), w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    listed = Mailbox(root).sync()
    assert len(listed) == 1 + WORKERS * PER_WORKER
    uids = [m.uid for m in listed]
    assert uids == sorted(set(uids)) and uids[0] == 1 and uids[-1] == len(listed)
    expected = {_message(w, n) for w in range(WORKERS) for n in range(PER_WORKER)} | {b"first\n"}
    contents = {m.path.read_bytes() for m in listed}
    assert contents == expected
    assert list((root / "tmp").iterdir()) == []
    usage = quota.get_usage(root)
    assert usage is not None
    assert (usage.used_bytes, usage.used_count) == quota.count_usage(root)
    # Nothing was renumbered: the uidlist matches what a fresh reader lists.
    assert [(m.uid, m.base) for m in Mailbox(root).sync()] == [(m.uid, m.base) for m in listed]


_CHILD = """
import sys
from mailhorn.mailstore.writer import deliver
root = sys.argv[1]
if sys.argv[2] == "stdin":
    deliver(root, sys.stdin.buffer)
else:
    n = 0
    while True:
        deliver(root, [b"Subject: %d\\n\\n" % n, b"x" * 200000, b"\\nend\\n"])
        n += 1
"""


def _spawn(root: Path, mode: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(root), mode], stdin=subprocess.PIPE,
                            env=env, cwd=ROOT)


def _wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_kill_while_writing_tmp_leaves_new_empty(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    child = _spawn(root, "stdin")
    assert child.stdin is not None
    child.stdin.write(b"Subject: half\n\n" + b"y" * 100_000)
    child.stdin.flush()
    _wait_for(lambda: (root / "tmp").is_dir() and any(
        p.stat().st_size > 0 for p in (root / "tmp").iterdir()), "the tmp file")
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdin.close()
    assert list((root / "new").iterdir()) == []
    assert list((root / "cur").iterdir()) == []
    assert Mailbox(root).sync() == []


def test_kill_at_any_moment_leaves_only_complete_messages(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for round_ in range(3):
        child = _spawn(root, "loop")
        seen = len(list((root / "new").iterdir())) if (root / "new").is_dir() else 0
        _wait_for(lambda: (root / "new").is_dir() and len(list((root / "new").iterdir())) > seen + round_,
                  "deliveries")
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdin:
            child.stdin.close()
    for path in (root / "new").iterdir():
        data = path.read_bytes()
        info = parse_name(path.name)
        assert info.size == len(data), path.name
        assert data.startswith(b"Subject: ") and data.endswith(b"x" * 200000 + b"\nend\n")
    listed = Mailbox(root).sync()
    assert len(listed) == len(list((root / "new").iterdir()))
