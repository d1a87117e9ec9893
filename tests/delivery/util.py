"""Helpers for the delivery tests: real queue files and DeliveryRequests built from them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from mailhorn.config.load import Config
from mailhorn.config.maincf import parse_main_cf
from mailhorn.delivery.request import DeliveryRecipient, DeliveryRequest, RecipientStatus
from mailhorn.queue.store import QueueStore

MESSAGE = (b"Received: from client.example (localhost [127.0.0.1])\n"
           b"From: Sender <sender@example.org>\n"
           b"To: someone@example.com\n"
           b"Subject: delivery test\n"
           b"\n"
           b"first body line\n"
           b"From the start of a line, mbox needs quoting\n"
           b"last line\n")


def make_config(tmp_path: Path, text: str) -> Config:
    """A Config from main.cf text, with the queue under ``tmp_path``."""
    confdir = tmp_path / "etc"
    confdir.mkdir(exist_ok=True)
    main = f"queue_directory = {tmp_path / 'queue'}\nmyhostname = mx.example.com\nmydomain = example.com\n" + text
    (confdir / "main.cf").write_text(main)
    return Config(parse_main_cf(main, str(confdir / "main.cf")), config_dir=str(confdir))


def make_store(config: Config) -> QueueStore:
    store = QueueStore.from_config(config)
    store.setup()
    return store


def queue_message(store: QueueStore, recipients: list[tuple[str, str | None]], *, sender: str = "sender@example.org",
                  content: bytes = MESSAGE, attributes: dict[str, str] | None = None) -> str:
    """Write and commit one queue file (recipient, orig_rcpt pairs); returns its queue ID."""
    with store.writer() as w:
        w.create_time(1700000000)
        w.attribute("rewrite_context", "remote")
        for name, value in (attributes or {}).items():
            w.attribute(name, value)
        w.sender(sender)
        for address, orig in recipients:
            w.recipient(address, orig_rcpt=orig)
        w.write(content)
        w.end_content()
        return w.commit()


def request_for(store: QueueStore, queue_id: str, transport: str = "local", queue: str = "incoming") -> DeliveryRequest:
    """The DeliveryRequest the queue manager would build for a queue file."""
    qf = store.read(queue, queue_id)

    def open_content() -> Iterator[bytes]:
        return store.content(queue, queue_id, qf)

    return DeliveryRequest(
        queue_id=queue_id, queue_name=queue, transport=transport, nexthop="example.com", sender=qf.sender,
        recipients=tuple(DeliveryRecipient(r.address, r.offset, r.orig_rcpt) for r in qf.pending),
        open_content=open_content, content_size=qf.content_size, arrival_time=float(qf.arrival_time[0]),
        attributes=dict(qf.attributes))


def content_of(store: QueueStore, queue_id: str, queue: str = "incoming") -> bytes:
    qf = store.read(queue, queue_id)
    return b"".join(store.content(queue, queue_id, qf))


def deliver_local(config: object, store: QueueStore, rcpts: list[str]) -> list[RecipientStatus]:
    """Queue one message to ``rcpts`` and hand it to a local(8) agent (``config``: a Config); its statuses."""
    from mailhorn.delivery.local import make_agent

    qid = queue_message(store, [(r, r) for r in rcpts])
    agent = make_agent(cast(Config, config), "local")

    async def go() -> list[RecipientStatus]:
        try:
            return list(await agent.deliver(request_for(store, qid)))
        finally:
            await agent.close()

    return asyncio.run(go())
