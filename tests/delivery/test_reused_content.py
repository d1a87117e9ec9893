"""ReusedContent: a small message is read from its queue file once per request."""

from __future__ import annotations

from collections.abc import Iterator

from mailhorn.delivery.request import REUSED_CONTENT_LIMIT, ReusedContent


class Opener:
    """Counts how often the content is opened (stands for a queue file read)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.opened = 0

    def __call__(self) -> Iterator[bytes]:
        self.opened += 1
        yield from self.chunks


def test_small_content_is_read_once_and_replayed() -> None:
    opener = Opener([b"Subject: x\n", b"\n", b"body\n"])
    content = ReusedContent(opener, 16)
    assert b"".join(content()) == b"Subject: x\n\nbody\n"
    assert b"".join(content()) == b"Subject: x\n\nbody\n"
    assert opener.opened == 1


def test_nothing_is_read_before_the_first_chunk_is_asked_for() -> None:
    opener = Opener([b"x\n"])
    content = ReusedContent(opener, 2)
    chunks = content()
    assert opener.opened == 0
    assert next(chunks) == b"x\n"
    assert opener.opened == 1


def test_a_partial_first_read_still_replays_the_whole_message() -> None:
    opener = Opener([b"From: a\n\n", b"rest\n"])
    content = ReusedContent(opener, 14)
    assert next(content()) == b"From: a\n\n"  # a header scan stops early
    assert list(content()) == [b"From: a\n\n", b"rest\n"]
    assert opener.opened == 1


def test_large_content_streams_from_the_file_every_time() -> None:
    opener = Opener([b"x" * 1024])
    content = ReusedContent(opener, REUSED_CONTENT_LIMIT + 1)
    for _ in range(3):
        assert b"".join(content()) == b"x" * 1024
    assert opener.opened == 3
