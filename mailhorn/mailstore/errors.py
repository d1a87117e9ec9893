"""Errors of the mail store.

Delivery agents map them to replies: :class:`DiskFull` to a deferral
(``452 4.3.1`` / ``4.3.1 Insufficient system storage``), :class:`QuotaExceeded`
to ``5.2.2``/``4.2.2`` as the agent's quota policy says, anything else that is an
:class:`OSError` or :class:`MailstoreError` to a temporary failure ``4.3.0``.
"""

from __future__ import annotations


class MailstoreError(Exception):
    """Base class of the store's own errors."""


class InvalidFolderName(MailstoreError, ValueError):
    """A mailbox name that breaks the Maildir++ naming rules (or would leave the root)."""


class NoSuchFolder(MailstoreError):
    """The named mailbox does not exist."""


class FolderExistsError(MailstoreError):
    """The mailbox to create already exists."""


class NoSuchMessage(MailstoreError):
    """The message is gone (expunged, perhaps by another process)."""


class QuotaExceeded(MailstoreError):
    """Delivering would take the Maildir++ over its ``maildirsize`` limits."""

    def __init__(self, message: str, *, used_bytes: int, used_count: int,
                 limit_bytes: int | None, limit_count: int | None) -> None:
        super().__init__(message)
        self.used_bytes = used_bytes
        self.used_count = used_count
        self.limit_bytes = limit_bytes
        self.limit_count = limit_count


class DiskFull(MailstoreError):
    """The file system is full or the user's disk quota is used up (ENOSPC/EDQUOT).

    A temporary condition: deliveries defer with ``452 4.3.1``.
    """


class LockTimeout(MailstoreError):
    """A dot-lock (``dovecot-uidlist.lock``, ``maildirsize.lock``) could not be had in time."""


class CorruptFile(MailstoreError):
    """A control file (``dovecot-uidlist``, ``dovecot-keywords``) is not in its format."""
