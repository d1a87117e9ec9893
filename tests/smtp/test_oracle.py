"""The transcripts of test_engine.py, sent to the real Postfix 3.7 smtpd.

Postfix's smtpd runs in its stand-alone mode (``-S``: the session on stdin
and stdout) with a configuration in a temporary directory, inside a private
mount namespace whose /dev has no syslog socket, so nothing outside the
temporary directory is touched.  Needs root (for the namespace) and the
postfix package.  Its replies must equal what the engine, driven by the
accept-everything test server, sends for the same bytes, after queue IDs
and Postfix's BDAT byte totals (which count its queue records) are masked.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import require
from tests.smtp.harness import HOST, replies, run
from tests.smtp.test_engine import TRANSCRIPTS

SMTPD = "/usr/lib/postfix/sbin/smtpd"
MAIN_CF = """\
queue_directory = {d}/q
data_directory = {d}/data
myhostname = {host}
mydomain = example.test
compatibility_level = 3.6
smtpd_banner = $myhostname ESMTP
local_recipient_maps =
alias_maps =
smtpd_reject_unlisted_recipient = no
smtpd_relay_restrictions = check_client_access static:OK, reject
smtpd_recipient_restrictions =
"""
RUNNER = """\
mount -t tmpfs none /dev || exit 97
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/random c 1 8
MAIL_CONFIG="$1/conf" exec timeout 10 {smtpd} -S -n smtp -t inet
"""


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace"
    if not os.path.exists(SMTPD) or shutil.which("unshare") is None:
        return "Postfix's smtpd or unshare is not installed"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


@pytest.fixture(scope="module")
def postfix_dir() -> Iterator[str]:
    reason = _usable()
    require(reason is None, reason or "")
    d = tempfile.mkdtemp(prefix="mailhorn-smtpd-oracle-")
    try:
        os.chmod(d, 0o755)
        for sub in ("conf", "q", "data", "q/maildrop"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, "conf/main.cf"), "w") as f:
            f.write(MAIN_CF.format(d=d, host=HOST))
        master = "/usr/share/postfix/master.cf.dist"
        if os.path.exists(master):
            shutil.copy(master, os.path.join(d, "conf/master.cf"))
        else:
            open(os.path.join(d, "conf/master.cf"), "w").close()
        shutil.chown(os.path.join(d, "q"), "postfix")
        shutil.chown(os.path.join(d, "data"), "postfix")
        shutil.chown(os.path.join(d, "q/maildrop"), "postfix", "postdrop")
        os.chmod(os.path.join(d, "q/maildrop"), 0o1730)
        with open(os.path.join(d, "run.sh"), "w") as f:
            f.write(RUNNER.format(smtpd=SMTPD))
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def real_smtpd(d: str, data: bytes) -> list[str]:
    proc = subprocess.run(
        ["unshare", "-m", "sh", os.path.join(d, "run.sh"), d],
        input=data, capture_output=True, timeout=30, check=False,
    )
    require(proc.returncode != 97, "cannot mount a private /dev (no namespace support)")
    lines = proc.stdout.decode("utf-8", "surrogateescape").split("\r\n")[:-1]
    assert lines and lines[0] == f"220 {HOST} ESMTP", proc.stderr
    return lines[1:]


def mask(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = re.sub(r"Ok: \d+ bytes queued as \w+", "Ok: N bytes queued as ID", line)
        out.append(re.sub(r"queued as \w+", "queued as ID", line))
    return out


@pytest.mark.oracle
def test_engine_matches_real_smtpd(postfix_dir: str) -> None:
    inputs = [t[0] for t in TRANSCRIPTS]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda data: real_smtpd(postfix_dir, data), inputs))
    for data, theirs in zip(inputs, results):
        ours = replies(run(data))
        assert mask(ours) == mask(theirs), data
