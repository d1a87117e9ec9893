"""The mail store: Maildir exactly as Dovecot lays it out.

One library for local and virtual delivery, POP3 and IMAP, so that Dovecot
and mailhorn can open the same mailboxes (design.md §1 "Store"):

* :mod:`.maildir` — delivery (``tmp/`` → ``new/``, ``,S=`` ``,W=`` sizes),
  listing with UIDs, ``:2,`` flags, expunge;
* :mod:`.uidlist` — ``dovecot-uidlist`` version 3 under ``dovecot-uidlist.lock``;
* :mod:`.keywords` — ``dovecot-keywords`` (letters ``a``..``z``);
* :mod:`.quota` — Maildir++ ``maildirsize``;
* :mod:`.folders` — Maildir++ ``.Name.Sub`` folders, modified UTF-7 names,
  ``subscriptions``, special-use names;
* :mod:`.lock` — Dovecot-compatible dot-locks; :mod:`.errors` — exceptions.
"""

from mailhorn.mailstore.errors import (
    CorruptFile,
    DiskFull,
    FolderExistsError,
    InvalidFolderName,
    LockTimeout,
    MailstoreError,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
)
from mailhorn.mailstore.folders import (
    create_folder,
    folder_path,
    list_folders,
    read_subscriptions,
    subscribe,
    unsubscribe,
    validate_name,
    write_subscriptions,
)
from mailhorn.mailstore.maildir import Mailbox, Message, open_mailbox
from mailhorn.mailstore.writer import Delivered, deliver
from mailhorn.mailstore.quota import QuotaLimits, QuotaUsage

__all__ = [
    "CorruptFile", "DiskFull", "FolderExistsError", "InvalidFolderName", "LockTimeout",
    "MailstoreError", "NoSuchFolder", "NoSuchMessage", "QuotaExceeded",
    "create_folder", "folder_path", "list_folders", "read_subscriptions", "subscribe",
    "unsubscribe", "validate_name", "write_subscriptions",
    "Delivered", "Mailbox", "Message", "deliver", "open_mailbox",
    "QuotaLimits", "QuotaUsage",
]
