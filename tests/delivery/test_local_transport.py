"""local(8) passing recipients to other transports: mailbox_transport(_maps) and
fallback_transport(_maps), delivered for real at Postfix's smtp-sink (SMTP on
loopback, LMTP on a UNIX-domain socket), by the agent alone and under the queue manager."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn import log
from mailhorn.cli import postalias
from mailhorn.delivery.privs import Identity
from mailhorn.delivery.request import Action
from mailhorn.queue.store import QueueStore
from tests.delivery.smtp_helpers import LmtpSink, SmtpSink
from tests.delivery.util import deliver_local as deliver
from tests.delivery.util import make_config, make_store
from tests.qmgr.util import make_setup, run_incoming

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="local delivery to system users needs root")

MASTER_CF = """\
local     unix  -       n       n       -       -       local
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
"""


@pytest.fixture
def lmtp_sink() -> Iterator[LmtpSink]:
    sink = LmtpSink()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(tmp_path)
    try:
        yield sink
    finally:
        sink.stop()


def setup(tmp_path: Path, public_dir: Path, extra: str, aliases: str = "postmaster: root\n"
          ) -> tuple[QueueStore, object]:
    alias_file = public_dir / "aliases"
    alias_file.write_text(aliases)
    config = make_config(tmp_path, (
        "compatibility_level = 3.6\n"
        "myorigin = example.com\nmydestination = example.com\n"
        f"alias_maps = hash:{alias_file}\n"
        "local_recipient_maps =\n"
        "home_mailbox = Maildir/\n"
        "recipient_delimiter = +\n"
        "smtp_host_lookup = native\nsmtp_connect_timeout = 5s\nlmtp_connect_timeout = 5s\n"
        f"maillog_file = {tmp_path / 'maillog'}\n" + extra))
    (tmp_path / "etc" / "master.cf").write_text(MASTER_CF)
    assert postalias.run(["-c", str(tmp_path / "etc"), f"hash:{alias_file}"]) == 0
    log.setup("local", maillog_file=str(tmp_path / "maillog"), syslog_path=None)  # after postalias's own
    return make_store(config), config


def rcpt_args(dump: bytes) -> list[str]:
    return [line.split(b": ", 1)[1].decode() for line in dump.splitlines() if line.startswith(b"X-Rcpt-Args: ")]


def maildir_files(user: Identity) -> list[str]:
    new = Path(user.home) / "Maildir" / "new"
    return os.listdir(new) if new.exists() else []


def test_mailbox_transport_lmtp_takes_users_with_and_without_account(
        tmp_path: Path, public_dir: Path, system_user: Identity, lmtp_sink: LmtpSink) -> None:
    store, config = setup(tmp_path, public_dir, f"mailbox_transport = lmtp:unix:{lmtp_sink.socket}\n",
                          aliases=f"team: {system_user.user}\n")
    user_addr = f"{system_user.user}+tag@example.com"
    statuses = deliver(config, store, [user_addr, "nosuchname@example.com"])
    assert [s.action for s in statuses] == [Action.DELIVERED, Action.DELIVERED], statuses
    for status in statuses:
        assert status.dsn.startswith("2.") and status.relay == f"mx.example.com[{lmtp_sink.socket}]", status
        assert status.text.startswith("250 2.2.0 Ok"), status
    dumps = lmtp_sink.wait_messages(2)
    assert len(dumps) == 2  # each recipient is passed on by itself
    recipients = sorted(a for d in dumps for a in rcpt_args(d))
    assert recipients == sorted([f"<{user_addr}>", "<nosuchname@example.com>"])
    assert all(b"Subject: delivery test" in d for d in dumps)
    assert maildir_files(system_user) == []  # the mailbox was the LMTP server's business
    log = (tmp_path / "maillog").read_text()
    assert f"passing <{user_addr}> to transport=lmtp" in log


def test_aliases_come_before_mailbox_transport(tmp_path: Path, public_dir: Path, system_user: Identity,
                                               lmtp_sink: LmtpSink) -> None:
    store, config = setup(tmp_path, public_dir, f"mailbox_transport = lmtp:unix:{lmtp_sink.socket}\n",
                          aliases=f"team: {system_user.user}\n")
    [status] = deliver(config, store, ["team@example.com"])
    assert status.action is Action.EXPANDED and status.text.startswith("forwarded as "), status
    assert lmtp_sink.messages() == []


def test_mailbox_transport_maps_per_user_then_mailbox_transport(
        tmp_path: Path, public_dir: Path, system_user: Identity, smtp_sink: SmtpSink, lmtp_sink: LmtpSink) -> None:
    table = public_dir / "mailbox_transport"
    table.write_text(f"{system_user.user} relay:{smtp_sink.nexthop}\n")
    store, config = setup(tmp_path, public_dir, f"mailbox_transport_maps = texthash:{table}\n"
                                                f"mailbox_transport = lmtp:unix:{lmtp_sink.socket}\n")
    mapped, other = f"{system_user.user}+x@example.com", "someone@example.com"
    first, second = deliver(config, store, [mapped, other])
    assert first.action is Action.DELIVERED and first.relay == f"127.0.0.3[127.0.0.3]:{smtp_sink.port}", first
    assert second.action is Action.DELIVERED and second.relay == f"mx.example.com[{lmtp_sink.socket}]", second
    [smtp_dump] = smtp_sink.wait_messages(1)
    assert rcpt_args(smtp_dump) == [f"<{mapped}>"]
    assert [a for d in lmtp_sink.wait_messages(1) for a in rcpt_args(d)] == [f"<{other}>"]
    assert maildir_files(system_user) == []


def test_mailbox_transport_maps_alone_leave_other_users_to_their_maildir(
        tmp_path: Path, public_dir: Path, system_user: Identity, smtp_sink: SmtpSink) -> None:
    table = public_dir / "mailbox_transport"
    table.write_text(f"somebody-else relay:{smtp_sink.nexthop}\n")
    store, config = setup(tmp_path, public_dir, f"mailbox_transport_maps = texthash:{table}\n")
    [status] = deliver(config, store, [f"{system_user.user}@example.com"])
    assert (status.action, status.text, status.relay) == (Action.DELIVERED, "delivered to maildir", "local")
    assert len(maildir_files(system_user)) == 1
    assert smtp_sink.messages() == []


def test_the_other_transports_failure_is_locals_status(tmp_path: Path, public_dir: Path,
                                                       system_user: Identity) -> None:
    bounce = SmtpSink(tmp_path, "-f", "RCPT")
    defer = SmtpSink(tmp_path, "-r", "RCPT")
    try:
        table = public_dir / "mailbox_transport"
        table.write_text(f"{system_user.user} smtp:{bounce.nexthop}\nother smtp:{defer.nexthop}\n")
        store, config = setup(tmp_path, public_dir, f"mailbox_transport_maps = texthash:{table}\n")
        hard, soft = deliver(config, store, [f"{system_user.user}@example.com", "other@example.com"])
    finally:
        bounce.stop()
        defer.stop()
    assert hard.action is Action.BOUNCED and hard.dsn.startswith("5."), hard
    assert hard.relay == f"127.0.0.3[127.0.0.3]:{bounce.port}"
    assert "said: 5" in hard.text and hard.remote_reply is not None, hard
    assert soft.action is Action.DEFERRED and soft.dsn.startswith("4."), soft
    assert soft.relay == f"127.0.0.3[127.0.0.3]:{defer.port}" and "said: 4" in soft.text, soft
    assert maildir_files(system_user) == []


def test_fallback_transport_for_names_without_account(tmp_path: Path, public_dir: Path,
                                                      system_user: Identity, smtp_sink: SmtpSink) -> None:
    store, config = setup(tmp_path, public_dir, f"fallback_transport = smtp:{smtp_sink.nexthop}\n"
                                                "luser_relay = catchall@elsewhere.example\n",
                          aliases="alias: nowhere@elsewhere.example\n")
    user_addr = f"{system_user.user}@example.com"
    known, unknown, alias = deliver(config, store, [user_addr, "ghost+x@example.com", "alias@example.com"])
    assert (known.action, known.text) == (Action.DELIVERED, "delivered to maildir"), known
    assert len(maildir_files(system_user)) == 1
    assert unknown.action is Action.DELIVERED, unknown
    assert unknown.relay == f"127.0.0.3[127.0.0.3]:{smtp_sink.port}" and unknown.text.startswith("250 "), unknown
    assert alias.action is Action.EXPANDED  # aliases come first
    [dump] = smtp_sink.wait_messages(1)
    assert rcpt_args(dump) == ["<ghost+x@example.com>"]  # fallback_transport wins over luser_relay
    assert b"Subject: delivery test" in dump


def test_fallback_transport_maps_before_fallback_transport(tmp_path: Path, public_dir: Path,
                                                           smtp_sink: SmtpSink, lmtp_sink: LmtpSink) -> None:
    table = public_dir / "fallback"
    table.write_text(f"ghost lmtp:unix:{lmtp_sink.socket}\n")
    store, config = setup(tmp_path, public_dir, f"fallback_transport_maps = texthash:{table}\n"
                                                f"fallback_transport = smtp:{smtp_sink.nexthop}\n")
    ghost, other = deliver(config, store, ["ghost+ext@example.com", "phantom@example.com"])
    assert ghost.action is Action.DELIVERED and ghost.relay == f"mx.example.com[{lmtp_sink.socket}]", ghost
    assert other.action is Action.DELIVERED and other.relay.endswith(f":{smtp_sink.port}"), other
    assert [a for d in lmtp_sink.wait_messages(1) for a in rcpt_args(d)] == ["<ghost+ext@example.com>"]
    assert [a for d in smtp_sink.wait_messages(1) for a in rcpt_args(d)] == ["<phantom@example.com>"]


def test_mailbox_transport_maps_win_over_fallback_for_unknown_names(
        tmp_path: Path, public_dir: Path, smtp_sink: SmtpSink, lmtp_sink: LmtpSink) -> None:
    table = public_dir / "mailbox_transport"
    table.write_text(f"ghost lmtp:unix:{lmtp_sink.socket}\n")
    store, config = setup(tmp_path, public_dir, f"mailbox_transport_maps = texthash:{table}\n"
                                                f"fallback_transport = smtp:{smtp_sink.nexthop}\n")
    [status] = deliver(config, store, ["ghost@example.com"])
    assert status.action is Action.DELIVERED and status.relay == f"mx.example.com[{lmtp_sink.socket}]", status
    assert smtp_sink.messages() == []


def test_misconfigured_transports_defer(tmp_path: Path, public_dir: Path) -> None:
    table = public_dir / "mailbox_transport"
    table.write_text("loop local:\nmissing nosuchservice:[127.0.0.1]\n")
    store, config = setup(tmp_path, public_dir, f"mailbox_transport_maps = texthash:{table}\n")
    loop, missing = deliver(config, store, ["loop@example.com", "missing@example.com"])
    assert (loop.action, loop.dsn, loop.text) == (Action.DEFERRED, "4.3.5", "mail system configuration error")
    assert (missing.action, missing.dsn, missing.text) == (Action.DEFERRED, "4.3.0", "mail transport unavailable")


def test_queue_manager_delivers_through_mailbox_transport(tmp_path: Path, lmtp_sink: LmtpSink) -> None:
    s = make_setup(tmp_path, "alias_maps =\nlocal_recipient_maps =\n"
                             f"mailbox_transport = lmtp:unix:{lmtp_sink.socket}\n",
                   master_cf=MASTER_CF)
    queue_id = s.submit("ghost@mail.example.org")
    qm = s.manager()

    run_incoming(qm, close_agents=True)
    [dump] = lmtp_sink.wait_messages(1)
    assert rcpt_args(dump) == ["<ghost@mail.example.org>"] and b"Subject: test" in dump
    tagged = s.tagged()
    assert f"local: {queue_id}: passing <ghost@mail.example.org> to transport=lmtp" in tagged
    [sent] = [t for t in tagged if "to=<ghost@mail.example.org>" in t]
    # Logged under the agent that delivered, as Postfix's postfix/lmtp line.
    assert sent.startswith(f"lmtp: {queue_id}: to=<ghost@mail.example.org>, relay=mail.example.org[{lmtp_sink.socket}], ")
    assert ", dsn=2.2.0, status=sent (250 2.2.0 Ok" in sent, sent
    assert tagged[-1] == f"qmgr: {queue_id}: removed"
    assert s.queue("active") == [] and s.queue("deferred") == []
