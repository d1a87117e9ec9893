"""The queue tools against Postfix's own on an equivalent queue.

A throwaway Postfix instance (temporary queue directory, ``postfix -c DIR
start``) receives messages through its own sendmail; transport_maps send
them to ``retry:`` transports with per-domain reasons and a header check
puts one on hold. Once every message is deferred or held, the instance is
stopped, one message is moved into ``active`` and one is force-expired
with Postfix's postsuper. The same queue is then written for mailhorn, each
message under the same queue ID, with the same arrival time, size, sender,
recipients (queue-file order) and defer-log entries (log order), and both
systems' ``postqueue -p``, ``postqueue -j``, ``qshape`` and ``postsuper``
must print the same bytes.

Needs root and Postfix installed (the test setup installs it).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailhorn.cli import postqueue, postsuper, qshape
from mailhorn.queue.store import QueueStore
from tests.conftest import require
from tests.queuetools.util import Message, call, make_config, place, where

LONG_REASON = ("this deferral reason is long enough to run past the right margin of the "
               "listing, so it is printed without padding")
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
"""


def _tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    require(os.access(path, os.X_OK), f"Postfix's {name} is not installed")
    return path


@dataclass
class Oracle:
    """Both queues: Postfix's (config dir ``pf_etc``) and mailhorn's (``mh_etc``)."""

    pf_etc: str
    pf_spool: str
    mh_etc: str
    store: QueueStore
    ids: dict[str, str]

    def postfix(self, tool: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([_tool(tool), "-c", self.pf_etc, *args], input=stdin,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "TZ": "UTC"})


def _settled(pf: Oracle) -> list[dict[str, object]] | None:
    import json

    out = pf.postfix("postqueue", "-j").stdout
    entries = [json.loads(line) for line in out.splitlines()]
    if len(entries) != 4:
        return None
    for entry in entries:
        if entry["queue_name"] not in ("deferred", "hold"):
            return None
        rcpts = entry["recipients"]
        assert isinstance(rcpts, list)
        if entry["queue_name"] == "deferred" and not all("delay_reason" in r for r in rcpts):
            return None
    return entries


def _postfix_defer_log(spool: str, queue_id: str) -> list[tuple[str, str, str]]:
    """(recipient, status, reason) from Postfix's defer/ID, in file order."""
    found = [os.path.join(d, queue_id) for d, _s, files in os.walk(os.path.join(spool, "defer"))
             if queue_id in files]
    if not found:
        return []
    entries: list[tuple[str, str, str]] = []
    for block in Path(found[0]).read_text().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "recipient" in fields:
            entries.append((fields["recipient"], fields["status"], fields["reason"]))
    return entries


