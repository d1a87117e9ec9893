"""Concurrency limits observed with real slow deliveries (pipe running sleep),
and crash safety: kill -9 during delivery, restart, every message delivered once or
at most duplicated while in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.qmgr.util import MASTER_CF, command_user, make_setup, run_incoming


def test_process_and_destination_limits(tmp_path: Path) -> None:
    user = command_user()
    table = tmp_path / "transport"
    table.write_text("example.com slow:\nexample.net slowd:\nexample.org slowr:\n")
    master = MASTER_CF + (
        f"slow  unix - n n - 2 pipe user={user} argv=/bin/sleep 0.3\n"
        f"slowd unix - n n - 0 pipe user={user} argv=/bin/sleep 0.3\n"
        f"slowr unix - n n - 0 pipe user={user} argv=/bin/sleep 0.3\n")
    s = make_setup(tmp_path, f"transport_maps = texthash:{table}\nrecipient_delimiter = +\n"
                             "slowd_destination_concurrency_limit = 2\n"
                             "slowr_destination_recipient_limit = 1\nslowr_destination_concurrency_limit = 1\n",
                   master_cf=master)
    for i in range(5):
        s.submit(f"r{i}@example.com")
        s.submit(f"r{i}@example.net")
    for i in range(3):
        s.submit(f"u+{i}@example.org")
        s.submit(f"v+{i}@example.org")
    qm = s.manager()

    run_incoming(qm)
    removed = [t for t in s.tagged() if t.endswith(": removed")]
    assert len(removed) == 16
    peak = qm.scheduler.peak
    # maxproc 2 for slow; destination limit 2 for slowd; one delivery per user for slowr, two users.
    assert peak["slow"] == 2
    assert qm.scheduler.peak_destination[("slowd", "example.net")] == 2
    assert qm.scheduler.peak_destination[("slowr", "u@example.org")] == 1
    assert qm.scheduler.peak_destination[("slowr", "v@example.org")] == 1
    assert peak["slowr"] == 2


RUNNER = """
import asyncio, sys
from mailhorn import log
from mailhorn.config.load import load
from mailhorn.queue.manager import run_qmgr
from mailhorn.runtime_build import QmgrWakeup, build_runtime, prepare_queue

config = load(sys.argv[1])
log.setup("qmgr", maillog_file=sys.argv[2], syslog_path=None)

async def main() -> None:
    runtime = build_runtime(config, wakeup=QmgrWakeup())
    prepare_queue(runtime.queue)
    await run_qmgr(config, runtime)

asyncio.run(main())
"""


def _start(s_conf: Path, maillog: Path) -> subprocess.Popen[bytes]:
    with open(maillog.with_suffix(".stderr"), "ab") as errors:
        return subprocess.Popen([sys.executable, "-c", RUNNER, str(s_conf), str(maillog)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=errors)


def _lines(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


def test_kill_9_during_delivery_then_restart(tmp_path: Path, shared_dir: Path) -> None:
    ledger = shared_dir / "ledger"
    inflight = 4
    master = MASTER_CF + (
        f"ledger unix - n n - {inflight} pipe user={command_user()} argv=/bin/sh -c "
        f"{{sleep 0.02; echo \"$$0\" >> {ledger}}} ${{queue_id}}\n")
    s = make_setup(tmp_path, "default_transport = ledger\n", master_cf=master)
    total = 80
    ids = {s.submit(f"r{i}@example.com") for i in range(total)}
    conf = tmp_path / "etc"
    first = _start(conf, tmp_path / "maillog")
    try:
        deadline = time.monotonic() + 60
        while len(_lines(ledger)) < total // 4 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        assert first.poll() is None, (tmp_path / "maillog.stderr").read_text()
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait()
    delivered_at_kill = len(set(_lines(ledger)))
    assert 0 < delivered_at_kill < total
    second = _start(conf, tmp_path / "maillog")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if set(_lines(ledger)) >= ids and not any(s.queue(q) for q in ("incoming", "active", "deferred")):
                break
            time.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    lines = _lines(ledger)
    assert set(lines) == ids, "every message is delivered"
    assert len(lines) - len(ids) <= inflight, "duplicates only for deliveries in flight at the kill"
    assert not any(s.queue(q) for q in ("incoming", "active", "deferred", "corrupt"))
