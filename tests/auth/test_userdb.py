"""User database: virtual mailboxes (seeds 002/003), local users (001/004), userdb_maps overrides."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from mailhorn.auth.userdb import UserDB, UserdbError, UserInfo, maildir_from_mail, parse_quota_rule
from mailhorn.config.load import Config, load


def config(confdir: Path, **params: str) -> Config:
    (confdir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in params.items()))
    return load(str(confdir))


@pytest.fixture
def seed002(confdir: Path, tmp_path: Path) -> Config:
    """Seed 002's virtual setup: texthash tables, uid/gid 200, maildirs under /var/spool/virtual."""
    (tmp_path / "vmailbox").write_text("tex@pippo.it pippo.it/tex/\nciccio@pippo.it pippo.it/ciccio/\n"
                                       "mbox@pippo.it pippo.it/mbox\nevil@pippo.it ../../etc/\n"
                                       "@pluto.it pluto.it/catchall/\n")
    (tmp_path / "vmaildomains").write_text("pippo.it pippo\npluto.it pluto\n")
    (tmp_path / "limits").write_text("tex@pippo.it 10485760\n")
    return config(confdir,
                  virtual_mailbox_base="/var/spool/virtual",
                  virtual_mailbox_maps=f"texthash:{tmp_path}/vmailbox",
                  virtual_mailbox_domains=f"texthash:{tmp_path}/vmaildomains",
                  virtual_uid_maps="static:200", virtual_gid_maps="static:200",
                  virtual_mailbox_limit_maps=f"texthash:{tmp_path}/limits",
                  virtual_mailbox_limit="51200000",
                  mydestination="localhost, mail.example.com", myorigin="example.com",
                  home_mailbox="Maildir/")


def test_virtual_users(seed002: Config) -> None:
    db = UserDB(seed002)
    assert db.lookup("tex@pippo.it") == UserInfo("tex@pippo.it", "tex@pippo.it", 200, 200,
                                                 "/var/spool/virtual/pippo.it/tex",
                                                 "/var/spool/virtual/pippo.it/tex", 10485760)
    assert db.lookup("ciccio@pippo.it").quota_bytes == 51200000  # type: ignore[union-attr]
    assert db.lookup("anyone@pluto.it").maildir == "/var/spool/virtual/pluto.it/catchall"  # type: ignore[union-attr]
    assert db.lookup("nobody@pippo.it") is None
    assert db.lookup("tex@elsewhere.example") is None


def test_virtual_unusable_entries(seed002: Config) -> None:
    db = UserDB(seed002)
    with pytest.raises(UserdbError, match="mbox"):
        db.lookup("mbox@pippo.it")
    with pytest.raises(UserdbError, match=r"\.\."):
        db.lookup("evil@pippo.it")


def test_virtual_uid_checks(confdir: Path, tmp_path: Path) -> None:
    # virtual_mailbox_domains defaults to $virtual_mailbox_maps: the domain is looked up there.
    (tmp_path / "vmailbox").write_text("a@x.example x.example/a/\nx.example whole-domain\n")
    base = dict(virtual_mailbox_base="/home/vmail", virtual_mailbox_maps=f"texthash:{tmp_path}/vmailbox",
                virtual_gid_maps="static:5000")
    with pytest.raises(UserdbError, match="no uid"):
        UserDB(config(confdir, **base)).lookup("a@x.example")
    with pytest.raises(UserdbError, match="virtual_minimum_uid"):
        UserDB(config(confdir, virtual_uid_maps="static:50", **base)).lookup("a@x.example")
    info = UserDB(config(confdir, virtual_uid_maps="static:5000", **base)).lookup("a@x.example")
    assert info is not None and (info.uid, info.gid, info.maildir) == (5000, 5000, "/home/vmail/x.example/a")


def _system_user() -> pwd.struct_passwd:
    for entry in pwd.getpwall():
        if entry.pw_uid != 0 and entry.pw_dir.startswith("/") and entry.pw_name.isalnum():
            return entry
    pytest.skip("no unprivileged account in the passwd database")


