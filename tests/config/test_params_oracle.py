"""The parameter registry against the installed Postfix's ``postconf -d``.

Every declared parameter's default must print exactly as Postfix 3.7 prints
it, both from the registry in-process (``Config.raw``) and through
``mailhorn postconf -d``. The few deliberate or inherent differences are listed
in ``EXCEPTIONS`` with the reason, and checked on their own terms.

A second check keeps the registry complete for the user guides: every
parameter the seed guides set (main.cf lines, ``postconf -e``, master.cf
``-o name=value``) must be declared.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.config.params import PARAMS
from tests.conftest import SEEDS, require, run_mailhorn, run_postfix

pytestmark = pytest.mark.oracle

#: Parameters whose default differs from ``postconf -d`` on purpose or by nature.
EXCEPTIONS: dict[str, str] = {
    "syslog_name": "deliberate: log records say mailhorn unless syslog_name is set (design.md §1)",
    "process_id": "the process ID of whichever program prints it",
    "process_name": "the name of whichever program prints it (postconf for the real one)",
}

#: The parameters whose names and defaults are Postfix's (not invented ones).
POSTFIX_PARAMS = [name for name, param in PARAMS.items() if param.origin == "postfix"]


def test_invented_parameters_are_not_postfix_names(real_defaults: dict[str, str]) -> None:
    invented = [name for name, param in PARAMS.items() if param.origin != "postfix"]
    assert invented
    assert [name for name in invented if name in real_defaults] == []




def parse_postconf(text: str) -> dict[str, str]:
    """``name = value`` lines (``name =`` for an empty value) into a dict."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" =")
        assert sep, f"unexpected postconf output line: {line!r}"
        values[name] = value[1:] if value.startswith(" ") else value
    return values


def line(name: str, value: str) -> str:
    """A parameter as ``postconf`` prints it."""
    return f"{name} = {value}" if value else f"{name} ="


@pytest.fixture(scope="module")
def real_defaults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """All of the real ``postconf -d`` output, from one run on an empty directory."""
    confdir = tmp_path_factory.mktemp("etc")
    (confdir / "main.cf").write_text("")
    (confdir / "master.cf").write_text("")
    result = run_postfix("postconf", "-c", str(confdir), "-d")
    require(result.returncode == 0, f"postconf -d failed: {result.stderr}")
    return parse_postconf(result.stdout)


def test_registry_names_are_postfix_names(real_defaults: dict[str, str]) -> None:
    unknown = sorted(name for name, p in PARAMS.items() if p.origin == "postfix" and name not in real_defaults)
    assert unknown == []


def test_registry_defaults_match_postconf(real_defaults: dict[str, str]) -> None:
    config = Config()
    mismatches = []
    for name in POSTFIX_PARAMS:
        if name in EXCEPTIONS:
            continue
        raw = config.raw(name)
        assert raw is not None
        ours = line(name, raw)
        theirs = line(name, real_defaults[name])
        if ours != theirs:
            mismatches.append((ours, theirs))
    assert mismatches == []


def test_exceptions_are_declared_and_differ_as_documented(real_defaults: dict[str, str]) -> None:
    config = Config()
    assert set(EXCEPTIONS) <= set(PARAMS)
    assert real_defaults["syslog_name"] == "${multi_instance_name?{$multi_instance_name}:{postfix}}"
    assert config.raw("syslog_name") == "${multi_instance_name?{$multi_instance_name}:{mailhorn}}"
    assert config.get("syslog_name") == "mailhorn"
    assert config.raw("process_id") == str(os.getpid())
    assert real_defaults["process_id"].isdigit()
    assert real_defaults["process_name"] == "postconf"


def test_mynetworks_default_matches_postconf(real_defaults: dict[str, str]) -> None:
    assert Config().raw("mynetworks") == real_defaults["mynetworks"]


def test_cli_postconf_d_matches_postconf(tmp_path: Path) -> None:
    """``mailhorn postconf -d NAME...`` prints what ``postconf -d NAME...`` prints."""
    confdir = tmp_path / "etc"
    confdir.mkdir()
    (confdir / "main.cf").write_text("")
    (confdir / "master.cf").write_text("")
    names = [n for n in POSTFIX_PARAMS if n not in ("syslog_name", "process_id")]
    real = run_postfix("postconf", "-c", str(confdir), "-d", *names)
    require(real.returncode == 0, f"postconf -d failed: {real.stderr}")
    ours = run_mailhorn("postconf", "-c", str(confdir), "-d", *names)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == real.stdout


def test_cli_postconf_d_exceptions(tmp_path: Path) -> None:
    confdir = tmp_path / "etc"
    confdir.mkdir()
    (confdir / "main.cf").write_text("")
    ours = run_mailhorn("postconf", "-c", str(confdir), "-d", "syslog_name", "process_id")
    assert ours.returncode == 0, ours.stderr
    lines = ours.stdout.splitlines()
    assert lines[0] == "syslog_name = ${multi_instance_name?{$multi_instance_name}:{mailhorn}}"
    assert re.fullmatch(r"process_id = \d+", lines[1])


# -- the seed guides -----------------------------------------------------

_MAIN_CF_LINE = re.compile(r"^\s*#?\s*([a-z0-9_]+)\s*=", re.MULTILINE)
_POSTCONF_E = re.compile(r"postconf\s+(?:-\w+\s+)*-e\s+(.*)$", re.MULTILINE)
_POSTCONF_E_ITEM = re.compile(r"""['"]?([a-z0-9_]+)\s*=""")
_MASTER_O = re.compile(r"-o\s+([a-z0-9_]+)\s*=")


def seed_parameter_names(text: str) -> set[str]:
    """Names set in a guide: main.cf lines, ``postconf -e`` and ``-o name=value``."""
    names = set(_MAIN_CF_LINE.findall(text))
    for match in _POSTCONF_E.finditer(text):
        names.update(_POSTCONF_E_ITEM.findall(match.group(1)))
    names.update(_MASTER_O.findall(text))
    return names


def test_seed_parameter_extraction() -> None:
    sample = (
        "myhostname = mail.example.com\n"
        "postconf -e 'relayhost = [smtp.example.net]' \"message_size_limit=0\"\n"
        "submission inet n - - - - smtpd\n"
        "  -o smtpd_tls_security_level=encrypt\n"
    )
    assert seed_parameter_names(sample) == {
        "myhostname", "relayhost", "message_size_limit", "smtpd_tls_security_level",
    }


def test_every_seed_parameter_is_declared(real_defaults: dict[str, str]) -> None:
    files = sorted(SEEDS.glob("*.txt"))
    require(bool(files), f"no seed guides in {SEEDS}")
    used: dict[str, str] = {}
    for path in files:
        for name in seed_parameter_names(path.read_text(encoding="utf-8", errors="replace")):
            if name in real_defaults:
                used.setdefault(name, path.name)
    assert used, "no parameters found in the seed guides"
    missing = sorted(f"{name} ({where})" for name, where in used.items() if name not in PARAMS)
    assert missing == []


def test_every_seed_word_naming_a_parameter_is_declared(real_defaults: dict[str, str]) -> None:
    """Stricter: any word of a guide that is a Postfix parameter name, wherever it stands."""
    files = sorted(SEEDS.glob("*.txt"))
    require(bool(files), f"no seed guides in {SEEDS}")
    words: set[str] = set()
    for path in files:
        words.update(re.findall(r"[a-z0-9_]+", path.read_text(encoding="utf-8", errors="replace")))
    missing = sorted(name for name in words & set(real_defaults) if name not in PARAMS)
    assert missing == []
