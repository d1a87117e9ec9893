"""pipe(8): attributes, macro expansion, the message the command sees, and exit status mapping.

Commands really run (as ``nobody`` when the tests run as root)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailhorn.config.mastercf import parse_master_cf
from mailhorn.delivery.pipe import PipeAgent, expand_argv, make_agent, parse_attributes
from mailhorn.delivery.request import Action, DeliveryRecipient, DeliveryRequest, RecipientStatus
from tests.qmgr.util import BODY, MASTER_CF, command_user, make_setup, run_incoming

SEED = "maildrop unix - n n - - pipe flags=DRhu user=vmail argv=/usr/bin/maildrop -d ${recipient}"


def test_seed_maildrop_entry_parses_and_expands() -> None:
    service = parse_master_cf(SEED + "\n", "master.cf").services[0]
    attrs = parse_attributes(service.args)
    assert attrs.argv == ("/usr/bin/maildrop", "-d", "${recipient}")
    assert attrs.user == "vmail" and attrs.flags == frozenset("DRhu")
    rcpts = [DeliveryRecipient("Joe+Box@Example.COM", 1)]
    assert expand_argv(attrs.argv, {}, rcpts, attrs.flags, "+") == ["/usr/bin/maildrop", "-d", "joe+box@example.com"]


def test_macros_repeat_per_recipient() -> None:
    # A local part that would be empty without its extension is not split (Postfix 3 split_addr).
    rcpts = [DeliveryRecipient("a+x@Ex.org", 1, orig_rcpt="o@ex.org"), DeliveryRecipient("+b@ex.org", 2)]
    message = {"sender": "s@ex.org", "nexthop": "Ex.org", "size": "5", "queue_id": "Q"}
    argv = ["cmd", "-f", "$sender", "${nexthop}", "$(size)", "$$x", "-u", "${user}", "-e", "${extension}",
            "${mailbox}@${domain}", "${original_recipient}"]
    assert expand_argv(argv, message, rcpts, frozenset(), "+") == [
        "cmd", "-f", "s@ex.org", "Ex.org", "5", "$x", "-u", "a", "+b", "-e", "x", "",
        "a+x@Ex.org", "+b@ex.org", "o@ex.org", "+b@ex.org"]


def agent(tmp_path: Path, attributes: str, main_cf: str = "") -> PipeAgent:
    s = make_setup(tmp_path, main_cf)
    service = parse_master_cf(f"p unix - n n - - pipe user={command_user()} {attributes}\n", "master.cf").services[0]
    made = make_agent(s.config.with_overrides({"service_name": "p"}), "p", service.args)
    assert isinstance(made, PipeAgent)
    return made


def request(*rcpts: str, body: bytes = BODY) -> DeliveryRequest:
    return DeliveryRequest(
        queue_id="3F1A92C0D4", queue_name="active", transport="p", nexthop="example.com",
        sender="a@example.org", recipients=tuple(DeliveryRecipient(r, 100 + i) for i, r in enumerate(rcpts)),
        open_content=lambda: iter([body]), content_size=len(body), arrival_time=time.time())


def run(a: PipeAgent, req: DeliveryRequest) -> Sequence[RecipientStatus]:
    return asyncio.run(a.deliver(req))


@pytest.mark.parametrize(("script", "action", "dsn", "text"), [
    ("exit 0", Action.RELAYED, "2.0.0", "delivered via p service"),
    ("echo fine", Action.RELAYED, "2.0.0", "delivered via p service (fine)"),
    ("exit 75", Action.DEFERRED, "4.3.0", "temporary failure"),
    ("exit 67", Action.BOUNCED, "5.1.1", "user unknown"),
    ("echo oops; exit 69", Action.BOUNCED, "5.3.0", "service unavailable. Command output: oops"),
    ("echo 5.2.2 mailbox full; exit 1", Action.BOUNCED, "5.2.2", "mailbox full"),
    ("echo 4.2.1 busy; exit 1", Action.DEFERRED, "4.2.1", "busy"),
    ("echo oops; exit 3", Action.BOUNCED, "5.3.0", 'Command died with status 3: "/bin/sh". Command output: oops'),
    ("kill -9 $$$$", Action.DEFERRED, "4.3.0", 'Command died with signal 9: "/bin/sh"'),
])
def test_exit_status_mapping(tmp_path: Path, script: str, action: Action, dsn: str, text: str) -> None:
    a = agent(tmp_path, f"argv=/bin/sh -c {{{script}}}")
    [status] = run(a, request("r@example.com"))
    assert (status.action, status.dsn, status.text, status.relay) == (action, dsn, text, "p")


def test_final_delivery_flag_size_limit_and_loop(tmp_path: Path) -> None:
    [ok] = run(agent(tmp_path / "x", "flags=X argv=/bin/true"), request("r@example.com"))
    assert ok.action is Action.DELIVERED
    [big] = run(agent(tmp_path / "s", "size=10 argv=/bin/true"), request("r@example.com"))
    assert (big.action, big.dsn, big.text) == (Action.BOUNCED, "5.2.3", "message too large")
    looped = b"Delivered-To: R@Example.com\nSubject: x\n\nbody\n"
    [loop] = run(agent(tmp_path / "l", "flags=D argv=/bin/true"), request("r@example.com", body=looped))
    assert (loop.action, loop.dsn, loop.text) == (Action.BOUNCED, "5.4.6", "mail forwarding loop for r@example.com")
    # D with two recipients is a configuration error: deferred.
    two = run(agent(tmp_path / "d", "flags=D argv=/bin/true"), request("r@example.com", "s@example.com"))
    assert {(s.action, s.dsn, s.text) for s in two} == {(Action.DEFERRED, "4.3.5", "mail system configuration error")}
    [bad] = run(agent(tmp_path / "m", "argv=/bin/echo ${bogus}"), request("r@example.com"))
    assert (bad.action, bad.dsn) == (Action.DEFERRED, "4.3.5")


def test_time_limit_and_status_filter(tmp_path: Path) -> None:
    slow = agent(tmp_path / "t", "argv=/bin/sleep 30", "p_time_limit = 1s\n")
    started = time.monotonic()
    [status] = run(slow, request("r@example.com"))
    assert time.monotonic() - started < 20
    assert (status.action, status.dsn, status.text) == (
        Action.BOUNCED, "5.3.0", 'Command time limit exceeded: "/bin/sleep"')
    rules = tmp_path / "filter"
    rules.write_text("/^5\\.1\\.1 (.*)/ 4.1.1 $1 (retry later)\n")
    soft = agent(tmp_path / "f", "argv=/bin/sh -c {exit 67}", f"pipe_delivery_status_filter = regexp:{rules}\n")
    [status] = run(soft, request("r@example.com"))
    assert (status.action, status.dsn, status.text) == (Action.DEFERRED, "4.1.1", "user unknown (retry later)")


def test_pipe_through_the_queue_manager(tmp_path: Path, shared_dir: Path) -> None:
    table = tmp_path / "transport"
    table.write_text("p@example.com pipetest:\nq+ext@example.com pipetest:\n")
    master = MASTER_CF + (
        f"pipetest unix - n n - - pipe flags=FRODX. user={command_user()} argv=/bin/sh -c "
        "{cat > \"$$0\"; printf '%s\\n' \"$$@\" > \"$$0.args\"} "
        f"{shared_dir}/${{user}}.msg ${{sender}} ${{recipient}} ${{extension}} ${{nexthop}}\n")
    s = make_setup(tmp_path, f"transport_maps = texthash:{table}\npipetest_destination_recipient_limit = 1\n"
                   "recipient_delimiter = +\n",
                   master_cf=master)
    body = b"Subject: dots\n\n.leading dot\nFrom the start\n"
    queue_id = s.submit("p@example.com", "q+ext@example.com", body=body)
    qm = s.manager()

    run_incoming(qm)
    assert f"qmgr: {queue_id}: removed" in s.tagged()
    p = (shared_dir / "p.msg").read_bytes().split(b"\n")
    assert p[0].startswith(b"From a@example.org  ")
    assert p[1:4] == [b"Return-Path: <a@example.org>", b"X-Original-To: p@example.com", b"Delivered-To: p@example.com"]
    assert p[4:8] == [b"Subject: dots", b"", b"..leading dot", b"From the start"]
    assert (shared_dir / "q.msg.args").read_text().split("\n")[:4] == ["a@example.org", "q+ext@example.com", "ext",
                                                                      "example.com"]
    if os.geteuid() == 0:
        assert (shared_dir / "p.msg").stat().st_uid == 65534
    sent = [t for t in s.tagged() if t.startswith("pipe: ")]
    assert len(sent) == 2 and all("relay=pipetest, " in t and "status=sent (delivered via pipetest service)" in t
                                  for t in sent)
