"""Streaming: any chunking gives the same queue file, limits hold, memory stays bounded."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import random
import tracemalloc
from pathlib import Path

from mailhorn.cleanup.cleanup import Cleanup
from mailhorn.cleanup.request import CleanupRequest, Outcome, RecipientRequest, Source
from mailhorn.queue.store import FsHooks, QueueStore
from tests.cleanup.util import CLIENT, chunked, headers_of, make_rig

MESSAGE = (b"Subject: chunks\r\nX-Long: a\r\n b\r\n\tc\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"xx\"\r\n\r\npreamble\r\n--xx\r\n"
           b"Content-Type: text/plain\r\n\r\npart one\r\n--xx--\r\nepilogue\r\n")


def test_chunking_does_not_change_the_result(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    contents = set()
    rng = random.Random(7)
    for sizes in ([len(MESSAGE)], [1], [2, 3], [rng.randint(1, 9) for _ in range(400)]):
        result = rig.submit(chunked(MESSAGE, itertools.cycle(sizes)))
        assert result.queue_id
        _qf, content = rig.read(result.queue_id)
        # The added Received:, Message-Id: and Date: carry the time of each
        # submission; everything else must not depend on the chunking.
        stable = content.replace(result.queue_id.encode(), b"ID").split(b"\n", 3)[3]
        contents.add(b"\n".join(line for line in stable.split(b"\n")
                                if not line.startswith((b"Message-Id:", b"Date:"))))
    assert len(contents) == 1
    body = contents.pop()
    assert b"X-Long: a\n b\n\tc\n" in body and body.endswith(b"\n--xx--\nepilogue\n")


def test_mime_part_headers_go_to_mime_header_checks(tmp_path: Path) -> None:
    (tmp_path / "mh").write_text("/^Content-Type: text\\/plain/ WARN part seen\n")
    (tmp_path / "bc").write_text("/^Content-Type:/ WARN body saw a header\n")
    rig = make_rig(tmp_path, mime_header_checks=f"regexp:{tmp_path}/mh", body_checks=f"regexp:{tmp_path}/bc")
    result = rig.submit(MESSAGE)
    warnings = [line.split(": ", 2)[1] + ": " + line.rsplit(": ", 1)[1] for line in rig.log_lines()
                if ": warning: " in line]
    assert warnings == ["warning: part seen"]
    assert result.outcome is Outcome.QUEUED
    rig2 = make_rig(tmp_path / "nomime", mime_header_checks=f"regexp:{tmp_path}/mh",
                    body_checks=f"regexp:{tmp_path}/bc", disable_mime_input_processing="yes")
    rig2.submit(MESSAGE)
    assert [line for line in rig2.log_lines() if "body saw a header" in line]


def test_header_size_limit_truncates_instead_of_rejecting(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, header_size_limit="1000")
    long_value = b"x" * 600
    data = b"Subject: s\r\nX-Big: " + long_value + b"\r\n " + long_value + b"\r\n\r\nbody\r\n"
    result = rig.submit(data)
    assert result.outcome is Outcome.QUEUED and result.queue_id
    _qf, content = rig.read(result.queue_id)
    big = next(h for h in headers_of(content) if h.startswith("X-Big:"))
    assert len(big) == 1000
    assert content.endswith(b"\n\nbody\n")


def test_long_lines_are_kept_whole_in_storage(tmp_path: Path) -> None:
    (tmp_path / "bc").write_text("/^y+$/ WARN piece\n")
    rig = make_rig(tmp_path, line_length_limit="100", body_checks=f"regexp:{tmp_path}/bc")
    line = b"y" * 250
    result = rig.submit(b"Subject: s\r\n\r\n" + line + b"\r\nend\r\n")
    assert result.queue_id
    _qf, content = rig.read(result.queue_id)
    assert content.endswith(b"\n\n" + line + b"\nend\n")
    # body_checks see the pieces, as Postfix's record-sized pieces.
    assert len([x for x in rig.log_lines() if x.endswith(": piece")]) == 3


def test_write_error_gives_451_and_leaves_nothing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    store = QueueStore.from_config(rig.config, hooks=FsHooks(fsync=failing_fsync))
    rig.cleanup = Cleanup(rig.config, store)
    result = rig.submit(b"Subject: s\r\n\r\nbody\r\n")
    assert result.outcome is Outcome.REJECTED
    assert result.reply is not None and str(result.reply) == "451 4.3.0 Error: queue file write error"
    assert os.listdir(tmp_path / "queue" / "incoming") == []


def test_300mb_message_streams_with_bounded_memory(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    line = b"0123456789" * 7 + b"\r\n"
    chunk = line * (1024 * 1024 // len(line))
    total_chunks = 300 * 1024 * 1024 // len(chunk)
    request = CleanupRequest(Source.SMTPD, "a@example.com", (RecipientRequest("b@example.net"),), client=CLIENT)

    async def go() -> tuple[str | None, int]:
        session = rig.cleanup.open(request)
        await session.write(b"Subject: big\r\n\r\n")
        tracemalloc.start()
        try:
            for _ in range(total_chunks):
                await session.write(chunk)
            result = await session.finish()
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return result.queue_id, peak

    queue_id, peak = asyncio.run(go())
    assert queue_id
    assert peak < 16 * 1024 * 1024
    qf = rig.store.read("incoming", queue_id, verify_content=False)
    assert qf.content_size > total_chunks * len(chunk) * 71 // 72