def _queue_file_envelope(pf: Oracle, queue_id: str) -> tuple[int, str, list[str]]:
    """(arrival microseconds, sender, recipients in file order) from Postfix's postcat."""
    out = pf.postfix("postcat", "-e", "-q", queue_id).stdout
    sender = ""
    rcpts: list[str] = []
    for line in out.splitlines():
        if line.startswith("sender: "):
            sender = line[len("sender: "):]
        elif line.startswith("recipient: "):
            rcpts.append(line[len("recipient: "):])
    return 0, sender, rcpts


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    require(os.geteuid() == 0, "a Postfix instance needs root")
    for name in ("postfix", "sendmail", "postqueue", "postsuper", "postcat", "qshape"):
        _tool(name)
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        require(False, "no postfix user")
    top = tempfile.mkdtemp(prefix="mailhorn-oracle-")
    os.chmod(top, 0o755)
    etc, spool, data = (os.path.join(top, d) for d in ("etc", "spool", "data"))
    for d in (etc, spool, data):
        os.mkdir(d, 0o755)
    shutil.chown(data, "postfix")
    Path(etc, "master.cf").write_text(MASTER_CF)
    Path(etc, "header_checks").write_text("/^Subject: hold/ HOLD\n")
    Path(etc, "transport").write_text(
        "example.net retry:4.7.1 other reason\n"
        f"long.example retry:4.3.2 {LONG_REASON}\n")
    Path(etc, "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {spool}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        "myhostname = oracle.example\nmydestination =\n"
        "default_transport = retry:4.4.1 test reason one\n"
        f"transport_maps = texthash:{etc}/transport\n"
        f"header_checks = regexp:{etc}/header_checks\n")
    mh_dir = os.path.join(top, "mailhorn")
    os.mkdir(mh_dir)
    mh_etc, store = make_config(Path(mh_dir))
    pf = Oracle(etc, spool, str(mh_etc), store, {})
    try:
        subprocess.run([_tool("postfix"), "-c", etc, "start"], check=True, timeout=60,
                       capture_output=True)
        for sender, rcpts, subject in [
            ("alice@example.org", ["bob@example.com", "carol@example.net"], "one"),
            ("<>", ["x@long.example", "y@example.com", "z@example.net"], "two"),
            ("dave@example.org", ["erin@example.com"], "hold me"),
            ("frank@example.org", ["gina@example.com", "hank@example.com"], "four"),
        ]:
            subprocess.run([_tool("sendmail"), "-C", etc, "-f", sender, *rcpts],
                           input=f"Subject: {subject}\n\nbody of {subject}\n", text=True,
                           check=True, timeout=60)
        entries = None
        deadline = time.monotonic() + 90
        while entries is None and time.monotonic() < deadline:
            time.sleep(0.2)
            entries = _settled(pf)
        assert entries is not None, pf.postfix("postqueue", "-j").stdout
    finally:
        subprocess.run([_tool("postfix"), "-c", etc, "stop"], timeout=60, capture_output=True)
    try:
        by_subject: dict[str, dict[str, object]] = {}
        for entry in entries:
            out = pf.postfix("postcat", "-h", "-q", str(entry["queue_id"])).stdout
            subject = next(line[9:] for line in out.splitlines() if line.startswith("Subject: "))
            by_subject[subject] = entry
        pf.ids = {s: str(e["queue_id"]) for s, e in by_subject.items()}
        # Into active (the queue manager had it open), and force-expire the held one.
        one = pf.ids["one"]
        src = os.path.join(spool, "deferred", one[0], one)
        os.rename(src, os.path.join(spool, "active", one))
        by_subject["one"]["queue_name"] = "active"
        pf.postfix("postsuper", "-e", pf.ids["hold me"])
        for entry in by_subject.values():
            queue_id = str(entry["queue_id"])
            _usec, sender, rcpts = _queue_file_envelope(pf, queue_id)
            mode = 0
            for d, _s, files in os.walk(spool):
                if queue_id in files and "defer" not in d.split(os.sep):
                    mode = os.stat(os.path.join(d, queue_id)).st_mode
            place(store, Message(str(entry["queue_name"]), queue_id, sender, rcpts,
                                 float(str(entry["arrival_time"])),
                                 int(str(entry["message_size"])),
                                 defer=_postfix_defer_log(spool, queue_id),
                                 mode_bits=mode & stat.S_IXGRP))
        yield pf
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_postqueue_p_is_postfix_s(oracle: Oracle) -> None:
    expected = oracle.postfix("postqueue", "-p")
    assert expected.returncode == 0
    got = call(postqueue.run, ["-c", oracle.mh_etc, "-p"])
    # Postfix lists a hashed queue in directory order; the blocks must match as a set
    # and the whole text must match once both are put in the same order.
    assert _blocks(got.out) == _blocks(expected.stdout)
    assert _sorted_listing(got.out) == _sorted_listing(expected.stdout)
    assert "*" in expected.stdout and "!#" in expected.stdout and "(other reason)" in got.out


def test_postqueue_j_is_postfix_s(oracle: Oracle) -> None:
    expected = oracle.postfix("postqueue", "-j").stdout.splitlines()
    got = call(postqueue.run, ["-c", oracle.mh_etc, "-j"]).out.splitlines()
    assert sorted(got) == sorted(expected)
    assert len(got) == 4


@pytest.mark.parametrize("args", [["deferred", "active"], ["-s", "deferred", "active"],
                                  ["-b", "3", "-l", "deferred", "active", "incoming"]])
def test_qshape_is_postfix_s(oracle: Oracle, args: list[str]) -> None:
    expected = oracle.postfix("qshape", *args)
    got = call(qshape.run, ["-c", oracle.mh_etc, *args])
    assert (got.status, got.out) == (expected.returncode, expected.stdout)


def test_postsuper_is_postfix_s(oracle: Oracle) -> None:
    ids = oracle.ids
    steps = [
        ["-h", ids["two"]],
        ["-h", "ALL", "deferred"],
        ["-H", ids["two"], "-f", ids["hold me"]],
        ["-H", "ALL"],
        ["-d", "-"],
        ["-d", ids["one"], "-d", "ALL", "deferred"],
        ["-r", "ALL"],
    ]
    for argv in steps:
        stdin = f"{ids['four']}\nnot an id\n" if "-" in argv else ""
        expected = oracle.postfix("postsuper", *argv, stdin=stdin)
        got = call(postsuper.run, ["-c", oracle.mh_etc, *argv], stdin=stdin)
        assert (got.status, got.err) == (expected.returncode, expected.stderr), argv
        assert where(oracle.store) == _postfix_where(oracle.pf_spool), argv


def _postfix_where(spool: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for queue in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
        for _d, _s, files in os.walk(os.path.join(spool, queue)):
            for name in files:
                # A requeued message waits in maildrop for Postfix's pickup and in
                # incoming for mailhorn's queue manager (see postsuper's docstring).
                found[name] = "incoming" if queue == "maildrop" else queue
    return found


def _blocks(listing: str) -> list[str]:
    return sorted(listing.split("\n\n"))


def _sorted_listing(listing: str) -> str:
    head, _, rest = listing.partition("\n")
    body, _, footer = rest.rpartition("\n\n")
    return head + "\n" + "\n\n".join(sorted(body.split("\n\n"))) + "\n\n" + footer
