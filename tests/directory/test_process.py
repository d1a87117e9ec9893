"""The commands as a separate process: ``MAIL_CONFIG``, a password on standard
input, messages on standard error and the exit status."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from mailhorn.auth import passwords


def run(confdir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAIL_CONFIG=str(confdir))
    return subprocess.run([sys.executable, "-m", "mailhorn.cli.directory", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


def test_process(confdir: Path) -> None:
    db = confdir / "dir.sqlite"
    (confdir / "main.cf").write_text("directory_database = sqlite:dir.sqlite\n")
    assert run(confdir, "domain", "add", "example.com").returncode == 0
    done = run(confdir, "user", "add", "alice@example.com", stdin="piped secret\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    stored = sqlite3.connect(db).execute("SELECT password FROM users").fetchone()[0]
    assert passwords.verify("piped secret", stored)
    listed = run(confdir, "user", "list")
    assert (listed.returncode, listed.stdout) == (0, "alice@example.com\t10485760\n")
    dup = run(confdir, "domain", "add", "example.com")
    assert (dup.returncode, dup.stdout, dup.stderr) == (
        1, "", "mailhorn-domain: fatal: domain example.com already exists\n")
    # -c beats MAIL_CONFIG.
    other = confdir.parent / "other"
    other.mkdir()
    (other / "main.cf").write_text("")
    assert run(confdir, "domain", "-c", str(other), "list").stdout == ""
    assert (other / "directory.sqlite").exists()
    bad = run(confdir, "nothing")
    assert bad.returncode == 1 and bad.stderr.startswith("usage:")


def test_missing_main_cf(tmp_path: Path) -> None:
    done = run(tmp_path / "nowhere", "domain", "list")
    assert done.returncode == 1
    assert done.stderr == f"mailhorn-domain: fatal: open {tmp_path}/nowhere/main.cf: No such file or directory\n"
    # With --database, main.cf is not needed.
    done = run(tmp_path / "nowhere", "domain", "list", "--database", f"sqlite://{tmp_path}/d.sqlite")
    assert (done.returncode, done.stderr) == (0, "")


def test_unreachable_server(tmp_path: Path) -> None:
    done = run(tmp_path, "domain", "list", "--database", "mysql://u:pw@127.0.0.1:1/vmail")
    assert done.returncode == 1
    assert done.stderr.startswith("mailhorn-domain: fatal: cannot open mysql://u:***@127.0.0.1:1/vmail: ")
    assert "pw" not in done.stderr.replace("***", "")
    done = run(tmp_path, "domain", "list", "--database", f"sqlite://{tmp_path}/no/such/dir/x.db")
    assert done.returncode == 1
    assert done.stderr == (f"mailhorn-domain: fatal: cannot open sqlite://{tmp_path}/no/such/dir/x.db: "
                           "unable to open database file\n")


def _read_until(fd: int, marker: bytes, limit: float = 60.0) -> bytes:
    """Read from the terminal until ``marker`` shows (or the child ends)."""
    import select

    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], limit)
        assert ready, f"no {marker!r} on the terminal; got {seen!r}"
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    return seen


def _on_terminal(confdir: Path, answers: list[bytes], *args: str) -> tuple[int, bytes]:
    """Run the command on a pseudo-terminal, answering each password prompt in turn."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling tty
        os.environ["MAIL_CONFIG"] = str(confdir)
        os.execv(sys.executable, [sys.executable, "-m", "mailhorn.cli.directory", *args])
    transcript = b""
    try:
        for answer in answers:
            transcript += _read_until(fd, b"password: ")
            os.write(fd, answer + b"\n")
        transcript += _read_until(fd, b"\x00never")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), transcript


def test_password_prompt_on_terminal(confdir: Path) -> None:
    db = confdir / "dir.sqlite"
    (confdir / "main.cf").write_text("directory_database = sqlite:dir.sqlite\n")
    assert run(confdir, "domain", "add", "example.com").returncode == 0
    status, transcript = _on_terminal(confdir, [b"typed secret", b"typed secret"], "user", "add", "a@example.com")
    assert status == 0, transcript
    assert b"Enter new password: " in transcript and b"Retype new password: " in transcript
    assert b"typed secret" not in transcript  # not echoed
    stored = sqlite3.connect(db).execute("SELECT password FROM users").fetchone()[0]
    assert passwords.verify("typed secret", stored)
    status, transcript = _on_terminal(confdir, [b"one", b"two"], "user", "passwd", "a@example.com")
    assert status == 1
    assert b"mailhorn-user: fatal: passwords don't match" in transcript
    assert passwords.verify("typed secret", sqlite3.connect(db).execute("SELECT password FROM users").fetchone()[0])
