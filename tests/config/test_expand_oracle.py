"""$name expansion agrees with the real ``postconf -x`` on every macro form."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import parse_main_cf
from tests.conftest import run_postfix

pytestmark = pytest.mark.oracle

#: Values for smtpd_banner, each a macro form; empty_param is set and empty.
CASES = [
    "$y|$$|${myhostname?{yes $mydomain}:{no}}|${nope?{yes}:{no}}|${nope:empty}",
    "$(myhostname)|${myhostname?plain $mydomain}|${empty_param:E}|${empty_param?F}",
    "${empty_param?{G}:{H}}|$myhostname.x|${myhostname}y",
    "${myhostname?{ yes }:{ no }}|${empty_param?{ yes }:{ no }}|${myhostname ? {x} : {y}}",
    "[${{x}=={y}}]|[${{a}=={a}?x:y}]|[${{ a } == { a } ? {eq}:{ne}}]|[${{ a } == {a} ? {eq}}]",
    "[${{1}<level{1.5}?{a}:{b}}]|[${{2.0.1}==level{2.0}?{a}:{b}}]|[${{b}>={a}?{ge}}]",
    "${{$compatibility_level} <level {2} ? {subnet} : {host}}|${{10} < {9} ? {lt} : {ge}}",
    "${{a} != {b} ? {x}}|${{3.10} >level {3.9} ? {gt}:{le}}|${{x}=={x}}",
    "[${myhostname?{  y  }:{  n  }}][${empty_param?{  y  }:{  n  }}][${myhostname?{  y  }}]",
    "[${empty_param:{  n  }}][${myhostname?  y  }][${{a}=={a}?{  t  }:{  f  }}][${{a}=={b}?{  t  }:{  f  }}]",
    "[${{a}=={a}?  t  }][${myhostname:{  n  }}][${empty_param?  y  :  z}][${{a}=={b}?{x}:junk}]",
    "[${myhostname?{a}:junk}]|[${nope?{a}:junk x}]|[${{a}=={b}?{x}: junk y }]",
]


@pytest.mark.parametrize("value", CASES)
def test_expansion_matches_postconf_x(tmp_path: Path, value: str) -> None:
    text = f"myhostname = mail.example.org\ncompatibility_level = 3.6\nempty_param =\nsmtpd_banner = {value}\n"
    (tmp_path / "main.cf").write_text(text)
    (tmp_path / "master.cf").write_text("")
    real = run_postfix("postconf", "-c", str(tmp_path), "-xh", "smtpd_banner")
    assert real.returncode == 0, real.stderr
    ours = Config(parse_main_cf(text, str(tmp_path / "main.cf"))).get("smtpd_banner")
    # postconf prints values with whitespace runs collapsed and the ends trimmed.
    assert " ".join(ours.split()) + "\n" == real.stdout


@pytest.mark.parametrize(
    "value",
    ["${myhostname", "$", "a $ b", "${myhostname?{a}junk}", "${{a} ~ {b}}"],
)
def test_malformed_macros_are_errors_with_file_and_line(tmp_path: Path, value: str) -> None:
    text = f"myhostname = a.b\nsmtpd_banner = {value}\n"
    path = str(tmp_path / "main.cf")
    (tmp_path / "main.cf").write_text(text)
    (tmp_path / "master.cf").write_text("")
    real = run_postfix("postconf", "-c", str(tmp_path), "-x", "smtpd_banner")
    assert real.returncode == 1
    with pytest.raises(ConfigError) as exc:
        Config(parse_main_cf(text, path)).get("smtpd_banner")
    assert (exc.value.file, exc.value.line, exc.value.param) == (path, 2, "smtpd_banner")


def test_self_reference_is_unreasonable_nesting() -> None:
    c = Config(parse_main_cf("smtpd_banner = $mail_name\nmail_name = $smtpd_banner\n", "/m"))
    with pytest.raises(ConfigError, match="unreasonable macro call nesting"):
        c.get("smtpd_banner")
