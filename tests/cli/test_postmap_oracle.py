"""postmap against the real Postfix postmap: same stdout, same exit status.

Each golden source under tests/golden/tables/ is built twice in one temporary
directory: Postfix's postmap writes FILE.db, mailhorn's writes FILE.sqlite.
Then both answer the same queries (single keys, ``-q -`` batches, ``-s``
dumps, ``-f``, ``-d``, ``-i``, ``-r``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_mailhorn, run_postfix

GOLDEN = ROOT / "tests" / "golden" / "tables"

CONFIGS = {
    "plain": "",
    # smtputf8_enable = yes: non-ASCII keys are case-folded as Unicode.
    "utf8": "compatibility_level = 3.6\n",
}


def both(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Run ``postmap ARGS`` with Postfix and with mailhorn."""
    return run_postfix("postmap", *args, stdin=stdin), run_mailhorn("postmap", *args, stdin=stdin)


def same(args: tuple[str, ...], stdin: str | None = None, sort: bool = False) -> None:
    """Assert both print the same stdout and exit alike."""
    real, ours = both(*args, stdin=stdin)
    real_out, our_out = real.stdout, ours.stdout
    if sort:
        real_out, our_out = "".join(sorted(real_out.splitlines(True))), "".join(sorted(our_out.splitlines(True)))
    assert (our_out, ours.returncode) == (real_out, real.returncode), (args, ours.stderr, real.stderr)


def backdate(etc: Path) -> Path:
    """Age main.cf: Postfix pauses while reading a main.cf changed in the last seconds."""
    for name in ("main.cf", "master.cf"):
        if (etc / name).exists():
            os.utime(etc / name, (time.time() - 3600, time.time() - 3600))
    return etc


@pytest.fixture
def conf(confdir: Path) -> Path:
    """The shared empty configuration directory, aged for Postfix."""
    return backdate(confdir)


def setup_dir(tmp_path: Path, config: str, source: str) -> tuple[Path, Path]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(CONFIGS[config])
    src = tmp_path / "map"
    shutil.copy(GOLDEN / source, src)
    return backdate(etc), src


def keys(name: str) -> list[str]:
    return (GOLDEN / name).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("config", "kind", "fold"),
    [("plain", "hash", []), ("plain", "hash", ["-f"]), ("plain", "btree", []), ("utf8", "hash", []),
     ("utf8", "btree", ["-f"])],
)
def test_build_and_query(tmp_path: Path, config: str, kind: str, fold: list[str]) -> None:
    etc, src = setup_dir(tmp_path, config, "hash_basic.in")
    spec = f"{kind}:{src}"
    real, ours = both("-c", str(etc), *fold, spec)
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout) == (0, "")
    assert "expected format: key whitespace value" in ours.stderr
    assert ('.sqlite: duplicate entry: "foo"' in ours.stderr) == ('.db: duplicate entry: "foo"' in real.stderr)
    assert (tmp_path / "map.db").exists() and (tmp_path / "map.sqlite").exists()
    wanted = keys("hash_basic.keys")
    for key in wanted[:2]:
        same(("-c", str(etc), *fold, "-q", key, spec))
    same(("-c", str(etc), *fold, "-q", "-", spec), stdin="\n".join(wanted) + "\n")
    # Berkeley DB btree lists in key byte order, as the SQLite index does.
    same(("-c", str(etc), *fold, "-s", spec), sort=(kind == "hash"))


def test_bare_name_uses_default_database_type(tmp_path: Path) -> None:
    etc, src = setup_dir(tmp_path, "plain", "hash_basic.in")
    (etc / "main.cf").write_text("default_database_type = btree\n")
    backdate(etc)
    same(("-c", str(etc), str(src)))
    same(("-c", str(etc), "-s", str(src)))
    same(("-c", str(etc), "-q", "example.com", str(src)))


def test_duplicates_replace_and_quiet(tmp_path: Path) -> None:
    etc, src = setup_dir(tmp_path, "plain", "hash_basic.in")
    real, ours = both("-c", str(etc), "-r", f"hash:{src}")
    assert "duplicate entry:" not in ours.stderr and "duplicate entry:" not in real.stderr
    same(("-c", str(etc), "-q", "foo", f"hash:{src}"))
    real, ours = both("-c", str(etc), "-w", f"hash:{src}")
    assert "duplicate entry:" not in ours.stderr
    same(("-c", str(etc), "-q", "foo", f"hash:{src}"))


def test_incremental_and_delete(tmp_path: Path) -> None:
    etc, src = setup_dir(tmp_path, "plain", "hash_basic.in")
    spec = f"hash:{src}"
    both("-c", str(etc), spec)
    new = "added 1\nexample.com changed\nAdded2 x\n"
    real, ours = both("-c", str(etc), "-i", spec, stdin=new)
    assert ours.returncode == real.returncode == 0
    assert '.sqlite: duplicate entry: "example.com"' in ours.stderr
    same(("-c", str(etc), "-s", spec), sort=True)
    real, ours = both("-c", str(etc), "-i", "-r", spec, stdin="example.com changed again\n")
    same(("-c", str(etc), "-q", "example.com", spec))
    for key in ("added", "ADDED2", "absent"):
        same(("-c", str(etc), "-d", key, spec))
    same(("-c", str(etc), "-s", spec), sort=True)
    # -i on a table with no index yet creates it.
    fresh = tmp_path / "fresh"
    same(("-c", str(etc), "-i", f"hash:{fresh}"), stdin="k v\n")
    same(("-c", str(etc), "-q", "k", f"hash:{fresh}"))


