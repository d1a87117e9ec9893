"""Config: precedence of overrides, main.cf and defaults; typed values as Postfix reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.config.maincf import parse_main_cf


def config(text: str, overrides: dict[str, str] | None = None) -> Config:
    return Config(parse_main_cf(text, "/etc/postfix/main.cf"), overrides)


def test_override_beats_main_cf_beats_default() -> None:
    c = config("myhostname = mail.example.org\nmyorigin = $mydomain\n", {"myorigin": "other.test"})
    assert c.get("myhostname") == "mail.example.org"
    assert c.get("mydomain") == "example.org"
    assert c.get("myorigin") == "other.test"
    assert config("myhostname = mail.example.org\n").get("myorigin") == "mail.example.org"


def test_with_overrides_keeps_base() -> None:
    base = config("myhostname = a.example\n")
    derived = base.with_overrides({"myhostname": "b.example"})
    assert base.get("myhostname") == "a.example"
    assert derived.get("myhostname") == "b.example"
    assert derived.get("mydomain") == "example"


def test_later_setting_wins() -> None:
    c = config("myhostname = a.example\nmyhostname = b.example\n")
    assert c.get("myhostname") == "b.example"
    assert c.where("myhostname") == ("/etc/postfix/main.cf", 2)


def test_bool_accepts_any_case_and_rejects_other_words() -> None:
    c = config("x_yes = YES\nx_no = no\nx_bad = maybe\n")
    assert c.bool("x_yes") is True
    assert c.bool("x_no") is False
    with pytest.raises(ConfigError) as exc:
        c.bool("x_bad")
    assert str(exc.value) == "/etc/postfix/main.cf, line 3: bad boolean configuration: x_bad = maybe"
    assert exc.value.param == "x_bad"


def test_int_errors_name_file_line_and_parameter() -> None:
    c = config("a = 10\nb = ten\n")
    assert c.int("a") == 10
    with pytest.raises(ConfigError) as exc:
        c.int("b")
    assert (exc.value.file, exc.value.line, exc.value.param) == ("/etc/postfix/main.cf", 2, "b")


def test_time_units() -> None:
    c = config("t1 = 30\nt2 = 5m\nt3 = 2h\nt4 = 1d\nt5 = 1w\nt6 = 3x\n")
    assert [c.time(n) for n in ("t1", "t2", "t3", "t4", "t5")] == [30, 300, 7200, 86400, 604800]
    with pytest.raises(ConfigError, match="invalid time value"):
        c.time("t6")


def test_list_splits_on_commas_and_whitespace_keeping_brace_groups() -> None:
    c = config(
        "r = permit_mynetworks,  reject_unauth_destination\n"
        "  check_policy_service { inet:127.0.0.1:10023, timeout=10s }, permit\n"
    )
    assert c.list("r") == [
        "permit_mynetworks",
        "reject_unauth_destination",
        "check_policy_service",
        "{ inet:127.0.0.1:10023, timeout=10s }",
        "permit",
    ]


def test_macro_error_names_file_line_and_parameter() -> None:
    c = config("myhostname = a.b\nsmtpd_banner = ${myhostname\n")
    with pytest.raises(ConfigError) as exc:
        c.get("smtpd_banner")
    assert exc.value.file == "/etc/postfix/main.cf"
    assert exc.value.line == 2
    assert "truncated macro reference" in str(exc.value)


def test_load_sets_config_directory_from_the_directory(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("alias_database = hash:$config_directory/aliases\n")
    c = load(str(tmp_path))
    assert c.get("config_directory") == str(tmp_path)
    assert c.get("alias_database") == f"hash:{tmp_path}/aliases"


def test_load_missing_main_cf_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"open .*main\.cf: No such file or directory"):
        load(str(tmp_path / "nope"))


def test_raw_parameters_are_expanded_only_with_run_time_variables() -> None:
    c = config("recipient_delimiter = +\n")
    assert c.get("forward_path") == "$home/.forward${recipient_delimiter}${extension}, $home/.forward"
    assert c.expand_with("forward_path", {"home": "/home/ana", "extension": "lists"}) == (
        "/home/ana/.forward+lists, /home/ana/.forward"
    )
