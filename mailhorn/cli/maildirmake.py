"""``mailhorn maildirmake`` — create a Maildir, a Maildir++ folder, or a quota.

SYNOPSIS
    ``maildirmake [-q QUOTA] DIR``
    ``maildirmake -f FOLDER DIR`` / ``maildirmake -F FOLDER DIR``

DESCRIPTION
    Works as Courier's maildirmake, which the guides use
    (``maildirmake /home/suporte/Maildir``, ``maildirmake
    /home/suporte/Maildir/.Enviados``):

    * ``maildirmake DIR`` creates ``DIR`` with ``cur new tmp`` (mode 0700)
      and fails when ``DIR`` exists. When ``DIR`` is ``.Name`` inside an
      existing Maildir it is a Maildir++ folder and also gets the empty
      ``maildirfolder`` file that marks folders (README.maildirquota).
    * ``-f FOLDER`` creates the folder ``DIR/.FOLDER`` of the existing
      Maildir ``DIR``; FOLDER is the on-disk name (modified UTF-7, ``.``
      between levels). ``-F FOLDER`` takes a UTF-8 name and encodes it.
    * ``-q QUOTA`` (e.g. ``10000000S`` or ``10000000S,1000C``) writes
      ``maildirsize`` with that quota and the current usage; the Maildir may
      already exist.

    Folder names are checked as Dovecot checks mailbox names: names that
    would leave the Maildir (``..``, ``/``, a leading ``.`` or ``~``, control
    characters) are refused.

EXIT STATUS
    0 on success; 1 with ``maildirmake: fatal: …`` on standard error.
"""

from __future__ import annotations

import getopt
import os
from pathlib import Path

from mailhorn import log
from mailhorn.mailstore import folders, quota
from mailhorn.mailstore.errors import MailstoreError

USAGE = "usage: maildirmake [-q quota] [-f folder | -F folder] maildir"


def run(argv: list[str]) -> int:
    log.setup("maildirmake", stderr=True, syslog_path=None)
    try:
        opts, args = getopt.getopt(argv, "q:f:F:")
    except getopt.GetoptError as exc:
        log.fatal(f"{exc.msg}; {USAGE}")
    quota_text: str | None = None
    folder: str | None = None
    for opt, value in opts:
        if opt == "-q":
            quota_text = value
        elif opt == "-f":
            try:
                folder = folders.mutf7_decode(value)
            except ValueError as exc:
                log.fatal(f"invalid folder name {value!r}: {exc}")
        else:
            folder = value
    if len(args) != 1:
        log.fatal(USAGE)
    target = Path(args[0])
    limits: quota.QuotaLimits | None = None
    if quota_text is not None:
        try:
            limits = quota.QuotaLimits.parse(quota_text)
        except ValueError as exc:
            log.fatal(str(exc))
    try:
        if folder is not None:
            if not folders.is_maildir(target):
                log.fatal(f"{target}: not a maildir")
            folders.create_folder(target, folder)
        elif folders.is_maildir(target) and limits is not None:
            pass  # -q on an existing Maildir only installs the quota
        else:
            if target.exists() or target.is_symlink():
                log.fatal(f"{target}: File exists")
            parent = target.parent
            is_folder = target.name.startswith(".") and folders.is_maildir(parent)
            if is_folder:
                folders.validate_name(folders.mutf7_decode(target.name[1:]))
            folders.make_maildir(target, folder=is_folder)
        if limits is not None:
            quota.set_limits(target, limits)
    except (MailstoreError, ValueError) as exc:
        log.fatal(f"{target}: {exc}")
    except OSError as exc:
        log.fatal(f"{exc.filename or target}: {os.strerror(exc.errno) if exc.errno else exc}")
    return 0
