"""Helpers for cleanup tests: a configured service on a queue in tmp_path, and its log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailhorn import log
from mailhorn.cleanup.cleanup import Cleanup
from mailhorn.cleanup.request import CleanupRequest, CleanupResult, ClientInfo, RecipientRequest, Source
from mailhorn.config.load import Config
from mailhorn.queue.queuefile import QueueFile
from mailhorn.queue.store import QueueStore

CLIENT = ClientInfo(name="localhost", addr="127.0.0.1", port="4711", helo="client.example",
                    protocol="ESMTP")


@dataclass
class Rig:
    """A cleanup service, its queue and its log file."""

    root: Path
    config: Config
    store: QueueStore
    cleanup: Cleanup
    maillog: Path

    def log_lines(self) -> list[str]:
        """Log records without the time/host/tag prefix."""
        if not self.maillog.exists():
            return []
        return [line.split("]: ", 1)[1] for line in self.maillog.read_text().splitlines()]

    def submit(self, content: bytes | Iterable[bytes], *, sender: str = "a@example.com",
               recipients: tuple[str, ...] = ("b@example.net",), client: ClientInfo = CLIENT,
               source: Source = Source.SMTPD, **fields: object) -> CleanupResult:
        request = CleanupRequest(source, sender, tuple(RecipientRequest(r) for r in recipients),
                                 client=client, **fields)  # type: ignore[arg-type]
        chunks = [content] if isinstance(content, bytes) else content

        async def go() -> CleanupResult:
            session = self.cleanup.open(request)
            for chunk in chunks:
                await session.write(chunk)
            return await session.finish()

        return asyncio.run(go())

    def read(self, queue_id: str, queue: str = "incoming") -> tuple[QueueFile, bytes]:
        qf = self.store.read(queue, queue_id)
        return qf, b"".join(self.store.content(queue, queue_id, qf))


def make_rig(root: Path, **params: str) -> Rig:
    settings = {"queue_directory": str(root / "queue"), "myhostname": "mail.example.org",
                "mydomain": "example.org", "myorigin": "$myhostname"}
    settings.update(params)
    config = Config(overrides=settings)
    store = QueueStore.from_config(config)
    store.setup()
    maillog = root / "maillog"
    log.setup("cleanup", maillog_file=str(maillog), syslog_path=None)
    return Rig(root, config, store, Cleanup(config, store), maillog)


def headers_of(content: bytes) -> list[str]:
    """The logical header lines of stored content (folded lines kept joined by \\n)."""
    head = content.split(b"\n\n", 1)[0].decode()
    out: list[str] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


def chunked(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    at = 0
    while at < len(data):
        n = next(sizes)
        yield data[at:at + n]
        at += n
