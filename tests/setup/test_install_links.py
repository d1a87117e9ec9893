"""``mailhorn install-links --prefix TMP``: links that dispatch on argv[0], and what they refuse to replace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mailhorn.setup.systemd import mailhorn_script
from tests.conftest import require

NAMES = ("usr/sbin/sendmail", "usr/bin/mailq", "usr/bin/newaliases")


def install_links(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailhorn.cli.install_links", *args],
                          capture_output=True, text=True, timeout=60)


def script() -> str:
    path = mailhorn_script()
    require(path is not None, "the mailhorn console script is not installed")
    assert path is not None
    return path


def test_links_are_made_and_dispatch_on_their_name(tmp_path: Path) -> None:
    target = script()
    root = tmp_path / "root"
    done = install_links("--prefix", str(root))
    assert done.returncode == 0, done.stderr
    for name in NAMES:
        link = root / name
        assert link.is_symlink()
        assert os.path.realpath(link) == os.path.realpath(target)
    assert "created" in done.stdout
    # Again: nothing to do.
    again = install_links("--prefix", str(root))
    assert again.returncode == 0
    assert again.stdout.count("already installed") == 3

    # The links act as the commands they are named after.
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(f"queue_directory = {tmp_path / 'queue'}\n")
    env = {**os.environ, "MAIL_CONFIG": str(etc)}
    mailq = subprocess.run([str(root / "usr/bin/mailq")], capture_output=True, text=True, env=env, timeout=60)
    assert mailq.stdout == "Mail queue is empty\n", mailq.stderr
    (etc / "aliases").write_text("postmaster: root\n")
    (etc / "main.cf").write_text(f"queue_directory = {tmp_path / 'queue'}\n"
                                 f"alias_database = hash:{etc / 'aliases'}\nalias_maps = hash:{etc / 'aliases'}\n")
    newaliases = subprocess.run([str(root / "usr/bin/newaliases")], capture_output=True, text=True, env=env,
                                timeout=60)
    assert newaliases.returncode == 0, newaliases.stderr
    assert (etc / "aliases.sqlite").exists()


def test_refuses_postfix_and_foreign_files_without_force(tmp_path: Path) -> None:
    target = script()
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    real_sendmail = "/usr/sbin/sendmail"
    require(os.path.isfile(real_sendmail), "Postfix's /usr/sbin/sendmail is not installed")
    shutil.copy(os.path.realpath(real_sendmail), root / "usr/sbin/sendmail")
    (root / "usr/bin/mailq").write_text("#!/bin/sh\necho someone else's mailq\n")
    original_sendmail = (root / "usr/sbin/sendmail").read_bytes()

    refused = install_links("--prefix", str(root))
    assert refused.returncode == 1
    assert f"{root}/usr/sbin/sendmail: refusing to replace Postfix's sendmail" in refused.stderr
    assert f"{root}/usr/bin/mailq: refusing to replace a file that is not mailhorn's" in refused.stderr
    assert (root / "usr/sbin/sendmail").read_bytes() == original_sendmail
    assert not (root / "usr/bin/mailq").is_symlink()
    # The free one was still made.
    assert (root / "usr/bin/newaliases").is_symlink()

    forced = install_links("--prefix", str(root), "--force")
    assert forced.returncode == 0, forced.stderr
    for name in NAMES:
        assert os.path.realpath(root / name) == os.path.realpath(target)
    assert (root / "usr/sbin/sendmail.mailhorn-orig").read_bytes() == original_sendmail
    assert (root / "usr/bin/mailq.mailhorn-orig").read_text().startswith("#!/bin/sh")
    assert "saved as" in forced.stdout


def test_refuses_a_link_to_postfix(tmp_path: Path) -> None:
    script()
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    os.symlink("/usr/sbin/sendmail.postfix", root / "usr/sbin/sendmail")
    done = install_links("--prefix", str(root))
    assert done.returncode == 1
    assert "refusing to replace a link to Postfix's sendmail (/usr/sbin/sendmail.postfix)" in done.stderr
    assert os.readlink(root / "usr/sbin/sendmail") == "/usr/sbin/sendmail.postfix"


def test_bad_target(tmp_path: Path) -> None:
    done = install_links("--prefix", str(tmp_path), "--target", str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert "not an executable file" in done.stderr
    assert not (tmp_path / "usr").exists()
