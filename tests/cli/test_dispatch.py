"""``mailhorn COMMAND``, the prefixed console scripts and argv[0] dispatch reach the same code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_mailhorn

BIN = Path(sys.executable).parent


def write_conf(d: Path) -> Path:
    (d / "main.cf").write_text("myhostname = mail.example.test\n")
    (d / "master.cf").write_text("")
    return d


def test_global_c_option_sets_the_configuration_directory(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    result = run_mailhorn("-c", str(conf), "postconf", "-h", "myhostname", "config_directory")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mail.example.test\n{conf}\n"


def test_prefixed_console_script(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    script = BIN / "mailhorn-postconf"
    assert script.exists()
    result = subprocess.run([str(script), "-c", str(conf), "-h", "myhostname"], capture_output=True, text=True)
    assert result.stdout == "mail.example.test\n"


def test_argv0_dispatch_through_a_link(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    link = tmp_path / "postconf"
    os.symlink(BIN / "mailhorn", link)
    result = subprocess.run([str(link), "-c", str(conf), "-h", "mydomain"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "example.test\n"


def test_unknown_command_prints_usage_and_fails() -> None:
    result = run_mailhorn("no-such-command")
    assert result.returncode == 1
    assert result.stderr.startswith("usage: mailhorn [-c config_dir] command")
    assert "postconf" in result.stderr and "maildirmake" in result.stderr


def test_directory_commands_are_reachable(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    assert run_mailhorn("-c", str(conf), "domain", "add", "example.test").returncode == 0
    listed = run_mailhorn("-c", str(conf), "domain", "list")
    assert listed.stdout == "example.test\n"
    assert (conf / "directory.sqlite").exists()
