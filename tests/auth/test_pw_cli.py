"""``mailhorn pw``: options, prompts and messages as doveadm pw has them."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import sys

import pytest

from mailhorn.auth.passwords import verify
from mailhorn.cli.pw import run
from tests.auth.util import run_pw


def test_list_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-l"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(" \n") and out.count("\n") == 1
    assert "ARGON2ID" in out.split() and "SHA512-CRYPT" in out.split()


def test_default_scheme_is_argon2id(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-p", "secret"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") and out.endswith("\n")
    assert verify("secret", out.strip())


def test_scheme_rounds_user_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-s", "sha512-crypt", "-r", "6000", "-p", "secret"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("{SHA512-CRYPT}$6$rounds=6000$")
    assert run(["-s", "DIGEST-MD5", "-u", "jane.roe@example.com", "-p", "secret", "-V"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("{DIGEST-MD5}") and out.endswith(" (verified)\n")
    assert verify("secret", out.split()[0], user="jane.roe@example.com")


def test_test_option(capsys: pytest.CaptureFixture[str]) -> None:
    stored = "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols="
    assert run(["-t", stored, "-p", "secret"]) == 0
    assert capsys.readouterr().out == f"{stored} (verified)\n"
    assert run(["-t", stored, "-p", "wrong"]) == 75
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "Fatal: reverse password verification check failed: Password mismatch\n"


def test_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-s", "FOO", "-p", "x"]) == 75
    assert capsys.readouterr().err == "Fatal: Unknown scheme: FOO\n"
    assert run(["-x"]) == 64
    assert capsys.readouterr().err.startswith("pw: invalid option -- 'x'\n")
    assert run(["-p", "x", "extra"]) == 64
    assert capsys.readouterr().err.startswith("Error: Extraneous arguments found: extra\n")
    assert run(["-r", "many", "-p", "x"]) == 64
    assert run(["-s", "BLF-CRYPT", "-r", "40", "-p", "x"]) == 75
    assert run(["-s", "DIGEST-MD5", "-p", "x"]) == 75


def test_password_never_printed_on_error(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "Tr0ub4dor&3-unique"
    for args in (["-t", "{SSHA}abcd"], ["-t", "{FOO}a"], ["-t", "nope"], ["-s", "ARGON2I", "-r", "1"]):
        run([*args, "-p", secret])
        captured = capsys.readouterr()
        assert secret not in captured.out + captured.err


def test_reads_one_line_from_stdin_when_not_a_tty(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\nsecond line\n"))
    assert run(["-s", "PLAIN"]) == 0
    assert capsys.readouterr().out == "{PLAIN}from stdin\n"


def test_stdin_in_a_child_process() -> None:
    done = run_pw("-s", "SHA256", stdin="secret\r\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=\n"
    done = run_pw("-t", "{PLAIN}secret", stdin="secret\n")
    assert done.stdout == "{PLAIN}secret (verified)\n"


def _converse(args: list[str], answers: list[tuple[bytes, bytes]]) -> tuple[bytes, int]:
    """Run ``mailhorn pw`` on a pseudo-terminal, answering each prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the terminal is its controlling tty
        os.execv(sys.executable, [sys.executable, "-m", "mailhorn.cli.pw", *args])
    seen = b""
    pending = list(answers)
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"no output from mailhorn pw; so far {seen!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if pending and seen.endswith(pending[0][0]):
                os.write(fd, pending.pop(0)[1])
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return seen, os.waitstatus_to_exitcode(status)


def test_prompts_twice_on_a_terminal() -> None:
    seen, code = _converse(["-s", "PLAIN-MD5"], [(b"Enter new password: ", b"secret\n"),
                                                 (b"Retype new password: ", b"secret\n")])
    assert code == 0, seen
    assert b"secret" not in seen.replace(b"{PLAIN-MD5}", b"")  # no echo
    assert seen.rstrip().endswith(b"{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69")


def test_prompts_again_until_both_match() -> None:
    seen, code = _converse(["-s", "PLAIN"], [(b"Enter new password: ", b"one\n"),
                                             (b"Retype new password: ", b"two\n"),
                                             (b"Enter new password: ", b"three\n"),
                                             (b"Retype new password: ", b"three\n")])
    assert code == 0, seen
    assert b"Error: Passwords don't match!" in seen
    assert seen.rstrip().endswith(b"{PLAIN}three")


def test_test_option_prompts_once() -> None:
    seen, code = _converse(["-t", "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69"],
                           [(b"Enter password to verify: ", b"secret\n")])
    assert code == 0, seen
    assert b"{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69 (verified)" in seen
