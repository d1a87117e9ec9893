"""postalias and newaliases against the real Postfix: same stdout, same exit status.

The golden aliases(5) source is built by Postfix's postalias (FILE.db) and by
mailhorn's (FILE.sqlite) in one directory; lookups, ``-q -`` batches and
``-s`` dumps must agree (dumps sorted, as Berkeley DB hash order is arbitrary;
the ``YP_LAST_MODIFIED`` time stamp is compared by shape).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_postmap_oracle import GOLDEN, backdate
from tests.conftest import run_mailhorn, run_postfix


def both(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    return run_postfix("postalias", *args, stdin=stdin), run_mailhorn("postalias", *args, stdin=stdin)


def normal(text: str) -> str:
    text = re.sub(r"^YP_LAST_MODIFIED:\t\d{10}$", "YP_LAST_MODIFIED:\tTIME", text, flags=re.M)
    return "".join(sorted(text.splitlines(True)))


def same(args: tuple[str, ...], stdin: str | None = None) -> None:
    real, ours = both(*args, stdin=stdin)
    assert (normal(ours.stdout), ours.returncode) == (normal(real.stdout), real.returncode), (args, ours.stderr)


@pytest.fixture
def built(tmp_path: Path, confdir: Path) -> tuple[Path, Path]:
    src = tmp_path / "aliases"
    shutil.copy(GOLDEN / "aliases_basic.in", src)
    backdate(confdir)
    real, ours = both("-c", str(confdir), str(src))
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout) == (0, "")
    want = [line.replace(".db:", ".sqlite:") for line in real.stderr.splitlines()]
    assert ours.stderr.splitlines() == want
    return confdir, src


def test_queries(built: tuple[Path, Path]) -> None:
    conf, src = built
    keys = (GOLDEN / "aliases_basic.keys").read_text(encoding="utf-8").splitlines()
    for key in ("root", "fancy", "missing"):
        real, ours = both("-c", str(conf), "-q", key, f"hash:{src}")
        assert (ours.stdout, ours.returncode) == (real.stdout, real.returncode)
    real, ours = both("-c", str(conf), "-q", "-", str(src), stdin="\n".join(keys) + "\n")
    assert (ours.stdout, ours.returncode) == (real.stdout, real.returncode)
    same(("-c", str(conf), "-s", f"hash:{src}"))


def test_dump_of_other_types(confdir: Path) -> None:
    backdate(confdir)
    same(("-c", str(confdir), "-s", "inline:{a=1, b=2}"))
    same(("-c", str(confdir), "-q", "-", "inline:{a=1, b=2}"), stdin="a\nB\nc\n")


def test_incremental_delete_fold(built: tuple[Path, Path]) -> None:
    conf, src = built
    real, ours = both("-c", str(conf), "-i", str(src), stdin="New: x,  y\nroot: again\n")
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout)
    same(("-c", str(conf), "-q", "new", str(src)))
    same(("-c", str(conf), "-d", "new", str(src)))
    same(("-c", str(conf), "-d", "new", str(src)))
    same(("-c", str(conf), "-s", str(src)))
    real, ours = both("-c", str(conf), "-f", "-r", str(src))
    same(("-c", str(conf), "-f", "-q", "-", str(src)), stdin="Root\nroot\nMAILER-DAEMON\n")


def test_newaliases_builds_alias_database(tmp_path: Path, confdir: Path) -> None:
    first, second = tmp_path / "a1", tmp_path / "a2"
    first.write_text("x: y\n")
    second.write_text("Z: w, v\n")
    (confdir / "main.cf").write_text(f"alias_database = hash:{first}, {second}\n")
    ours = run_mailhorn("newaliases", "-c", str(confdir))
    assert (ours.returncode, ours.stderr) == (0, "")
    assert run_mailhorn("postalias", "-c", str(confdir), "-q", "z", f"hash:{second}").stdout == "w, v\n"
    ours = run_mailhorn("newaliases", env={"MAIL_CONFIG": str(confdir)})
    assert ours.returncode == 0
    assert run_mailhorn("postalias", "-c", str(confdir), "-q", "x", f"hash:{first}").stdout == "y\n"
    first.unlink()
    ours = run_mailhorn("newaliases", "-c", str(confdir))
    assert ours.returncode == 75 and f"open {first}: No such file or directory" in ours.stderr
