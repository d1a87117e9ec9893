"""The POP3 decoder hands pipelined input over through a public call (take_unread)."""

from __future__ import annotations

from mailhorn.pop3.codec import Command, Pop3Decoder


def test_take_unread_returns_what_follows_the_decoded_command() -> None:
    dec = Pop3Decoder()
    dec.receive_data(b"PASS secret\r\nSTAT\r\nLIST")
    event = dec.next_event()
    assert isinstance(event, Command) and event.name == "PASS"
    assert dec.take_unread() == b"STAT\r\nLIST"
    assert dec.pending == 0 and dec.take_unread() == b""
    assert dec.next_event() is None
