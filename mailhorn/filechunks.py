"""An open file's content handed out as an iterator of chunks, which owns the file.

A queue file's message or a Maildir message is streamed to its reader in
bounded chunks, and the reader may stop early (a bounce returns the headers
only; a delivery fails half way). The file must then be closed all the same:
:class:`FileChunks` closes it when the chunks run out, when :meth:`close` is
called, or when the iterator is dropped. (A generator that reads the file
inside ``with`` does the last only when it runs as Python; compiled by
``scripts/build_native.py``, a dropped generator never runs its ``finally``
and the file would be left to the garbage collector.)

Parameters read: none. Errors: whatever reading the file raises, from
``__next__``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["FileChunks", "read_chunks"]


class FileChunks:
    """Iterate ``chunks`` (read from ``stream``); close ``stream`` at the end, on close(), or when dropped."""

    def __init__(self, stream: BinaryIO, chunks: Iterator[bytes]) -> None:
        self._stream = stream
        self._chunks = chunks

    def __iter__(self) -> FileChunks:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:  # StopIteration at the end, or a read error
            self.close()
            raise

    def close(self) -> None:
        """Close the file (again is harmless)."""
        self._stream.close()

    def __del__(self) -> None:
        self.close()


def read_chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """``stream``'s bytes from where it stands to its end, ``size`` at a time."""
    while chunk := stream.read(size):
        yield chunk