def test_several_tables_first_match(tmp_path: Path) -> None:
    etc, src = setup_dir(tmp_path, "plain", "hash_basic.in")
    other = tmp_path / "other"
    other.write_text("example.com from-other\nonly-other yes\n")
    for spec in (f"hash:{src}", f"hash:{other}"):
        both("-c", str(etc), spec)
    specs = (f"hash:{other}", f"hash:{src}")
    same(("-c", str(etc), "-q", "example.com", *specs))
    same(("-c", str(etc), "-q", "-", *specs), stdin="example.com\nonly-other\nfoo\nnone\n")


def test_texthash(tmp_path: Path) -> None:
    etc, src = setup_dir(tmp_path, "plain", "texthash_basic.in")
    spec = f"texthash:{src}"
    wanted = keys("texthash_basic.keys")
    same(("-c", str(etc), "-q", "-", spec), stdin="\n".join(wanted) + "\n")
    same(("-c", str(etc), "-f", "-q", "-", spec), stdin="\n".join(wanted) + "\n")
    same(("-c", str(etc), "-s", spec), sort=True)
    real, ours = both("-c", str(etc), "-q", "alpha", spec)
    assert "line 3: duplicate entry" in ours.stderr and "-- ignoring this line" in ours.stderr
    assert ours.stdout == real.stdout


STATIC_INLINE = [
    "static:foo",
    "static:{ a value with spaces }",
    "static:a b",
    "inline:{ a=1, B=2 , { c = three, with commas }, a=last }",
    "inline:{ a=1, B = 2 }",
    "inline:{ {x=1} }",
]


@pytest.mark.parametrize("fold", [[], ["-f"]])
def test_static_inline(conf: Path, fold: list[str]) -> None:
    stdin = "a\nA\nb\nB\nc\nx\nzz\n"
    for spec in STATIC_INLINE:
        same(("-c", str(conf), *fold, "-q", "-", spec), stdin=stdin)
    same(("-c", str(conf), *fold, "-q", "B", STATIC_INLINE[3]))
    same(("-c", str(conf), *fold, "-s", STATIC_INLINE[3]), sort=True)


@pytest.mark.parametrize(
    "spec",
    [
        "inline:{a}",
        "inline:a=1",
        "inline:{a=1",
        "inline:{}",
        "inline:{ a = 1 }x",
        "inline:{ {a=1}x }",
        "inline:{ a b = c d }",
        "inline:{ {} }",
        "static:{a",
        "static:{ a }x",
        "static:",
        "hash:",
        "nosuchtype:x",
    ],
)
def test_open_errors(conf: Path, spec: str) -> None:
    real, ours = both("-c", str(conf), "-q", "a", spec)
    assert (ours.returncode, ours.stdout) == (real.returncode, real.stdout) == (1, "")
    assert ours.stderr == real.stderr


def test_empty_static_value(conf: Path) -> None:
    real, ours = both("-c", str(conf), "-q", "a", "static:{}")
    assert (ours.stdout, ours.returncode, ours.stderr) == (real.stdout, real.returncode, real.stderr)


@pytest.mark.parametrize("args", [["-s", "static:x"], ["-d", "a", "texthash:/nonexistent"]])
def test_unsupported_operations(conf: Path, args: list[str]) -> None:
    real, ours = both("-c", str(conf), *args)
    assert (ours.stdout, ours.returncode, ours.stderr) == (real.stdout, real.returncode, real.stderr)


def test_missing_index(conf: Path, tmp_path: Path) -> None:
    real, ours = both("-c", str(conf), "-q", "a", f"hash:{tmp_path}/none")
    assert ours.returncode == real.returncode == 1
    assert ours.stderr == f"postmap: fatal: open database {tmp_path}/none.sqlite: No such file or directory\n"


def test_usage_errors(conf: Path) -> None:
    for args in (["-q", "a"], ["-q", "a", "-s", "hash:x"], ["-d", "a", "-d", "b", "hash:x"],
                 ["-h", "-q", "a", "hash:x"], ["-b", "hash:x"]):
        real, ours = both("-c", str(conf), *args)
        assert (ours.returncode, ours.stderr) == (real.returncode, real.stderr), args


def test_build_errors(conf: Path, tmp_path: Path) -> None:
    (tmp_path / "src").write_text("a 1\n")
    for spec in (f"hash:{tmp_path}/none", f"static:{tmp_path}/src", f"texthash:{tmp_path}/src"):
        real, ours = both("-c", str(conf), spec)
        assert (ours.returncode, ours.stderr) == (real.returncode, real.stderr), spec


def test_unix_tables(conf: Path) -> None:
    for spec in ("unix:passwd.byname", "unix:group.byname"):
        same(("-c", str(conf), "-q", "-", spec), stdin="root\nROOT\nmail\nnobody\nno-such-account\n")
        same(("-c", str(conf), "-f", "-q", "ROOT", spec))
    real, ours = both("-c", str(conf), "-q", "root", "unix:foo")
    assert (ours.returncode, ours.stderr) == (real.returncode, real.stderr)


def test_header_and_body_queries(conf: Path, tmp_path: Path) -> None:
    src = tmp_path / "checks"
    src.write_text("subject:\tREJECT subj\nhello REJECT body\n")
    both("-c", str(conf), f"hash:{src}")
    message = "Subject: hi\n there\nX-Foo: 1\n\nhello\nworld\nhello\n"
    (tmp_path / "exact").write_text("x-foo: 1\tWARN exact header\nhello\tHOLD body line\n")
    both("-c", str(conf), f"hash:{tmp_path}/exact")
    for flags in (["-h"], ["-b"], ["-h", "-b"]):
        same(("-c", str(conf), *flags, "-q", "-", f"hash:{tmp_path}/exact"), stdin=message)
