"""``mailhorn postconf`` on broken configurations: exit 1, file and line named."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_mailhorn, run_postfix


def _conf(tmp_path: Path, main: str, master: str = "") -> str:
    (tmp_path / "main.cf").write_text(main)
    (tmp_path / "master.cf").write_text(master)
    return str(tmp_path)


def test_line_without_equals(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "myhostname = a\n# c\nbogus line\n")
    ours = run_mailhorn("postconf", "-c", conf, "-n")
    theirs = run_postfix("postconf", "-c", conf, "-n")
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == f"postconf: fatal: {conf}/main.cf, line 3: missing '=' after attribute name: \"bogus line\"\n"
    assert ours.stdout == theirs.stdout == ""


def test_truncated_macro_names_file_and_line(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "myhostname = a\nmydestination = ${myhostname\n")
    for view in (["-n"], ["-x", "mydestination"]):
        ours = run_mailhorn("postconf", "-c", conf, *view)
        theirs = run_postfix("postconf", "-c", conf, *view)
        assert ours.returncode == theirs.returncode == 1
        assert f"{conf}/main.cf, line 2:" in ours.stderr
        assert "truncated macro reference" in ours.stderr


def test_master_cf_bad_field_count(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "", "# c\n\nsmtp inet n - n\n")
    ours = run_mailhorn("postconf", "-c", conf, "-M")
    theirs = run_postfix("postconf", "-c", conf, "-M")
    assert ours.returncode == theirs.returncode == 1
    assert f"{conf}/master.cf, line 3: bad field count" in ours.stderr


def test_master_cf_bad_type(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "", "smtp\n  foo n - n - - smtpd\n")
    ours = run_mailhorn("postconf", "-c", conf, "-M")
    assert ours.returncode == run_postfix("postconf", "-c", conf, "-M").returncode == 1
    assert f"{conf}/master.cf, line 1: invalid type field" in ours.stderr


def test_edit_without_equals(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "a = 1\n")
    ours = run_mailhorn("postconf", "-c", conf, "-e", "bad")
    theirs = run_postfix("postconf", "-c", conf, "-e", "bad")
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr.endswith(theirs.stderr.split(": ", 1)[1])
    assert (tmp_path / "main.cf").read_text() == "a = 1\n"


def test_unknown_names_warn(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "foo = 1\n")
    ours = run_mailhorn("postconf", "-c", conf, "-h", "nosuch", "config_directory")
    theirs = run_postfix("postconf", "-c", conf, "-h", "nosuch", "config_directory")
    assert ours.stdout == theirs.stdout
    assert ours.returncode == theirs.returncode == 0
    assert "postconf: warning: nosuch: unknown parameter" in ours.stderr.splitlines()
