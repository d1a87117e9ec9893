"""Real IMAP clients against imapd: mbsync (isync), offlineimap (offlineimap3), getmail6."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.mailstore import deliver
from mailhorn.mailstore.folders import create_folder
from mailhorn.mailstore.maildir import Mailbox
from tests.conftest import require
from tests.imap.server_util import PASSWORD, USER, ImapServer, chown_tree

MSG = b"From: ana@example.com\r\nTo: joao@example.com\r\nSubject: %s\r\nMessage-ID: <%s@example.com>\r\n\r\n%s body\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ImapServer]:
    srv = ImapServer(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def _files(maildir: Path) -> list[Path]:
    return [p for sub in ("cur", "new") for p in (maildir / sub).iterdir()]


def _norm(data: bytes) -> bytes:
    """A message without line-end differences and mbsync's X-TUID header."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    return b"\n".join(line for line in lines if not line.startswith(b"X-TUID: "))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8"}
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_mbsync_syncs_folders_both_ways(server: ImapServer, tmp_path: Path) -> None:
    require(shutil.which("mbsync") is not None, "mbsync is not installed (apt-get install isync)")
    deliver(server.maildir, [MSG % (b"one", b"1", b"one")])
    create_folder(server.maildir, "Projects")
    deliver(server.maildir / ".Projects", [MSG % (b"two", b"2", b"two")], flags="S")
    near = tmp_path / "near"
    near.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount far\nHost 127.0.0.1\nPort {server.port}\nUser {USER}\nPass \"{PASSWORD}\"\n"
        "SSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore far-store\nAccount far\n\n"
        f"MaildirStore near-store\nPath {near}/\nInbox {near}/INBOX\nSubFolders Verbatim\n\n"
        "Channel sync\nFar :far-store:\nNear :near-store:\nPatterns *\nCreate Both\nExpunge Both\n"
        "SyncState *\nSync All\n")
    _run(["mbsync", "-c", str(rc), "-a"], tmp_path)
    inbox = near / "INBOX"
    assert [_norm(p.read_bytes()) for p in _files(inbox)] == [_norm(MSG % (b"one", b"1", b"one"))]
    projects = _files(near / "Projects")
    assert len(projects) == 1 and projects[0].name.endswith(",S")
    # The near side adds a folder and a message, flags one, and mbsync carries it back.
    (near / "Archive" / "cur").mkdir(parents=True)
    for sub in ("new", "tmp"):
        (near / "Archive" / sub).mkdir()
    (near / "Archive" / "cur" / "100.near:2,S").write_bytes(MSG % (b"three", b"3", b"three"))
    (only,) = _files(inbox)
    only.rename(inbox / "cur" / (only.name.split(":")[0] + ":2,F"))
    _run(["mbsync", "-c", str(rc), "-a"], tmp_path)
    (archived,) = Mailbox(server.maildir, "Archive").sync()
    assert archived.flags == "S" and _norm(archived.path.read_bytes()) == _norm(MSG % (b"three", b"3", b"three"))
    (flagged,) = Mailbox(server.maildir).sync()
    assert "F" in flagged.flags
    # A deletion on the far side reaches the near side.
    deliver(server.maildir, [MSG % (b"four", b"4", b"four")])
    _run(["mbsync", "-c", str(rc), "-a"], tmp_path)
    assert len(_files(inbox)) == 2
    box = Mailbox(server.maildir)
    box.expunge([m for m in box.sync() if m.uid == 1])
    _run(["mbsync", "-c", str(rc), "-a"], tmp_path)
    assert [_norm(p.read_bytes()) for p in _files(inbox)] == [_norm(MSG % (b"four", b"4", b"four"))]


def test_offlineimap_syncs(server: ImapServer, tmp_path: Path) -> None:
    require(shutil.which("offlineimap") is not None,
            "offlineimap is not installed (apt-get install offlineimap3)")
    deliver(server.maildir, [MSG % (b"one", b"1", b"one")])
    create_folder(server.maildir, "Sent")
    deliver(server.maildir / ".Sent", [MSG % (b"two", b"2", b"two")], flags="S")
    local = tmp_path / "local"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        f"[general]\naccounts = test\nmetadata = {tmp_path}/meta\n\n"
        "[Account test]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n"
        f"[Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {server.port}\n"
        f"remoteuser = {USER}\nremotepass = {PASSWORD}\nssl = no\nstarttls = no\n")
    _run(["offlineimap", "-c", str(rc), "-o", "-u", "quiet"], tmp_path)
    assert [_norm(p.read_bytes()) for p in _files(local / "INBOX")] == [_norm(MSG % (b"one", b"1", b"one"))]
    (sent,) = _files(local / "Sent")
    assert _norm(sent.read_bytes()) == _norm(MSG % (b"two", b"2", b"two"))
    (local / "Sent" / "cur" / "200_0.local:2,S").write_bytes(MSG % (b"three", b"3", b"three"))
    _run(["offlineimap", "-c", str(rc), "-o", "-u", "quiet"], tmp_path)
    subjects = sorted(m.path.read_bytes().split(b"Subject: ")[1].split(b"\r\n")[0]
                      for m in Mailbox(server.maildir, "Sent").sync())
    assert subjects == [b"three", b"two"]


def test_getmail_imap_retrieves_and_deletes(server: ImapServer, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    require(shutil.which("getmail") is not None, "getmail is not installed (apt-get install getmail6)")
    for i in range(3):
        deliver(server.maildir, [MSG % (b"m%d" % i, b"%d" % i, b"m%d" % i)])
    # getmail refuses to deliver as root: as root the Maildir goes to nobody, outside
    # pytest's private temporary root.
    base = Path(tempfile.mkdtemp(prefix="mailhorn-getmail-"))
    os.chmod(base, 0o755)
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    dest = base / "dest"
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True)
    user_line = ""
    if os.geteuid() == 0:
        chown_tree(dest)
        user_line = "user = nobody\n"
    rc_dir = tmp_path / "getmail"
    rc_dir.mkdir()
    (rc_dir / "getmailrc").write_text(
        f"[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\nport = {server.port}\n"
        f"username = {USER}\npassword = {PASSWORD}\nmailboxes = ('INBOX',)\n\n"
        f"[destination]\ntype = Maildir\npath = {dest}/\n{user_line}\n"
        "[options]\ndelete = true\nread_all = false\nverbose = 0\n")
    _run(["getmail", "--getmaildir", str(rc_dir), "--rcfile", "getmailrc"], tmp_path)
    got = sorted(p.read_bytes().split(b"Subject: ")[1].split(b"\r\n")[0].split(b"\n")[0]
                 for p in _files(dest))
    assert got == [b"m0", b"m1", b"m2"]
    assert Mailbox(server.maildir).sync() == []
