"""IMAP4rev1 (RFC 3501) for the mail store.

* :mod:`.codec` — the sans-I/O engine: bytes in, typed command events out;
  responses to bytes;
* :mod:`.parse` — the command grammar (tags, atoms, strings, literals,
  lists, sequence sets, search keys, fetch attributes, flags, mailbox
  names in modified UTF-7);
* :mod:`.message` — MIME structure, ENVELOPE, BODYSTRUCTURE and
  ``BODY[section]<partial>`` as Dovecot renders them;
* :mod:`.search` — SEARCH key evaluation;
* :mod:`.rfc822` — header tokens (addresses, MIME types, parameters);
* :mod:`.quote` — how strings are written in responses.
"""
