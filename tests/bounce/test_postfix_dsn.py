"""Failure notices compared with the ones the real Postfix 3.7 queues for the same message.

A private Postfix (tests/cleanup/postfix_oracle.py, with a queue manager,
bounce and error services added to its master.cf) bounces every message
through ``default_transport = error:...``; its notice to the sender is held
in the deferred queue by ``defer_transports`` and read with the real
``postcat``. mailhorn queues the same message through its cleanup (with the
same virtual alias), logs the same failure and sends its notice. Headers and
body must be identical once queue IDs, dates and the boundary's time stamp
are normalised.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.cleanup.request import RecipientRequest
from tests.bounce.util import HOST, log_all, notice, notify, queue, rig
from tests.cleanup import postfix_oracle
from tests.conftest import require

REASON = ("this is a rather long error text that goes on and on so that the notification "
          "has to wrap it over several lines of text for sure ok")
MAIN = (
    f"default_transport = error:5.1.1 {REASON}\n"
    "transport_maps = inline:{sender.example=smtp:}\n"
    "defer_transports = smtp\n"
    "smtpd_reject_unlisted_recipient = no\n"
    "virtual_alias_maps = inline:{x@dest.example=r3@dest.example}\n"
    "notify_classes =\n"
)
SERVICES = (
    "qmgr unix n - n 300 1 qmgr\n"
    "bounce unix - - n - 0 bounce\n"
    "defer unix - - n - 0 bounce\n"
    "trace unix - - n - 0 bounce\n"
    "error unix - - n - - error\n"
    "retry unix - - n - - error\n"
    "smtp unix - - n - - smtp\n"
    "proxymap unix - - n - - proxymap\n"
)
_DATE = re.compile(r"[A-Z][a-z]{2}, [ \d]\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)")
_MSGID = re.compile(r"<\d{14}\.NEWID@")
_STAMP = re.compile(r"ORIGID\.\d+/")


def normalise(text: str, original: str, new: str) -> str:
    text = text.replace(original, "ORIGID").replace(new, "NEWID")
    text = _DATE.sub("DATE", text)
    text = _STAMP.sub("ORIGID.STAMP/", text)
    return _MSGID.sub("<STAMP.NEWID@", text)


@pytest.fixture(scope="module")
def oracle() -> Iterator[postfix_oracle.PostfixOracle]:
    require(postfix_oracle.available(), "a private Postfix needs root and the postfix package")
    root = Path(tempfile.mkdtemp(prefix="mailhorn-bounce-oracle-"))
    instance = postfix_oracle.PostfixOracle(root, myhostname=HOST, extra_main=MAIN)
    master_cf = instance.etc / "master.cf"
    master_cf.write_text(master_cf.read_text() + SERVICES)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


def postfix_notice(oracle: postfix_oracle.PostfixOracle, data: bytes, rcpts: list[str],
                   mail_options: list[str]) -> str:
    """Send through the real Postfix; return its sender notice (postcat -bh), normalised."""
    with smtplib.SMTP("127.0.0.1", oracle.port) as client:
        client.ehlo("client.example")
        client.sendmail("s@sender.example", rcpts, data, mail_options=mail_options)
        reply = client.noop()
        assert reply[0] == 250
    deadline = time.monotonic() + 30
    pattern = re.compile(r"postfix/smtpd\[\d+\]: (\w+): client=")
    while time.monotonic() < deadline:
        log = oracle.log()
        originals = pattern.findall(log)
        if originals:
            original = originals[-1]
            found = re.search(rf"{original}: sender non-delivery notification: (\w+)", log)
            if found:
                new = found.group(1)
                text = oracle.postcat(new, "-bh")
                if text.strip():
                    return normalise(text, original, new)
        time.sleep(0.1)
    raise AssertionError("the private Postfix queued no notice")


def mailhorn_notice(tmp_path: Path, data: bytes, rcpts: list[str], **fields: object) -> str:
    r = rig(tmp_path, virtual_alias_maps="inline:{x@dest.example=r3@dest.example}")
    qid = queue(r, data.replace(b"\r\n", b"\n"),
                recipients=tuple(RecipientRequest(a) for a in rcpts), **fields)  # type: ignore[arg-type]
    log_all(r, qid, "bounce", "5.1.1", REASON)
    new = notify(r, qid, "failure")
    assert new is not None
    return normalise(notice(r, new)[2].decode(), qid, new)


CASES = [
    ("full-envid-expanded",
     b"Subject: test\r\nFrom: s@sender.example\r\nMessage-ID: <m1@x>\r\n\r\nhello body\r\n",
     ["x@dest.example", "r1@dest.example"], ["RET=FULL", "ENVID=env123"], {"dsn_ret": "FULL", "dsn_envid": "env123"}),
    ("hdrs-8bit",
     "Subject: t\u00e4st\r\nFrom: s@sender.example\r\nMessage-ID: <m2@x>\r\n\r\nh\u00e4llo\r\n".encode(),
     ["r1@dest.example"], ["RET=HDRS", "BODY=8BITMIME"], {"dsn_ret": "HDRS", "body_type": "8BITMIME"}),
    ("default-ret",
     b"Subject: plain\r\nMessage-ID: <m3@x>\r\n\r\nline one\r\nline two\r\n",
     ["r2@dest.example"], [], {}),
]


@pytest.mark.parametrize("name,data,rcpts,options,fields", CASES, ids=[c[0] for c in CASES])
def test_failure_notice_equals_postfix(oracle: postfix_oracle.PostfixOracle, tmp_path: Path, name: str,
                                       data: bytes, rcpts: list[str], options: list[str],
                                       fields: dict[str, object]) -> None:
    expected = postfix_notice(oracle, data, rcpts, options)
    got = mailhorn_notice(tmp_path, data, rcpts, **fields)
    assert got == expected
