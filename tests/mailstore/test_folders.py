"""Maildir++ folder names, modified UTF-7, subscriptions and maildirmake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.cli import maildirmake
from mailhorn.mailstore import folders, quota
from mailhorn.mailstore.errors import FolderExistsError, InvalidFolderName


@pytest.mark.parametrize("text, encoded", [
    ("Açaí", "A&AOc-a&AO0-"),          # as Dovecot named the directory
    ("a&b", "a&-b"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
    ("Entwürfe", "Entw&APw-rfe"),
    ("plain", "plain"),
])
def test_modified_utf7(text: str, encoded: str) -> None:
    assert folders.mutf7_encode(text) == encoded
    assert folders.mutf7_decode(encoded) == text


@pytest.mark.parametrize("bad", ["&Jjo", "a&AO", "&2D0-", "é"])
def test_modified_utf7_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        folders.mutf7_decode(bad)


@pytest.mark.parametrize("name, rule", [
    ("..", "Begins with hierarchy separator"),
    (".x", "Begins with hierarchy separator"),
    ("a/b", "'/'"),
    ("../../etc", "hierarchy separator"),
    ("x/../../y", "'/'"),
    ("~root", "Begins with '~'"),
    ("a..b", "adjacent hierarchy separators"),
    ("a\x01b", "Control characters"),
    ("a\nb", "Control characters"),
    ("", "Empty name"),
    ("x" * 300, "too long"),
])
def test_path_tricks_refused(tmp_path: Path, name: str, rule: str) -> None:
    with pytest.raises(InvalidFolderName, match=rule):
        folders.create_folder(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_names_map_to_dovecot_directories(tmp_path: Path) -> None:
    assert folders.folder_path(tmp_path, "inbox") == tmp_path
    assert folders.folder_path(tmp_path, "Sent") == tmp_path / ".Sent"
    assert folders.folder_path(tmp_path, "Sub.Child") == tmp_path / ".Sub.Child"
    assert folders.folder_path(tmp_path, "x.") == tmp_path / ".x"  # Dovecot drops one trailing separator
    assert folders.folder_path(tmp_path, "x~y") == tmp_path / ".x~y"


def test_create_list_delete(tmp_path: Path) -> None:
    folders.make_maildir(tmp_path)
    for name in ("Sent", "Açaí", "Sub.Child"):
        made = folders.create_folder(tmp_path, name)
        assert (made / "maildirfolder").is_file()
        assert all((made / d).is_dir() for d in ("cur", "new", "tmp"))
        assert (made.stat().st_mode & 0o777) == 0o700
    with pytest.raises(FolderExistsError):
        folders.create_folder(tmp_path, "Sent")
    (tmp_path / ".notamaildir").mkdir()
    (tmp_path / ".hidden-file").write_text("x")
    assert folders.list_folders(tmp_path) == ["INBOX", "Açaí", "Sent", "Sub.Child"]
    folders.delete_folder(tmp_path, "Sent")
    assert folders.list_folders(tmp_path) == ["INBOX", "Açaí", "Sub.Child"]
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(InvalidFolderName):
        folders.delete_folder(tmp_path, "INBOX")


def test_subscriptions_format_version_2(tmp_path: Path) -> None:
    folders.subscribe(tmp_path, "Sent")
    folders.subscribe(tmp_path, "Açaí")
    folders.subscribe(tmp_path, "Sub.Child")
    folders.subscribe(tmp_path, "Sent")
    # Byte for byte what Dovecot 2.3 wrote for the same subscriptions.
    assert (tmp_path / "subscriptions").read_bytes() == b"V\t2\n\nSent\nA&AOc-a&AO0-\nSub\tChild\n"
    assert folders.read_subscriptions(tmp_path) == ["Sent", "Açaí", "Sub.Child"]
    folders.unsubscribe(tmp_path, "Açaí")
    assert folders.read_subscriptions(tmp_path) == ["Sent", "Sub.Child"]


def test_subscriptions_version_1_is_read(tmp_path: Path) -> None:
    (tmp_path / "subscriptions").write_bytes(b"Sent\nSub.Child\nA&AOc-a&AO0-\n")
    assert folders.read_subscriptions(tmp_path) == ["Sent", "Sub.Child", "Açaí"]


def test_special_use_defaults() -> None:
    assert folders.special_use("Sent") == "\\Sent"
    assert folders.special_use("Trash") == "\\Trash"
    assert folders.special_use("Enviados") is None
    assert folders.special_use("Enviados", {"Enviados": "\\Sent"}) == "\\Sent"


def test_maildirmake_seed_004_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The commands of seed 004, run with mailhorn in front."""
    home = tmp_path / "home" / "suporte"
    home.mkdir(parents=True)
    assert maildirmake.run([str(home / "Maildir")]) == 0
    for name in ("Enviados", "Rascunhos", "Lixeira", "Spam"):
        assert maildirmake.run([str(home / "Maildir" / f".{name}")]) == 0
    assert folders.list_folders(home / "Maildir") == ["INBOX", "Enviados", "Lixeira", "Rascunhos", "Spam"]
    assert (home / "Maildir" / ".Enviados" / "maildirfolder").is_file()
    assert not (home / "Maildir" / "maildirfolder").exists()
    assert capsys.readouterr().err == ""


def test_maildirmake_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    md = tmp_path / "Maildir"
    assert maildirmake.run([str(md)]) == 0
    assert maildirmake.run(["-f", "Enviados", str(md)]) == 0
    assert (md / ".Enviados" / "maildirfolder").is_file()
    assert maildirmake.run(["-F", "Ação", str(md)]) == 0
    assert (md / ".A&AOcA4w-o").is_dir()
    assert maildirmake.run(["-q", "10000000S", str(md)]) == 0
    assert (md / "maildirsize").read_text() == "10000000S\n0 0\n"
    assert quota.get_usage(md) == quota.QuotaUsage(quota.QuotaLimits(10_000_000, None), 0, 0)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        maildirmake.run([str(md)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("maildirmake: fatal: ") and err.rstrip().endswith("File exists")
    for bad in (["-f", "..", str(md)], ["-F", "a/b", str(md)], ["-f", "~x", str(md)],
                ["-q", "lots", str(md)], [str(md / ".."), ]):
        with pytest.raises(SystemExit):
            maildirmake.run(bad)
    err = capsys.readouterr().err
    assert "Begins with hierarchy separator" in err and "'/'" in err and "'~'" in err
    assert sorted(p.name for p in md.iterdir() if p.name.startswith(".")) == [".A&AOcA4w-o", ".Enviados"]


def test_is_maildir_wants_three_directories(tmp_path: Path) -> None:
    is_maildir = folders.is_maildir
    box = tmp_path / "box"
    for sub in ("cur", "new"):
        (box / sub).mkdir(parents=True)
    assert not is_maildir(box)  # no tmp
    (box / "tmp").write_text("a file, not a directory")
    assert not is_maildir(box)
    (box / "tmp").unlink()
    (tmp_path / "elsewhere").mkdir()
    (box / "tmp").symlink_to(tmp_path / "elsewhere")  # a link to a directory counts, as for isdir()
    assert is_maildir(box) and is_maildir(str(box)) and is_maildir(f"{box}/")
    assert not is_maildir(tmp_path / "missing")
