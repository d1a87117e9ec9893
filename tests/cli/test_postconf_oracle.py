"""``mailhorn postconf`` against the real Postfix 3.7 postconf, on the golden corpus.

Each directory of tests/golden/seeds is copied to a temporary directory and
both programs run on the same copy, so paths in the output agree. Standard
output and exit status must be byte-identical; warnings are compared as sets
(Postfix prints some of them in hash-table order).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailhorn.config.params import PARAMS
from tests.conftest import ROOT, run_mailhorn, run_postfix

CORPUS = ROOT / "tests" / "golden" / "seeds"
DIRS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())

#: Option sets compared on every corpus directory.
VIEWS = [["-n"], ["-nx"], ["-x", "-n"], ["-nf"], ["-M"], ["-M", "-f"], ["-P"], ["-F"], ["-Ff"], ["-Pf"]]


def _warnings(stderr: str) -> set[str]:
    # Postfix also opens the mysql:/pgsql: client files named in main.cf to check
    # their settings; those messages belong to the table clients, not to postconf.
    # Postfix names itself by argv[0] (/usr/sbin/postconf); compare from "warning:" on.
    return {
        line[line.find(": warning: ") :] for line in stderr.splitlines() if ' configuration "' not in line
    }


#: Names mailhorn reads that stock Postfix does not (VDA quota patch, Dovecot,
#: invented): mailhorn prints them under -n where Postfix calls them unused.
NOT_POSTFIX = frozenset(n for n, p in PARAMS.items() if p.origin != "postfix")


def _postfix_view(stdout: str) -> str:
    """mailhorn's output less the logical lines of NOT_POSTFIX parameters."""
    kept: list[str] = []
    skipping = False
    for line in stdout.splitlines(keepends=True):
        if line[:1] in (" ", "\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(" =", 1)[0] in NOT_POSTFIX
        if not skipping:
            kept.append(line)
    return "".join(kept)


def _not_unused(warnings: set[str]) -> set[str]:
    """Postfix's warnings less "unused parameter" for NOT_POSTFIX names."""
    prefix = ": warning: "
    return {
        w for w in warnings
        if not any(f"unused parameter: {n}=" in w for n in NOT_POSTFIX) or not w.startswith(prefix)
    }


def _copy(tmp_path: Path, name: str) -> str:
    target = tmp_path / name
    shutil.copytree(CORPUS / name, target)
    return str(target)


@pytest.mark.parametrize("name", DIRS)
@pytest.mark.parametrize("view", VIEWS, ids=lambda v: "".join(v))
def test_views_match_postfix(tmp_path: Path, name: str, view: list[str]) -> None:
    conf = _copy(tmp_path, name)
    ours = run_mailhorn("postconf", "-c", conf, *view)
    theirs = run_postfix("postconf", "-c", conf, *view)
    assert _postfix_view(ours.stdout) == theirs.stdout
    assert ours.returncode == theirs.returncode
    assert _warnings(ours.stderr) == _not_unused(_warnings(theirs.stderr))


@pytest.mark.parametrize("name", DIRS)
def test_registry_parameters_match_postfix(tmp_path: Path, name: str) -> None:
    """Every registry parameter: effective, default and expanded values."""
    conf = _copy(tmp_path, name)
    # process_id is the pid of the running postconf; syslog_name defaults to
    # "mailhorn" by design (design.md §1, Logs).
    names = sorted({n for n, p in PARAMS.items() if p.origin == "postfix"} - {"process_id", "syslog_name"})
    for view in (["-d"], [], ["-x"], ["-h"], ["-n"]):
        ours = run_mailhorn("postconf", "-c", conf, *view, *names)
        theirs = run_postfix("postconf", "-c", conf, *view, *names)
        differ = [
            (a, b) for a, b in zip(ours.stdout.splitlines(), theirs.stdout.splitlines()) if a != b
        ]
        assert ours.stdout == theirs.stdout, f"postconf {view}: first differences {differ}"
        assert ours.returncode == theirs.returncode


@pytest.mark.parametrize("name", DIRS)
def test_service_parameters_in_defaults(tmp_path: Path, name: str) -> None:
    """Service-defined names (from master.cf) appear in -d output as Postfix's do."""
    conf = _copy(tmp_path, name)
    ours = run_mailhorn("postconf", "-c", conf, "-d")
    theirs = run_postfix("postconf", "-c", conf, "-d")
    ours_lines = ours.stdout.splitlines()
    theirs_set = set(theirs.stdout.splitlines())
    invented = {n for n, p in PARAMS.items() if p.origin != "postfix"}
    extra = [
        line for line in ours_lines
        if line not in theirs_set
        and line.split(" =")[0] not in ("process_id", "syslog_name", *invented)
    ]
    assert extra == [], "lines mailhorn prints that Postfix does not"
    assert ours_lines == sorted(ours_lines, key=lambda s: s.split(" = ")[0])


EDITS: list[list[str]] = [
    ["-e", "myhostname = mail.example.net"],
    ["-e", "smtpd_recipient_restrictions=permit_mynetworks, reject"],
    ["-e", "brand_new_parameter =  spaced   value  "],
    ["-e", "mail_name ="],
    ["-#", "smtpd_banner", "mynetworks", "no_such_name"],
    ["-X", "compatibility_level", "smtpd_client_restrictions"],
    ["-M", "-#", "relay/unix"],
    ["-M", "-X", "uucp/unix", "*/fifo"],
    ["-M", "-e", "smtp/inet = smtp inet n - y - - smtpd -o smtpd_sasl_auth_enable=yes"],
    ["-M", "-e", "new/unix = new unix - - n - 4 pipe flags=R user=nobody argv=/bin/true ${nexthop}"],
]


@pytest.mark.parametrize("name", DIRS)
@pytest.mark.parametrize("edit", EDITS, ids=lambda e: " ".join(e)[:40])
def test_edits_leave_identical_files(tmp_path: Path, name: str, edit: list[str]) -> None:
    ours_dir = _copy(tmp_path / "ours", name)
    theirs_dir = _copy(tmp_path / "theirs", name)
    ours = run_mailhorn("postconf", "-c", ours_dir, *edit)
    theirs = run_postfix("postconf", "-c", theirs_dir, *edit)
    assert ours.returncode == theirs.returncode, ours.stderr
    for file in ("main.cf", "master.cf"):
        assert (Path(ours_dir) / file).read_bytes() == (Path(theirs_dir) / file).read_bytes(), file


def test_missing_final_newline_append(tmp_path: Path) -> None:
    """Postfix appends right after a last line without newline; so do we."""
    for who, runner in (("ours", run_mailhorn), ("theirs", None)):
        d = tmp_path / who
        d.mkdir()
        (d / "main.cf").write_text("# head\nmyhostname = a\n# tail")
        (d / "master.cf").write_text("")
        if runner is None:
            run_postfix("postconf", "-c", str(d), "-e", "relayhost = [mx]:25")
        else:
            runner("postconf", "-c", str(d), "-e", "relayhost = [mx]:25")
    assert (tmp_path / "ours" / "main.cf").read_bytes() == (tmp_path / "theirs" / "main.cf").read_bytes()
