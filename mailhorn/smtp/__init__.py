"""SMTP and LMTP protocol engines without I/O (design.md §4, §5 rule 1).

- `mailhorn.smtp.reply`: `Reply`, `SmtpReplyError`, Postfix's reply texts.
- `mailhorn.smtp.lines`: command-line framing with Postfix's length rule.
- `mailhorn.smtp.commands`: command parsing into typed commands.
- `mailhorn.smtp.data`: DATA dot-unstuffing / end detection, BDAT counting.
- `mailhorn.smtp.codec`: `ServerEngine`, the server-side state machine.
- `mailhorn.smtp.client`: `ReplyParser`, the client side.

No module here opens a socket or uses asyncio; smtpd and the SMTP/LMTP
client move the bytes and run the timers.
"""

from mailhorn.smtp.client import ReplyParser, ReplySyntaxError
from mailhorn.smtp.codec import (
    AuthResponse,
    BodyChunk,
    BodyEnd,
    CommandEvent,
    EngineStateError,
    Event,
    Rejected,
    ServerEngine,
)
from mailhorn.smtp.reply import Blame, Reply, SmtpReplyError

__all__ = [
    "AuthResponse",
    "Blame",
    "BodyChunk",
    "BodyEnd",
    "CommandEvent",
    "EngineStateError",
    "Event",
    "Rejected",
    "Reply",
    "ReplyParser",
    "ReplySyntaxError",
    "ServerEngine",
    "SmtpReplyError",
]