def test_local_users(seed002: Config) -> None:
    user = _system_user()
    db = UserDB(seed002)
    info = db.lookup(user.pw_name)
    assert info == UserInfo(user.pw_name, f"{user.pw_name}@example.com", user.pw_uid, user.pw_gid, user.pw_dir,
                            user.pw_dir.rstrip("/") + "/Maildir", 0)
    same = db.lookup(f"{user.pw_name}@mail.example.com")
    assert same is not None and same.maildir == info.maildir
    assert db.lookup("no-such-account-here") is None
    with pytest.raises(UserdbError, match="root"):
        db.lookup("root")


def test_local_mailbox_kinds(confdir: Path) -> None:
    user = _system_user()
    spool = UserDB(config(confdir, mail_spool_directory="/var/mail/")).lookup(user.pw_name)
    assert spool is not None and spool.maildir == f"/var/mail/{user.pw_name}"
    with pytest.raises(UserdbError, match="mbox"):
        UserDB(config(confdir)).lookup(user.pw_name)  # /var/mail without a slash: mbox files
    with pytest.raises(UserdbError, match="mbox"):
        UserDB(config(confdir, home_mailbox="Mailbox")).lookup(user.pw_name)
    with pytest.raises(UserdbError, match=r"\.\."):
        UserDB(config(confdir, home_mailbox="../../etc/")).lookup(user.pw_name)


def test_userdb_maps_override(seed002: Config, confdir: Path, tmp_path: Path) -> None:
    (tmp_path / "userdb").write_text(
        "tex@pippo.it quota_rule=*:storage=2048\n"
        "new@other.example uid=6000 gid=6001 home=/srv/mail/%d/%n mail=maildir:~/Maildir:LAYOUT=fs"
        " userdb_quota_rule=*:storage=1G\n"
        "home@other.example uid=6000 gid=6000 home=/srv/home\n"
        "bad@other.example uid=6000 gid=6000 mail=mbox:~/mbox home=/srv\n"
    )
    text = (confdir / "main.cf").read_text() + f"userdb_maps = texthash:{tmp_path}/userdb\n"
    (confdir / "main.cf").write_text(text)
    db = UserDB(load(str(confdir)))
    tex = db.lookup("tex@pippo.it")
    assert tex is not None and tex.quota_bytes == 2048 * 1024 and tex.uid == 200
    new = db.lookup("new@other.example")
    assert new == UserInfo("new@other.example", "new@other.example", 6000, 6001, "/srv/mail/other.example/new",
                           "/srv/mail/other.example/new/Maildir", 1024**3)
    home = db.lookup("home@other.example")
    assert home is not None and home.maildir == "/srv/home/Maildir"
    with pytest.raises(UserdbError, match="maildir"):
        db.lookup("bad@other.example")


def test_mail_and_quota_fields() -> None:
    values = {"u": "tex@pippo.it", "n": "tex", "d": "pippo.it", "h": "/home/vmail/pippo.it/tex"}
    assert maildir_from_mail("maildir:/home/vmail/%d/%n", values, "u") == "/home/vmail/pippo.it/tex"
    assert maildir_from_mail("maildir:~/Maildir:INDEX=/var/idx/%u", values, "u") == "/home/vmail/pippo.it/tex/Maildir"
    for bad in ("maildir:relative", "maildir:/a/../b", "mbox:~/mail", "maildir:/%x"):
        with pytest.raises(UserdbError):
            maildir_from_mail(bad, values, "u")
    assert parse_quota_rule("*:storage=100M") == 100 * 1024**2
    assert parse_quota_rule("*:storage=100") == 102400
    assert parse_quota_rule("*:bytes=100") == 100
    assert parse_quota_rule("*:messages=10") == 0
    with pytest.raises(UserdbError):
        parse_quota_rule("Trash:storage=+100M")
    with pytest.raises(UserdbError):
        parse_quota_rule("*:storage=10%")
