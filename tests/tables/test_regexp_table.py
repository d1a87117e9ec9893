"""regexp: and pcre: tables in-process: opening, errors, timeouts, translation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.tables import regexp as regexp_module
from mailhorn.tables.base import TableConfigError, TableRetry
from mailhorn.tables.ere import PosixRegexError, translate
from mailhorn.tables.registry import open_table


def table(tmp_path: Path, kind: str, text: str) -> regexp_module.PatternTable:
    path = tmp_path / f"t.{kind}"
    path.write_text(text)
    opened = open_table(f"{kind}:{path}", Config())
    assert isinstance(opened, regexp_module.PatternTable)
    return opened


def test_table_is_read_at_open(tmp_path: Path) -> None:
    t = table(tmp_path, "regexp", "/^a$/ first\n")
    (tmp_path / "t.regexp").write_text("/^a$/ second\n")
    assert t.lookup("a") == "first"
    assert t.type == "regexp" and t.name == str(tmp_path / "t.regexp")


def test_keys_are_not_case_folded(tmp_path: Path) -> None:
    t = table(tmp_path, "pcre", "/^(.*)@X$/i $1\n")
    assert t.lookup("Joe@X") == "Joe"
    assert t.lookup("Joe@x") is None


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(TableConfigError, match=r"^open .*/nonexistent: No such file or directory$"):
        open_table(f"regexp:{tmp_path}/nonexistent", Config())


def test_inline_specification() -> None:
    t = open_table("pcre:{ {/^(a)$/ [$1]}, { /^b$/ B } }", Config())
    assert t.lookup("a") == "[a]"
    assert t.lookup("b") == "B"
    assert t.lookup("c") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("regexp:{ {/a/ X} ", "regexp map: missing '}' in \"{ {/a/ X} \""),
        ("regexp:{ {/a/ X} x }", "regexp map: no '{' at start of text in \"x\""),
        ("pcre:{/a/ X}", "pcre map: no '{' at start of text in \"/a/\""),
    ],
)
def test_bad_inline_specification(spec: str, message: str) -> None:
    with pytest.raises(TableConfigError) as info:
        open_table(spec, Config())
    assert str(info.value) == message


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
def test_runaway_match_is_a_temporary_error(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # (a|aa)+ against a long run of a's and a mismatch backtracks for ever.
    monkeypatch.setattr(regexp_module, "MATCH_TIMEOUT", 0.05)
    t = table(tmp_path, kind, "/^(a|aa)+$/ never\n/./ other\n")
    with pytest.raises(TableRetry):
        t.lookup("a" * 80 + "!")
    assert t.lookup("b") == "other"


def test_warning_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("postmap", stderr=True, syslog_path=None)
    try:
        t = table(tmp_path, "regexp", "# comment\n\n/(a/ x\n/b/ B\n")
    finally:
        log.setup("mailhorn", syslog_path=None)
    assert t.lookup("b") == "B"
    err = capsys.readouterr().err
    assert err == f"postmap: warning: regexp map {tmp_path}/t.regexp, line 3: Unmatched ( or \\(\n"


def test_non_utf8_bytes_match_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.regexp"
    path.write_bytes(b"/^\xe9t\xe9$/ latin1\n/^..$/ two-bytes\n")
    t = open_table(f"regexp:{path}", Config())
    assert t.lookup("\udce9t\udce9") == "latin1"
    assert t.lookup("é") == "two-bytes"  # one character, two bytes in UTF-8


@pytest.mark.parametrize(
    ("pattern", "kwargs", "message"),
    [
        (b"(a", {}, "Unmatched ( or \\("),
        (b"\\(a", {"extended": False}, "Unmatched ( or \\("),
        (b"[a", {}, "Unmatched [, [^, [:, [., or [="),
        (b"a{", {}, "Unmatched \\{"),
        (b"a{x}", {}, "Invalid content of \\{\\}"),
        (b"a{40000}", {}, "Regular expression too big"),
        (b"*a", {}, "Invalid preceding regular expression"),
        (b"(?:a)", {}, "Invalid preceding regular expression"),
        (b"[z-a]", {}, "Invalid range end"),
        (b"[Z-a]", {}, "Invalid range end"),
        (b"[[:nope:]]", {}, "Invalid character class name"),
        (b"[[.ab.]]", {}, "Invalid collation character"),
        (b"\\1(a)", {}, "Invalid back reference"),
    ],
)
def test_posix_errors_use_regerror_texts(pattern: bytes, kwargs: dict[str, bool], message: str) -> None:
    with pytest.raises(PosixRegexError) as info:
        translate(pattern, **kwargs)
    assert str(info.value) == message


def test_posix_translation_counts_groups() -> None:
    assert translate(b"^(a)(b(c))$").groups == 3
    assert translate(b"^\\(a\\)(b)$", extended=False).groups == 1
    assert translate(b"[[:upper:][:punct:]]").groups == 0
