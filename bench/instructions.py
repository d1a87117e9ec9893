"""Instructions per message: mailhorn's processes under callgrind, counted exactly.

Usage (as root, from the repository)::

    .venv/bin/python bench/instructions.py [--config accept|e2e] [--sessions 10]
        [--small 100] [--large 300] [--keep]

What it does:

1. Starts a mailhorn instance with one worker (``master_worker_count = 1``)
   under ``valgrind --tool=callgrind --trace-children=yes`` (``mailhorn
   start-fg``), configured as ``smtp_accept.py`` configures it (``accept``:
   every message is held) or as ``e2e_delivery.py`` does (``e2e``: virtual(8)
   delivery into a Maildir through the uid-5000 helper).
2. Sends ``--small`` messages with Postfix's ``smtp-source`` (after 20 to warm
   up), waits until they are held or delivered, stops the instance, and reads
   each process's instruction count from the file callgrind writes at its
   exit. Then does the same from scratch with ``--large`` messages.
3. Prints, for each process (in the order of their process IDs: master,
   spawner, worker, then the e2e configuration's delivery helper), the
   difference of the two counts divided by the difference of the message
   counts: the instructions each message costs, start-up left out.

Why: the rate benches move by ±15% from run to run on a shared machine;
callgrind counts user-space instructions, which do not depend on what else
the machine does, so a change to a hot path shows its effect to a fraction of
a percent. It counts no kernel work and no waiting, so it complements the
rate benches rather than replacing them. A run takes a minute or two.

Needs root, valgrind and the Debian package ``postfix`` (for smtp-source).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e_delivery  # noqa: E402  (the bench directory is not a package)
import smtp_accept  # noqa: E402
from postfix_instance import (  # noqa: E402
    MailhornServer, compile_package, free_port, mailhorn_main_cf, require_postfix, smtp_source, wait_listening,
)

WARM_UP = 20
_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)


class CallgrindServer(MailhornServer):
    """A mailhorn instance whose processes run under callgrind, in the foreground.

    Each process writes its count to ``callgrind/callgrind.PID`` beside the
    instance's directory when it exits.
    """

    proc: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.base.parent / "callgrind"

    def start(self) -> None:
        compile_package()
        self.out.mkdir(exist_ok=True)
        os.chmod(self.out, 0o777)  # the workers write their counts after giving up root
        argv = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                f"--callgrind-out-file={self.out}/callgrind.%p", *self.command("start-fg")]
        with open(self.base.parent / "valgrind.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(300)


def wait_count(count: int, arrived: Callable[[], int], timeout: float = 600.0) -> None:
    """Wait until ``arrived()`` reaches ``count`` (exits after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while arrived() < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {arrived()} of {count} messages arrived")
        time.sleep(0.2)


def one_run(config: str, sessions: int, messages: int, keep: bool) -> list[int]:
    """Instructions of each process (by process ID) for WARM_UP + messages messages."""
    base = Path(tempfile.mkdtemp(prefix="mailhorn-instr-"))
    os.chmod(base, 0o755)
    directory = base / "mailhorn"
    if config == "accept":
        main_cf, master_cf = smtp_accept.COMMON_MAIN_CF, smtp_accept.MAILHORN_MASTER_CF
    else:
        main_cf, master_cf = e2e_delivery.COMMON_MAIN_CF.format(dir=directory), e2e_delivery.MAILHORN_MASTER_CF
    server = CallgrindServer("mailhorn", directory, free_port(),
                             main_cf + mailhorn_main_cf(directory) + "master_worker_count = 1\n", master_cf)
    directory.mkdir()
    if config == "e2e":
        e2e_delivery.prepare(server)
    server.write_config()

    def arrived() -> int:
        if config == "accept":
            return len(server.held())
        return e2e_delivery.count_files(e2e_delivery.maildir_new(server))

    try:
        server.start()
        wait_listening(server.port, timeout=300)
        smtp_source(server.port, sessions, WARM_UP, 4096)
        wait_count(WARM_UP, arrived)
        smtp_source(server.port, sessions, messages, 4096)
        wait_count(WARM_UP + messages, arrived)
    finally:
        server.stop()
    counts: list[tuple[int, int]] = []
    for path in server.out.glob("callgrind.*"):
        text = path.read_text(errors="replace")
        if "python" not in text.partition("\ncmd:")[2].partition("\n")[0]:
            continue  # a helper program a process ran (ldconfig)
        found = _TOTAL.search(text)
        if found is not None:
            counts.append((int(path.name.rsplit(".", 1)[1]), int(found.group(1))))
    if keep:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return [n for _pid, n in sorted(counts)]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", choices=("accept", "e2e"), default="accept")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--small", type=int, default=100, help="messages of the first run (default 100)")
    parser.add_argument("--large", type=int, default=300, help="messages of the second run (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep both runs' directories")
    args = parser.parse_args()
    require_postfix()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    small = one_run(args.config, args.sessions, args.small, args.keep)
    large = one_run(args.config, args.sessions, args.large, args.keep)
    if len(small) != len(large):
        raise SystemExit(f"the runs had different processes: {len(small)} and {len(large)}")
    names = ["master", "spawner", "worker", "helper"]
    print(f"{args.config} configuration, {args.sessions} sessions, 4 KiB messages, one worker:")
    for index, (a, b) in enumerate(zip(small, large)):
        name = names[index] if index < len(names) else f"process {index + 1}"
        print(f"  {name:8} {(b - a) / (args.large - args.small) / 1e6:8.3f} M instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
