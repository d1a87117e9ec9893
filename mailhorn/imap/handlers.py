"""The IMAP command handlers and the explicit table that names them (design.md §5 rule 2).

What it does
    :data:`HANDLERS` maps each command name of
    :data:`mailhorn.imap.commands.COMMANDS` to an ``async`` function
    ``handler(session, tag, command, uid) -> bytes`` that writes its
    untagged responses through the session and returns the tagged one. The
    server has already checked the session state; after the handler it
    sends the mailbox updates, then the tagged answer.

    Texts are Dovecot's (``Select completed``, ``Mailbox doesn't exist: X``,
    ``[TRYCREATE]``, ``[APPENDUID v u]``, ``[COPYUID v a b]``, …) so that
    clients written against Dovecot see what they expect. Folder-level work
    (LIST patterns, RENAME, STATUS, quota) is in :mod:`mailhorn.imap.listing`;
    FETCH item assembly is in :mod:`mailhorn.imap.fetch`.

    APPEND is framed by the codec: :func:`append_start` checks the state
    and the mailbox before the message is read (``accept_append`` /
    ``reject_append``), the message is spooled to a temporary file
    (bounded memory) and :func:`append_end` delivers it into the Maildir.

Errors
    Mail store errors propagate to the server, which answers them with
    :func:`mailhorn.imap.codec.store_error`.
"""

from __future__ import annotations

import asyncio
import bisect
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from mailhorn.auth import sasl
from mailhorn.imap import listing
from mailhorn.imap.codec import AppendEnd, AppendStart, ContinuationLine, bad_command, fetch_response, store_error, tagged
from mailhorn.imap.commands import APPEND_STATES
from mailhorn.imap.fetch import fetch_items, load_message, needs_message, rfc822_size, sets_seen
from mailhorn.imap.mailbox import LETTER_OF, Entry, SelectedMailbox, flags_of, format_flags, notify_path
from mailhorn.imap.parse import (
    Authenticate,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    GetQuota,
    GetQuotaRoot,
    ListCmd,
    Login,
    Rename,
    Search,
    Select,
    SeqSet,
    Status,
    Store,
    Subscribe,
)
from mailhorn.imap.search import BadCharset, Candidate, Context, matches
from mailhorn.imap.state import Phase, SessionClosed, allowed, refusal
from mailhorn.iopool import offload
from mailhorn.mailstore import folders
from mailhorn.mailstore.errors import InvalidFolderName, NoSuchMessage
from mailhorn.mailstore.keywords import valid_keyword
from mailhorn.mailstore.maildir import Mailbox, Message
from mailhorn.mailstore.writer import deliver
from mailhorn.mailstore.quota import QuotaLimits

if TYPE_CHECKING:
    from mailhorn.imap.server import ImapSession

Handler = Callable[["ImapSession", bytes, Command, bool], Awaitable[bytes]]

_EXPUNGEISSUED = "Some of the requested messages no longer exist."


def _ok(tag: bytes, text: str, code: str | None = None) -> bytes:
    return tagged(tag, "OK", text, code)


def _root(s: ImapSession) -> Path:
    return Path(s.user.maildir)


def _limits(s: ImapSession) -> QuotaLimits | None:
    return QuotaLimits(storage=s.user.quota_bytes) if s.user.quota_bytes else None


def _view(s: ImapSession) -> SelectedMailbox:
    view = s.state.selected
    assert view is not None
    return view


# --- any state ------------------------------------------------------------------------------

