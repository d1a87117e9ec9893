"""postsuper run by root on a queue a root master laid out works as mail_owner."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import require
from tests.queuetools.util import Message, make_config, place


def test_release_from_hold_as_root_makes_directories_the_workers_can_use(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "needs root (postsuper's privilege switch)")
    nobody = pwd.getpwnam("nobody")
    # pytest's own temporary tree is private to root; mail_owner must reach the queue.
    base = Path(tempfile.mkdtemp(prefix="mailhorn-postsuper-"))
    os.chmod(base, 0o755)
    request_cleanup = lambda: shutil.rmtree(base, ignore_errors=True)  # noqa: E731
    etc, store = make_config(base, "mail_owner = nobody\n")
    place(store, Message("hold", "4A1B2C3D4E", "a@example.org", ["b@example.net"], time.time() - 60))
    # The layout a root master makes: root owns the top, mail_owner the queues below.
    for dirpath, dirnames, filenames in os.walk(store.root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), nobody.pw_uid, nobody.pw_gid)
    os.chown(store.root, 0, 0)
    os.chmod(store.root, 0o755)
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "mailhorn", "-c", str(etc), "postsuper", "-H", "ALL"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Released from hold: 1 message" in result.stderr
    try:
        [path] = [p for p in Path(store.root, "deferred").rglob("4A1B2C3D4E")]
        for node in (path, path.parent):
            assert node.stat().st_uid == nobody.pw_uid, f"{node} is not owned by mail_owner"
    finally:
        request_cleanup()
