"""The SMTP client against Postfix's smtp-sink on 127.0.0.3: outcomes of each kind."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from mailhorn.delivery.request import Action
from mailhorn.delivery.smtp import make_agent
from tests.delivery.smtp_helpers import SmtpSink, make_config, make_request, run_agent


def test_normal_delivery(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path)
        [statuses] = run_agent(config, [make_request(sink.nexthop, ["b@example.net", "c@example.net"])])
        assert [s.action for s in statuses] == [Action.DELIVERED, Action.DELIVERED]
        assert statuses[0].dsn == "2.0.0"
        assert statuses[0].text == "250 2.0.0 Ok"
        assert statuses[0].relay == f"127.0.0.3[127.0.0.3]:{sink.port}"
        [dump] = sink.wait_messages(1)
        assert b"X-Mail-Args: <sender@example.org> SIZE=" not in dump  # smtp-sink has no SIZE
        assert b"X-Rcpt-Args: <b@example.net>" in dump and b"X-Rcpt-Args: <c@example.net>" in dump
        # Dot stuffing survived the trip and the body arrived whole.
        assert b"Message-ID: <1@example.org>\n\nHello.\n.leading dot\n" in dump
    finally:
        sink.stop()


def test_delivery_under_uvloop(tmp_path: Path) -> None:
    """The workers run uvloop when it is installed; its transports must do as well."""
    uvloop = pytest.importorskip("uvloop")
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path)
        [statuses] = run_agent(config, [make_request(sink.nexthop, ["b@example.net"])],
                               loop_factory=uvloop.new_event_loop)
        assert [s.action for s in statuses] == [Action.DELIVERED]
        sink.wait_messages(1)
    finally:
        sink.stop()


def test_dsn_parameters_pass_through(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path)
        request = make_request(sink.nexthop, ["b@example.net"], notify=["SUCCESS", "FAILURE"],
                               orcpt="rfc822;B+x@example.net", envid="id=1", ret="HDRS")
        [statuses] = run_agent(config, [request])
        assert statuses[0].action is Action.DELIVERED
        [dump] = sink.wait_messages(1)
        assert b"X-Mail-Args: <sender@example.org> RET=HDRS ENVID=id+3D1" in dump
        assert b"X-Rcpt-Args: <b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bx@example.net" in dump
    finally:
        sink.stop()


def test_421_at_mail_defers(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, "-Q", "mail")
    try:
        [statuses] = run_agent(make_config(tmp_path), [make_request(sink.nexthop, ["b@example.net"])])
        s = statuses[0]
        assert s.action is Action.DEFERRED
        assert s.dsn.startswith("4.")
        assert re.fullmatch(rf"host 127\.0\.0\.3\[127\.0\.0\.3\] said: 421 .* \(in reply to MAIL FROM command\)",
                            s.text), s.text
        assert sink.messages() == []
    finally:
        sink.stop()


def test_4xx_at_rcpt_defers_and_5xx_bounces(tmp_path: Path) -> None:
    soft = SmtpSink(tmp_path, "-r", "rcpt")
    hard = SmtpSink(tmp_path, "-f", "rcpt")
    try:
        config = make_config(tmp_path)
        [s1], [s2] = run_agent(config, [make_request(soft.nexthop, ["b@example.net"]),
                                        make_request(hard.nexthop, ["b@example.net"])])
        assert s1.action is Action.DEFERRED and s1.dsn == "4.3.0", s1.text
        assert s1.text == "host 127.0.0.3[127.0.0.3] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command)"
        assert s2.action is Action.BOUNCED and s2.dsn == "5.3.0"
        assert s2.text == "host 127.0.0.3[127.0.0.3] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)"
        assert s2.remote_reply == "500 5.3.0 Error: command failed"
        assert soft.messages() == [] and hard.messages() == []
    finally:
        soft.stop()
        hard.stop()


def test_5xx_at_end_of_data_bounces_once(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, "-f", ".")
    try:
        [statuses] = run_agent(make_config(tmp_path), [make_request(sink.nexthop, ["b@example.net", "c@example.net"])])
        assert [s.action for s in statuses] == [Action.BOUNCED, Action.BOUNCED]
        assert statuses[0].text.endswith("(in reply to end of DATA command)")
    finally:
        sink.stop()


def test_no_reply_to_end_of_data_defers_with_duplicate_warning(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, "-q", ".")
    try:
        [statuses] = run_agent(make_config(tmp_path), [make_request(sink.nexthop, ["b@example.net"])])
        s = statuses[0]
        assert s.action is Action.DEFERRED and s.dsn == "4.4.2"
        assert s.text == ("lost connection with 127.0.0.3[127.0.0.3] while sending end of data -- "
                          "message may be sent more than once")
        log = (tmp_path / "maillog").read_text()
        assert re.search(r"warning: 4ABCDE1: lost connection with 127\.0\.0\.3\[127\.0\.0\.3\] while sending end "
                         r"of data -- message may be sent more than once", log), log
    finally:
        sink.stop()


def test_connection_refused_defers(tmp_path: Path) -> None:
    from tests.helpers.ports import reserve_port
    port = reserve_port()
    [statuses] = run_agent(make_config(tmp_path), [make_request(f"[127.0.0.3]:{port}", ["b@example.net"])])
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.4.1"
    assert s.text == f"connect to 127.0.0.3[127.0.0.3]:{port}: Connection refused"
    assert s.relay == f"127.0.0.3[127.0.0.3]:{port}"


def test_connection_reuse_for_the_same_destination(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path, smtp_connection_cache_time_limit="60s")
        requests = [make_request(sink.nexthop, [f"u{i}@example.net"], queue_id=f"4ABC{i}") for i in range(5)]

        async def main() -> tuple[list[Action], int]:
            agent = make_agent(config, "smtp")
            actions = [(await agent.deliver(r))[0].action for r in requests]
            reused = agent.cache.reused
            await agent.close()
            return actions, reused

        actions, reused = asyncio.run(main())
        assert actions == [Action.DELIVERED] * 5
        assert reused == 4
        assert len(sink.wait_messages(5)) == 5
    finally:
        sink.stop()


def test_no_reuse_when_caching_is_off(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path, smtp_connection_cache_on_demand="no")
        requests = [make_request(sink.nexthop, [f"u{i}@example.net"]) for i in range(3)]

        async def main() -> tuple[list[str], int]:
            agent = make_agent(config, "smtp")
            texts = [(await agent.deliver(r))[0].text for r in requests]
            await agent.close()
            return texts, agent.cache.reused

        texts, reused = asyncio.run(main())
        assert texts == ["250 2.0.0 Ok"] * 3
        assert reused == 0
        assert len(sink.wait_messages(3)) == 3
    finally:
        sink.stop()


def test_without_pipelining_one_command_at_a_time(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, pipelining=False)
    try:
        [statuses] = run_agent(make_config(tmp_path), [make_request(sink.nexthop, ["b@example.net", "c@example.net"])])
        assert [s.text for s in statuses] == ["250 2.0.0 Ok", "250 2.0.0 Ok"]
        assert len(sink.wait_messages(1)) == 1
    finally:
        sink.stop()


def test_5xx_greeting_is_skipped_then_deferred(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path, "-f", "connect")
    try:
        [[s]] = run_agent(make_config(tmp_path), [make_request(sink.nexthop, ["b@example.net"])])
        assert s.action is Action.DEFERRED and s.dsn == "4.3.0"
        assert s.text == "host 127.0.0.3[127.0.0.3] refused to talk to me: 500 5.3.0 Error: command failed"
        [[hard]] = run_agent(make_config(tmp_path, smtp_skip_5xx_greeting="no"),
                             [make_request(sink.nexthop, ["b@example.net"])])
        assert hard.action is Action.BOUNCED and hard.dsn == "5.3.0"
    finally:
        sink.stop()


def test_bind_address_and_helo_name(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path, smtp_bind_address="127.0.0.5", smtp_helo_name="out.example.test")
        [[s]] = run_agent(config, [make_request(sink.nexthop, ["b@example.net"])])
        assert s.action is Action.DELIVERED
        [dump] = sink.wait_messages(1)
        assert b"X-Client-Addr: 127.0.0.5\n" in dump and b"X-Helo-Args: out.example.test\n" in dump
    finally:
        sink.stop()