async def h_capability(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    s.write(b"* CAPABILITY " + s.capabilities().encode() + b"\r\n")
    return _ok(tag, "Capability completed.")


async def h_noop(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    return _ok(tag, "NOOP completed.")


async def h_logout(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    s.write(b"* BYE Logging out\r\n")
    if s.state.selected is not None:
        s.state.selected.close()
        s.state.selected = None
    s.state.phase = Phase.LOGOUT
    return _ok(tag, "Logout completed.")


async def h_id(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    s.write(b'* ID ("name" "mailhorn")\r\n')
    return _ok(tag, "ID completed.")


# --- not authenticated ----------------------------------------------------------------------

async def h_starttls(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    if s.state.tls:
        return tagged(tag, "BAD", "TLS is already active.")
    if not s.starttls_offered:
        return tagged(tag, "BAD", "TLS support isn't enabled.")
    s.write(_ok(tag, "Begin TLS negotiation now."))
    await s.start_tls()
    return b""


_PRIVACY = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."


async def h_login(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    login = cast(Login, cmd)
    if not s.plaintext_allowed:
        s.state.auth_attempts += 1
        return tagged(tag, "NO", _PRIVACY, "PRIVACYREQUIRED")
    user = login.user.decode("utf-8", "replace")
    result = await s.shared.authenticator.authenticate(user, login.password, s.rip, "imap")
    return await s.finish_login(tag, user, "PLAIN", result)


async def h_authenticate(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    auth = cast(Authenticate, cmd)
    configured = sasl.mechanisms_from_config(s.config)
    if auth.mechanism not in configured:
        return tagged(tag, "NO", "Unsupported authentication mechanism.")
    if auth.mechanism not in sasl.offered_mechanisms(configured, s.plaintext_allowed):
        s.state.auth_attempts += 1
        return tagged(tag, "NO", _PRIVACY, "PRIVACYREQUIRED")
    mech = sasl.new_mechanism(auth.mechanism, s.settings.hostname)
    initial = auth.initial_response.decode("ascii") if auth.initial_response is not None else None
    try:
        step = mech.start(initial)
        while isinstance(step, sasl.Challenge):
            s.write(b"+ " + step.encoded().encode("ascii") + b"\r\n")
            await s.drain()
            line = await s.read_continuation()
            if line.too_long:
                return tagged(tag, "BAD", "Authentication response too large")
            step = mech.step(line.data.decode("ascii", "replace"))
    except sasl.SaslCancelled:
        return tagged(tag, "BAD", "Authentication aborted by client.")
    except sasl.SaslSyntaxError:
        return tagged(tag, "BAD", "Invalid base64 data in continued response")
    except sasl.SaslRefused:
        s.state.auth_attempts += 1
        return tagged(tag, "NO", "Authentication failed.", "AUTHENTICATIONFAILED")
    result = await sasl.check(s.shared.authenticator, step, s.rip, "imap")
    return await s.finish_login(tag, step.authcid, auth.mechanism, result)


# --- authenticated --------------------------------------------------------------------------

async def h_enable(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    cast(Enable, cmd)
    s.write(b"* ENABLED\r\n")  # RFC 5161 §3.1: none of the extensions offered needs enabling
    return _ok(tag, "Enabled.")


def _unselect(s: ImapSession) -> None:
    if s.state.selected is not None:
        s.state.selected.close()
        s.state.selected = None
    if s.state.phase is Phase.SELECTED:
        s.state.phase = Phase.AUTHENTICATED


async def h_select(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    sel = cast(Select, cmd)
    _unselect(s)  # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected
    path = folders.folder_path(_root(s), sel.mailbox)
    if not folders.is_maildir(path):
        return tagged(tag, "NO", f"Mailbox doesn't exist: {sel.mailbox}", "NONEXISTENT")
    view = SelectedMailbox(Mailbox(_root(s), folders.validate_name(sel.mailbox)), sel.readonly)
    try:
        lines = await offload(view.open)
    except BaseException:
        view.close()
        raise
    for line in lines:
        s.write(line)
    s.state.selected = view
    s.state.phase = Phase.SELECTED
    if sel.readonly:
        return _ok(tag, "Examine completed.", "READ-ONLY")
    return _ok(tag, "Select completed.", "READ-WRITE")


async def h_create(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    name = cast(Create, cmd).mailbox
    if folders.is_inbox(name.rstrip(folders.SEPARATOR)):
        return tagged(tag, "NO", "Mailbox already exists", "ALREADYEXISTS")
    await offload(folders.create_folder, _root(s), name)
    return _ok(tag, "Create completed.")


async def h_delete(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    name = cast(Delete, cmd).mailbox
    if folders.is_inbox(name):
        return tagged(tag, "NO", "INBOX can't be deleted.")
    path = folders.folder_path(_root(s), name)
    view = s.state.selected
    if view is not None and view.store.path == path:
        _unselect(s)
        s.write(b"* BYE Selected mailbox was deleted, have to disconnect.\r\n")
    await offload(folders.delete_folder, _root(s), name)
    return _ok(tag, "Delete completed.")


async def h_rename(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    ren = cast(Rename, cmd)
    await offload(listing.rename_mailbox, _root(s), ren.old, ren.new)
    return _ok(tag, "Rename completed.")


async def h_subscribe(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    sub = cast(Subscribe, cmd)
    if sub.subscribe:
        await offload(folders.subscribe, _root(s), sub.mailbox)
        return _ok(tag, "Subscribe completed.")
    await offload(folders.unsubscribe, _root(s), sub.mailbox)
    return _ok(tag, "Unsubscribe completed.")


async def h_list(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    lst = cast(ListCmd, cmd)
    lines = await offload(listing.list_lines, _root(s), lst, listing.special_use_table(s.config))
    for line in lines:
        s.write(line)
    return _ok(tag, "Lsub completed." if lst.lsub else "List completed.")


async def h_namespace(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    s.write(b'* NAMESPACE (("" ".")) NIL NIL\r\n')
    return _ok(tag, "Namespace completed.")


async def h_status(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    st = cast(Status, cmd)
    path = folders.folder_path(_root(s), st.mailbox)
    if not folders.is_maildir(path):
        return tagged(tag, "NO", f"Mailbox doesn't exist: {st.mailbox}", "NONEXISTENT")
    view = s.state.selected
    if view is not None and view.store.path == path:
        await s.send_updates()
        line = listing.status_of_view(view, st)
    else:
        line = await offload(listing.status_line, _root(s), st)
    s.write(line)
    return _ok(tag, "Status completed.")


async def h_idle(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    s.write(b"+ idling\r\n")
    await s.drain()
    s.codec.want_line()
    loop = asyncio.get_running_loop()
    last_keepalive = last_check = loop.time()
    while True:
        event = s.codec.next_event()
        if event is not None:
            if isinstance(event, ContinuationLine) and event.data.strip().upper() == b"DONE":
                return _ok(tag, "Idle completed.")
            return tagged(tag, "BAD", "Expected DONE.")
        view = s.state.selected
        silence = loop.time() - s.last_input
        if silence >= s.settings.autologout:
            s.write(b"* BYE Disconnected for inactivity.\r\n")
            s.end_reason = f"Inactivity - no input for {int(silence)} secs"
            raise SessionClosed(s.end_reason)
        outcome = await s.receive(1.0, view.wake if view is not None else None)
        if outcome == "data":
            continue
        now = loop.time()
        if view is not None and (outcome == "wake" or view.looks_changed()
                                 or now - last_check >= s.settings.idle_check_interval):
            view.dirty = True
            last_check = now
            await s.send_updates()
            await s.drain()
        if now - last_keepalive >= s.settings.idle_notify_interval:
            last_keepalive = now
            s.write(b"* OK Still here\r\n")
            await s.drain()


async def h_getquotaroot(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    name = cast(GetQuotaRoot, cmd).mailbox
    path = folders.folder_path(_root(s), name)
    if not folders.is_maildir(path):
        return tagged(tag, "NO", f"Mailbox doesn't exist: {name}", "NONEXISTENT")
    lines = await offload(listing.quota_lines, _root(s), _limits(s), name)
    for line in lines:
        s.write(line)
    return _ok(tag, "Getquotaroot completed.")


async def h_getquota(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    root_name = cast(GetQuota, cmd).root
    if root_name != listing.QUOTA_ROOT.encode():
        return tagged(tag, "NO", "Quota root doesn't exist.")
    lines = await offload(listing.quota_lines, _root(s), _limits(s), None)
    if not lines:
        return tagged(tag, "NO", "Quota root doesn't exist.")
    for line in lines:
        s.write(line)
    return _ok(tag, "Getquota completed.")


async def h_setquota(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    return tagged(tag, "NO", "Quota can be changed only by an administrator.", "NOPERM")


# --- APPEND ---------------------------------------------------------------------------------

@dataclass
class AppendJob:
    """One APPEND's message on its way to the Maildir."""

    tag: bytes
    mailbox: str
    path: Path
    letters: str
    keywords: tuple[str, ...]
    date: float | None
    spool: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=1 << 20))

    async def write(self, data: bytes) -> None:
        self.spool.write(data)

    def discard(self) -> None:
        self.spool.close()


def _split_flags(flags: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """Maildir letters and keywords of a flag list; None when a flag is invalid."""
    letters = ""
    keywords: list[str] = []
    for flag in flags:
        if flag.startswith("\\"):
            letter = LETTER_OF.get(flag)
            if letter is None:
                return None
            letters += letter
        elif valid_keyword(flag):
            if flag not in keywords:
                keywords.append(flag)
        else:
            return None
    return "".join(sorted(set(letters))), tuple(keywords)


async def append_start(s: ImapSession, event: AppendStart) -> AppendJob | None:
    """Decide on APPEND before its message is read (the codec waits for this)."""
    tag, app = event.tag, event.append
    if not allowed(APPEND_STATES, s.state.phase):
        s.codec.reject_append()
        s.write(tagged(tag, "BAD", refusal(APPEND_STATES, s.state.phase)))
        return None
    try:
        path = folders.folder_path(_root(s), app.mailbox)
    except InvalidFolderName as exc:
        s.codec.reject_append()
        s.write(store_error(tag, exc))
        return None
    if not folders.is_maildir(path):
        s.codec.reject_append()
        s.write(tagged(tag, "NO", f"Mailbox doesn't exist: {app.mailbox}", "TRYCREATE"))
        return None
    split = _split_flags(app.flags)
    if split is None:
        s.codec.reject_append()
        s.write(bad_command(tag, "APPEND", "Invalid flags"))
        return None
    job = AppendJob(tag, app.mailbox, path, split[0], split[1],
                    app.date.timestamp() if app.date is not None else None)
    s.write(s.codec.accept_append())
    return job


def _store_for(s: ImapSession, name: str, path: Path) -> Mailbox:
    """The selected mailbox's store when ``path`` is it (it knows the uidlist), else a new one."""
    view = s.state.selected
    if view is not None and view.store.path == path:
        return view.store
    return Mailbox(_root(s), folders.validate_name(name))


def _deliver_append(s: ImapSession, job: AppendJob) -> tuple[int, int]:
    job.spool.seek(0)
    delivered = deliver(job.path, job.spool, flags=job.letters, keywords=job.keywords,
                        quota_limits=_limits(s), internal_date=job.date)
    box = _store_for(s, job.mailbox, job.path)
    (uid,) = box.assign_uids([delivered.filename])  # RFC 4315 APPENDUID, one uidlist record
    return box.uidvalidity, uid


async def append_end(s: ImapSession, job: AppendJob, event: AppendEnd) -> bytes:
    try:
        if event.error is not None:
            return event.error
        uidvalidity, uid = await offload(_deliver_append, s, job)
    finally:
        job.discard()
    notify_path(job.path)
    if s.state.selected is not None:
        s.state.selected.dirty = True
    return _ok(job.tag, "Append completed.", f"APPENDUID {uidvalidity} {uid}")


# --- selected -------------------------------------------------------------------------------

def _targets(view: SelectedMailbox, seqset: SeqSet, uid: bool) -> list[tuple[int, Entry]] | None:
    """(seq, entry) pairs of a set; None when a sequence number is out of range (BAD)."""
    if uid:
        entries = view.entries
        if not entries:
            return []
        largest = view.largest_uid()
        indexes: set[int] = set()
        for lo, hi in seqset.ranges:  # entries are in UID order: find each range by bisection
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            start = bisect.bisect_left(entries, a, key=_uid_key)
            indexes.update(range(start, bisect.bisect_right(entries, b, key=_uid_key)))
        return [(i + 1, entries[i]) for i in sorted(indexes)]
    count = view.exists
    for lo, hi in seqset.ranges:
        for n in (lo, hi):
            if n is not None and n > count:
                return None
    if not count:
        return None
    return [(n, view.entries[n - 1]) for n in seqset.iter(count)]


def _bad_set(tag: bytes, name: str) -> bytes:
    return bad_command(tag, name, "Invalid messageset")


async def h_check(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    return _ok(tag, "Check completed.")


def _uid_key(entry: Entry) -> int:
    return entry.uid


def _expunge(view: SelectedMailbox, uids: SeqSet | None) -> list[bytes]:
    view.refresh(allow_expunge=False)
    largest = view.largest_uid()
    doomed = [e for e in view.entries if "\\Deleted" in flags_of(e.msg)
              and (uids is None or uids.contains(e.uid, largest))]
    if not doomed:
        return []
    view.store.expunge([e.msg for e in doomed])
    return view.remove({e.uid for e in doomed})


async def h_close(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    view = _view(s)
    if not view.readonly:
        await offload(_expunge, view, None)  # RFC 3501 §6.4.2: silently
        view.changed()
    _unselect(s)
    return _ok(tag, "Close completed.")


async def h_unselect(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    _unselect(s)
    return _ok(tag, "Unselect completed.")


async def h_expunge(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    view = _view(s)
    if view.readonly:
        return tagged(tag, "NO", "Mailbox is read-only.")
    await s.send_updates()
    lines = await offload(_expunge, view, cast(Expunge, cmd).uids)
    for line in lines:
        s.write(line)
    if lines:
        view.changed()
    return _ok(tag, "Expunge completed.")


async def h_fetch(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    fetch = cast(Fetch, cmd)
    view = _view(s)
    targets = _targets(view, fetch.seqset, uid)
    if targets is None:
        return _bad_set(tag, "UID FETCH" if uid else "FETCH")
    mark_seen = sets_seen(fetch.attrs) and not view.readonly
    want_date = any(a.name == "INTERNALDATE" for a in fetch.attrs)
    issued = changed = False
    for seq, entry in targets:
        flags_changed = False
        try:
            if mark_seen and "\\Seen" not in flags_of(entry.msg):
                msg = await offload(view.store.set_flags, entry.msg, add="S")
                view.set_entry_flags(entry, msg)
                flags_changed = changed = True
            loaded = (await offload(load_message, view.store, entry.msg)
                      if needs_message(fetch.attrs, entry.msg) else None)
            if want_date:
                _ = entry.msg.internal_date  # the file's mtime, read once here: it may be gone
        except (NoSuchMessage, FileNotFoundError):
            issued = True
            continue
        try:
            items = fetch_items(fetch.attrs, entry.msg, entry.uid,
                                format_flags(entry.reported, entry.recent), flags_changed, loaded)
            for chunk in fetch_response(seq, items):
                s.write(chunk)
                if len(chunk) > 65536:
                    await s.drain()
        finally:
            if loaded is not None:
                loaded.close()
        await s.drain()
    if changed:
        view.changed()
    if issued:
        return tagged(tag, "NO", _EXPUNGEISSUED, "EXPUNGEISSUED")
    return _ok(tag, "Fetch completed.")


def _store_one(view: SelectedMailbox, entry: Entry, st: Store) -> Message:
    current = set(flags_of(entry.msg))
    wanted = set(st.flags)
    if st.mode == "+":
        add, remove = wanted - current, set()
    elif st.mode == "-":
        add, remove = set(), wanted & current
    else:
        add, remove = wanted - current, current - wanted
    if not add and not remove:
        return entry.msg
    return view.store.set_flags(
        entry.msg,
        add="".join(sorted(LETTER_OF[f] for f in add if f in LETTER_OF)),
        remove="".join(sorted(LETTER_OF[f] for f in remove if f in LETTER_OF)),
        add_keywords=[f for f in add if not f.startswith("\\")],
        remove_keywords=[f for f in remove if not f.startswith("\\")])


async def h_store(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    st = cast(Store, cmd)
    view = _view(s)
    if view.readonly:
        return tagged(tag, "NO", "Mailbox is read-only.")
    if _split_flags(st.flags) is None:
        return bad_command(tag, "UID STORE" if uid else "STORE", "Invalid flags")
    targets = _targets(view, st.seqset, uid)
    if targets is None:
        return _bad_set(tag, "UID STORE" if uid else "STORE")
    known = len(view.keywords)
    issued = changed = False
    lines: list[bytes] = []
    for seq, entry in targets:
        try:
            msg = await offload(_store_one, view, entry, st)
        except NoSuchMessage:
            issued = True
            continue
        if msg is not entry.msg:
            changed = True
        view.set_entry_flags(entry, msg)
        if not st.silent:
            lines.append(b"* %d FETCH (FLAGS %s)\r\n" % (seq, format_flags(entry.reported, entry.recent)))
    if len(view.keywords) != known:
        for line in view.flags_lines():
            s.write(line)
    for line in lines:
        s.write(line)
    if changed:
        view.changed()
    if issued:
        return tagged(tag, "NO", _EXPUNGEISSUED, "EXPUNGEISSUED")
    return _ok(tag, "Store completed.")


def _seqset_text(numbers: list[int]) -> str:
    """``1:3,7`` for [1, 2, 3, 7] (RFC 4315 uid-set)."""
    out: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


def _copy_messages(s: ImapSession, view: SelectedMailbox, entries: list[Entry], name: str,
                   path: Path) -> tuple[int, list[int], list[int]]:
    bases: list[tuple[int, str]] = []
    for entry in entries:
        msg = entry.msg
        delivered = deliver(path, view.store.read(msg), flags=msg.flags, keywords=msg.keywords,
                            quota_limits=_limits(s), internal_date=msg.internal_date)
        bases.append((entry.uid, delivered.filename.split(":", 1)[0]))
    box = _store_for(s, name, path)
    dst = box.assign_uids([b for _, b in bases])  # RFC 4315 COPYUID, records appended once
    return box.uidvalidity, [u for u, _ in bases], dst


async def h_copy(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    cp = cast(Copy, cmd)
    view = _view(s)
    word = "MOVE" if cp.move else "COPY"
    targets = _targets(view, cp.seqset, uid)
    if targets is None:
        return _bad_set(tag, ("UID " if uid else "") + word)
    path = folders.folder_path(_root(s), cp.mailbox)
    if not folders.is_maildir(path):
        return tagged(tag, "NO", f"Mailbox doesn't exist: {cp.mailbox}", "TRYCREATE")
    if cp.move and view.readonly:
        return tagged(tag, "NO", "Mailbox is read-only.")
    entries = [e for _, e in targets]
    if not entries:
        return _ok(tag, "No messages found.")
    try:
        uidvalidity, src, dst = await offload(_copy_messages, s, view, entries, cp.mailbox, path)
    except NoSuchMessage:
        return tagged(tag, "NO", _EXPUNGEISSUED, "EXPUNGEISSUED")
    notify_path(path)
    code = f"COPYUID {uidvalidity} {_seqset_text(src)} {_seqset_text(dst)}"
    if not cp.move:
        return _ok(tag, "Copy completed.", code)
    s.write(b"* OK [" + code.encode() + b"] Moved UIDs.\r\n")
    await offload(view.store.expunge, [e.msg for e in entries])
    for line in view.remove({e.uid for e in entries}):
        s.write(line)
    view.changed()
    return _ok(tag, "Move completed.")


def _search(view: SelectedMailbox, search: Search) -> list[int]:
    loaded: list[object] = []

    def loader(msg: Message) -> Callable[[], object]:
        def load() -> object:
            item = load_message(view.store, msg)
            loaded.append(item)
            return item.parsed
        return load

    ctx = Context(view.exists, view.largest_uid(), search.charset)
    found: list[int] = []
    try:
        for seq, entry in enumerate(view.entries, 1):
            flags = frozenset(f for f in flags_of(entry.msg) if f.startswith("\\"))
            if entry.recent:
                flags |= {"\\Recent"}
            try:
                cand = Candidate(seq, entry.uid, flags, frozenset(entry.msg.keywords),
                                 entry.msg.internal_date, 0, loader(entry.msg))  # type: ignore[arg-type]
                cand.size = (entry.msg.vsize if entry.msg.vsize is not None
                             else rfc822_size(entry.msg, load_message(view.store, entry.msg)))
                if matches(search.key, cand, ctx):
                    found.append(entry.uid if search.uid else seq)
            except (NoSuchMessage, FileNotFoundError):
                continue
    finally:
        for item in loaded:
            item.close()  # type: ignore[attr-defined]
    return found


async def h_search(s: ImapSession, tag: bytes, cmd: Command, uid: bool) -> bytes:
    search = cast(Search, cmd)
    view = _view(s)
    try:
        found = await offload(_search, view, search)
    except BadCharset:
        return tagged(tag, "NO", "Unsupported charset", "BADCHARSET (UTF-8)")
    s.write(b"* SEARCH" + b"".join(b" %d" % n for n in found) + b"\r\n")
    return _ok(tag, "Search completed.")


#: Every command's handler (the names of mailhorn.imap.commands.COMMANDS).
HANDLERS: dict[str, Handler] = {
    "CAPABILITY": h_capability,
    "NOOP": h_noop,
    "LOGOUT": h_logout,
    "ID": h_id,
    "STARTTLS": h_starttls,
    "AUTHENTICATE": h_authenticate,
    "LOGIN": h_login,
    "ENABLE": h_enable,
    "SELECT": h_select,
    "EXAMINE": h_select,
    "CREATE": h_create,
    "DELETE": h_delete,
    "RENAME": h_rename,
    "SUBSCRIBE": h_subscribe,
    "UNSUBSCRIBE": h_subscribe,
    "LIST": h_list,
    "LSUB": h_list,
    "STATUS": h_status,
    "NAMESPACE": h_namespace,
    "IDLE": h_idle,
    "GETQUOTA": h_getquota,
    "GETQUOTAROOT": h_getquotaroot,
    "SETQUOTA": h_setquota,
    "CHECK": h_check,
    "CLOSE": h_close,
    "UNSELECT": h_unselect,
    "EXPUNGE": h_expunge,
    "SEARCH": h_search,
    "FETCH": h_fetch,
    "STORE": h_store,
    "COPY": h_copy,
    "MOVE": h_copy,
}

__all__ = ["AppendJob", "HANDLERS", "Handler", "append_end", "append_start"]
