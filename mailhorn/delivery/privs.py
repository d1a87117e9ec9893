"""Running a delivery step with the recipient's privileges.

What it does
    Postfix's local(8) and virtual(8) write mailboxes, Maildirs and files
    with the uid and gid of the recipient (or of ``default_privs``, or the
    ``virtual_uid_maps`` owner), never as root (design.md §3). mailhorn runs
    many deliveries at once in threads, where changing the process's uid
    is not an option, so each step that touches the recipient's files is one
    *operation* from :data:`OPERATIONS` (``maildir``, ``mbox``,
    ``read_file``), run:

    * in a worker thread of this process when no switch is needed
      (mailhorn runs unprivileged and delivers as itself, or the identity
      is the process's own);
    * else in a helper process running as that uid/gid and supplementary
      groups (setgroups, setgid, setuid, in that order, umask 077) before it
      reads its first request, and then serving requests one at a time:
      started by this process with ``python -m mailhorn.delivery.privs UID
      GID GROUPS`` when it is root, or by the spawner
      (:mod:`mailhorn.privsep`) for a worker that runs as ``mail_owner``,
      which then speaks to the helper over a socketpair. Helpers are kept
      per identity and reused; one that stays idle for :data:`HELPER_IDLE`
      seconds exits. A spawned helper serves many deliveries at once: the
      socketpair it was started with is its *control* socket, over which
      the worker passes it one end of a new socketpair (``SCM_RIGHTS``) per
      concurrent caller; each such *channel* is served by a thread of the
      helper, one request at a time, so one process per identity does the
      work that would otherwise take one process per concurrent delivery.

    Mail to a ``mail_spool_directory`` mailbox is written by root, not by
    the user (the spool is root's, as for Postfix's local(8)): in-process
    when this process is root or unprivileged, and for a worker running as
    ``mail_owner`` by a root child of the spawner that serves just that one
    ``mbox`` operation, with the parameters the spawner worked out itself
    (:func:`append_spool`, :func:`serve_one`).

    Protocol on the helper's stdin/stdout: one JSON line
    ``{"op": NAME, "params": {...}}``, then the content as frames
    ``<length>\\n<bytes>`` ended by ``0\\n``; the answer is one JSON line
    ``{"ok": {...}}`` or ``{"error": {...}}``. Errors travel by kind and
    are raised again in the caller as the same exception types
    (``OSError`` with its errno, ``DiskFull``, ``QuotaExceeded``,
    ``LockTimeout``, ``MboxLockError``, ``MboxFileError``).

Parameters read
    ``default_privs`` (:func:`default_privs_identity`).

Errors
    Those of the operations; :class:`HelperError` when a helper dies or
    speaks out of turn (the caller defers the delivery).
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, IO

from mailhorn import privsep
from mailhorn.config.load import Config
from mailhorn.delivery import mbox
from mailhorn.fdwait import readable
from mailhorn.iopool import offload
from mailhorn.mailstore import maildir, quota, writer
from mailhorn.mailstore.errors import DiskFull, LockTimeout, QuotaExceeded

#: Seconds an idle helper waits for a request before it exits.
HELPER_IDLE: Final = 600.0
#: Idle helpers kept per identity.
_IDLE_PER_IDENTITY: Final = 4
#: The most bytes read_file returns (.forward and :include: files).
READ_LIMIT: Final = 1024 * 1024

Params = dict[str, Any]
Result = dict[str, Any]


class HelperError(Exception):
    """A privilege helper failed outside the operation (died, bad answer)."""


@dataclass(frozen=True)
class Identity:
    """Whom a delivery runs as: login name, uid, gid, home directory, shell."""

    user: str
    uid: int
    gid: int
    home: str = "/"
    shell: str = "/bin/sh"
    supplementary: tuple[int, ...] | None = None
    """Supplementary groups; None: those of the login name (virtual(8) users have only ``gid``)."""
    kind: str = "local"
    """Which rule the spawner checks (:class:`mailhorn.privsep.Target`): ``local`` or ``virtual``."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, user: str, uid: int, gid: int, home: str = "/", shell: str = "/bin/sh",
                 supplementary: tuple[int, ...] | None = None, kind: str = "local") -> None:
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "uid", uid)
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "shell", shell)
        object.__setattr__(self, "supplementary", supplementary)
        object.__setattr__(self, "kind", kind)

    @classmethod
    def from_passwd(cls, pw: pwd.struct_passwd) -> Identity:
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell)

    def groups(self) -> list[int]:
        """Supplementary groups of the login name (just the gid when it has no account)."""
        if self.supplementary is not None:
            return sorted(set(self.supplementary) | {self.gid})
        try:
            return sorted(set(os.getgrouplist(self.user, self.gid)))
        except (OSError, KeyError):
            return [self.gid]

    def target(self) -> privsep.Target:
        """This identity as a spawner request names it."""
        return privsep.Target(self.kind, self.user, self.uid, self.gid, tuple(self.groups()), self.home or "/")


def lookup_user(name: str) -> Identity | None:
    """The account of a login name, or None."""
    try:
        return Identity.from_passwd(pwd.getpwnam(name))
    except (KeyError, ValueError):
        return None


def current_identity() -> Identity:
    """The identity this process runs as."""
    uid = os.geteuid()
    try:
        return Identity.from_passwd(pwd.getpwuid(uid))
    except KeyError:
        return Identity(str(uid), uid, os.getegid())


def default_privs_identity(config: Config) -> Identity:
    """``default_privs``: the account for deliveries on behalf of root-owned aliases."""
    name = config.get("default_privs") or "nobody"
    found = lookup_user(name)
    if found is None:
        raise HelperError(f"unknown default_privs user name value: {name}")
    if found.uid == 0:
        raise HelperError("default_privs: the privileged user is not allowed")
    return found


def switching_needed(identity: Identity | None) -> bool:
    """Whether running as ``identity`` needs a helper process (we are root, or have a spawner)."""
    return identity is not None and identity.uid != os.geteuid() and (os.geteuid() == 0 or privsep.active())


# -- the operations -------------------------------------------------------------------------

def _inbox_usage(root: Path) -> tuple[int, int]:
    """Bytes and messages in ``new/`` and ``cur/`` of one Maildir, folders left out."""
    total = count = 0
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(root / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            info = maildir.parse_name(entry.name)
            if info.size is not None:
                total += info.size
            else:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
            count += 1
    return total, count


def maildir_operation(params: Params, source: Iterable[bytes]) -> Result:
    """Deliver into a Maildir with the quota policy the caller chose.

    ``quota``: ``maildirsize`` (Maildir++ with ``limit`` bytes, the file
    created and kept up to date), ``scan`` (count the files, no file
    written; ``extended`` counts the folders too), ``none`` (obey a
    ``maildirsize`` file that is already there, as Dovecot does).
    ``size_limit`` refuses a message file larger than it (EFBIG).
    """
    path = str(params["path"])  # a string: pathlib parsing is costly on this path
    size = int(params.get("size", 0))
    size_limit = int(params.get("size_limit", 0))
    if size_limit > 0 and size > size_limit:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    mode = str(params.get("quota", "none"))
    limit = params.get("limit")
    if mode == "maildirsize" and limit:
        done = writer.deliver(path, source, quota_limits=quota.QuotaLimits(int(limit)),
                               enforce_quota=True, size_hint=size)
    elif mode == "scan" and limit:
        used, count = (quota.count_usage(quota.quota_root(Path(path))) if params.get("extended")
                       else _inbox_usage(Path(path)))
        if used + size > int(limit):
            raise QuotaExceeded(f"Quota exceeded: {used}+{size} bytes of {limit}", used_bytes=used,
                                used_count=count, limit_bytes=int(limit), limit_count=None)
        done = writer.deliver(path, source, enforce_quota=False)
    else:
        done = writer.deliver(path, source, size_hint=size)
    return {"path": str(done.path), "size": done.size}


def _mbox_operation(params: Params, source: Iterable[bytes]) -> Result:
    locks = mbox.LockSettings(tuple(params.get("locks", ("fcntl", "dotlock"))),
                              int(params.get("attempts", 20)), float(params.get("delay", 1.0)),
                              float(params.get("stale", 500.0)))
    owner = params.get("owner")
    written = mbox.append(str(params["path"]), source, size_limit=int(params.get("size_limit", 0)),
                          locks=locks, owner=(int(owner[0]), int(owner[1])) if owner else None,
                          require_owner=params.get("require_owner"))
    return {"size": written}


def _read_file_operation(params: Params, source: Iterable[bytes]) -> Result:
    """Read a small text file (``.forward``, ``:include:``) with this identity's rights."""
    for _ in source:
        pass
    path = str(params["path"])
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000):
            raise OSError(errno.EINVAL, "not a regular file", path)
        data = os.read(fd, READ_LIMIT)
    finally:
        os.close(fd)
    return {"text": data.decode("utf-8", "surrogateescape"), "uid": st.st_uid, "mode": st.st_mode}


def _exists_operation(params: Params, source: Iterable[bytes]) -> Result:
    for _ in source:
        pass
    return {"exists": os.path.lexists(str(params["path"]))}


OPERATIONS: Final[dict[str, Callable[[Params, Iterable[bytes]], Result]]] = {
    "maildir": maildir_operation,
    "mbox": _mbox_operation,
    "read_file": _read_file_operation,
    "exists": _exists_operation,
}


# -- errors across the pipe -----------------------------------------------------------------

def encode_error(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON-safe data (see :func:`decode_error`)."""
    if isinstance(exc, QuotaExceeded):
        return {"kind": "quota", "message": str(exc), "used_bytes": exc.used_bytes,
                "used_count": exc.used_count, "limit_bytes": exc.limit_bytes,
                "limit_count": exc.limit_count}
    if isinstance(exc, DiskFull):
        return {"kind": "diskfull", "message": str(exc)}
    if isinstance(exc, LockTimeout):
        return {"kind": "locktimeout", "message": str(exc)}
    if isinstance(exc, mbox.MboxLockError):
        return {"kind": "mboxlock", "message": str(exc)}
    if isinstance(exc, mbox.MboxFileError):
        return {"kind": "mboxfile", "message": str(exc), "dsn": exc.dsn}
    if isinstance(exc, OSError):
        return {"kind": "os", "errno": exc.errno or errno.EIO, "strerror": exc.strerror or str(exc),
                "filename": exc.filename if isinstance(exc.filename, str) else None}
    return {"kind": "other", "message": f"{type(exc).__name__}: {exc}"}


def decode_error(data: dict[str, Any]) -> Exception:
    """The exception :func:`encode_error` described."""
    kind = data.get("kind")
    message = str(data.get("message", ""))
    if kind == "quota":
        return QuotaExceeded(message, used_bytes=int(data["used_bytes"]), used_count=int(data["used_count"]),
                             limit_bytes=data.get("limit_bytes"), limit_count=data.get("limit_count"))
    if kind == "diskfull":
        return DiskFull(message)
    if kind == "locktimeout":
        return LockTimeout(message)
    if kind == "mboxlock":
        return mbox.MboxLockError(message)
    if kind == "mboxfile":
        return mbox.MboxFileError(message, str(data.get("dsn", "5.2.0")))
    if kind == "os":
        return OSError(int(data["errno"]), str(data["strerror"]), data.get("filename"))
    return HelperError(message)


# -- the helper process ---------------------------------------------------------------------

def _read_frames(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        line = stream.readline(32)
        if not line.endswith(b"\n"):
            raise HelperError("truncated frame")
        length = int(line)
        if length == 0:
            return
        data = stream.read(length)
        if len(data) != length:
            raise HelperError("truncated frame")
        yield data


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The helper's loop: one request at a time until stdin closes or stays idle."""
    while True:
        ready, _, _ = select.select([stdin], [], [], HELPER_IDLE)
        if not ready:
            return
        line = stdin.readline(1024 * 1024)
        if not line:
            return
        request = json.loads(line)
        _perform(stdin, stdout, str(request["op"]), dict(request.get("params") or {}))


def _perform(stdin: IO[bytes], stdout: IO[bytes], name: str, params: Params) -> None:
    """Run one operation on the content frames that follow and write its answer line."""
    frames = _read_frames(stdin)
    try:
        op = OPERATIONS[name]
        answer: dict[str, Any] = {"ok": op(params, frames)}
    except HelperError:
        raise
    except Exception as exc:  # every operation error goes back to the caller
        answer = {"error": encode_error(exc)}
    for _ in frames:  # the rest of the content, after an early error
        pass
    stdout.write(json.dumps(answer).encode() + b"\n")
    stdout.flush()


def serve_one(channel: socket.socket, name: str, params: Params) -> None:
    """Serve exactly one operation whose parameters the server chose (the spawner's
    ``spool`` child): the peer sends only the content frames and reads the answer.
    Each read waits at most :data:`HELPER_IDLE` seconds."""
    channel.settimeout(HELPER_IDLE)
    with channel.makefile("rb") as reader, channel.makefile("wb") as writer:
        _perform(reader, writer, name, params)


def serve_mux(control: socket.socket) -> None:
    """A spawned helper's loop: serve each channel passed over ``control`` in a thread.

    Ends when ``control`` closes (the worker is gone or let the helper go), or
    when no channel is open and nothing has come for :data:`HELPER_IDLE` seconds;
    a delivery still running on a channel is finished first (an mbox append
    cut short would leave half a message).
    """
    channels: list[threading.Thread] = []
    while True:
        channels = [t for t in channels if t.is_alive()]
        ready, _, _ = select.select([control], [], [], HELPER_IDLE)
        if not ready:
            if channels:
                continue
            return
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 16, 8)
        except OSError:
            message, fds = b"", []
        if not message and not fds:
            for thread in channels:
                thread.join()
            return
        for fd in fds:
            thread = threading.Thread(target=_serve_channel, args=(fd,))
            thread.start()
            channels.append(thread)


def _serve_channel(fd: int) -> None:
    """One channel of :func:`serve_mux`: requests one at a time until it closes."""
    try:
        with os.fdopen(fd, "rb") as reader, os.fdopen(os.dup(fd), "wb") as writer:
            serve(reader, writer)
    except (HelperError, OSError, ValueError):
        pass  # the caller sees the channel close and defers that delivery


def main(argv: list[str]) -> int:
    """The helper program (``python -c _HELPER_MAIN UID GID GROUPS``): drop privileges, then serve."""
    uid, gid = int(argv[0]), int(argv[1])
    groups = [int(g) for g in argv[2].split(",") if g] if len(argv) > 2 else [gid]
    if uid == 0:
        print("privs: refusing to run deliveries as root", file=sys.stderr)
        return 1
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        return 1
    os.umask(0o077)
    os.chdir("/")
    serve(sys.stdin.buffer, sys.stdout.buffer)
    return 0


# -- the caller's side ----------------------------------------------------------------------

#: The helper's program: :func:`main` with the arguments after ``-c``.
_HELPER_MAIN: Final = "import sys; from mailhorn.delivery.privs import main; sys.exit(main(sys.argv[1:]))"


class _Helper:
    """A helper this process started (it is root)."""

    def __init__(self, identity: Identity) -> None:
        groups = ",".join(str(g) for g in identity.groups())
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            # -c, not -m: runpy cannot run this module as __main__ once it is
            # an extension module (scripts/build_native.py).
            [sys.executable, "-c", _HELPER_MAIN, str(identity.uid), str(identity.gid), groups],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/", close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, op: str, params: Params, pieces: Iterable[bytes]) -> Result:
        return _call(self.stdin, self.stdout, op, params, pieces)

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _Mux:
    """The control socket of one spawned helper process (see :func:`serve_mux`)."""

    def __init__(self, identity: Identity) -> None:
        try:
            self.control = privsep.start_helper_sync(identity.target())
        except privsep.Refused as exc:
            raise OSError(errno.EPERM, f"delivery as {identity.user} refused: {exc}") from exc
        except privsep.SpawnError as exc:
            raise HelperError(str(exc)) from exc
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return _socket_open(self.control)

    def channel(self) -> socket.socket:
        """A new channel to the helper (one end of a socketpair; the helper has the other)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                socket.send_fds(self.control, [b"c"], [theirs.fileno()])
        except OSError as exc:
            ours.close()
            raise HelperError("delivery helper exited") from exc
        finally:
            theirs.close()
        return ours

    def close(self) -> None:
        self.control.close()


def _socket_open(sock: socket.socket) -> bool:
    """Whether the peer still listens: between requests a helper says nothing,
    so a readable socket means it closed."""
    try:
        return not readable(sock.fileno(), 0)
    except OSError:
        return False


_muxes: dict[tuple[int, int, tuple[int, ...]], _Mux] = {}
_pool_lock = threading.Lock()


class _SpawnedHelper:
    """A channel to the helper the spawner started for a worker running as ``mail_owner``."""

    def __init__(self, identity: Identity) -> None:
        key = _key(identity)
        with _pool_lock:
            mux = _muxes.get(key)
            if mux is not None and not mux.alive():
                mux.close()
                mux = None
            if mux is None:
                mux = _muxes[key] = _Mux(identity)
        self.sock = mux.channel()
        self.stdin: IO[bytes] = self.sock.makefile("wb")
        self.stdout: IO[bytes] = self.sock.makefile("rb")

    def alive(self) -> bool:
        return _socket_open(self.sock)

    def call(self, op: str, params: Params, pieces: Iterable[bytes]) -> Result:
        return _call(self.stdin, self.stdout, op, params, pieces)

    def close(self) -> None:
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.sock.close()


def _call(stdin: IO[bytes], stdout: IO[bytes], op: str, params: Params, pieces: Iterable[bytes]) -> Result:
    """One request to a helper and its answer."""
    try:
        stdin.write(json.dumps({"op": op, "params": params}).encode() + b"\n")
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise HelperError("delivery helper exited") from exc
    return _content_and_answer(stdin, stdout, pieces)


def _content_and_answer(stdin: IO[bytes], stdout: IO[bytes], pieces: Iterable[bytes]) -> Result:
    """Send the content frames of a request, then read its answer."""
    try:
        for piece in pieces:
            if piece:
                stdin.write(b"%d\n" % len(piece))
                stdin.write(piece)
        stdin.write(b"0\n")
        stdin.flush()
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise HelperError("delivery helper exited") from exc
    line = stdout.readline()
    if not line:
        raise HelperError("delivery helper exited")
    answer = json.loads(line)
    if "ok" in answer:
        return dict(answer["ok"])
    raise decode_error(dict(answer["error"]))


_AnyHelper = _Helper | _SpawnedHelper
_idle: dict[tuple[int, int, tuple[int, ...]], list[_AnyHelper]] = {}


def _key(identity: Identity) -> tuple[int, int, tuple[int, ...]]:
    return (identity.uid, identity.gid, tuple(identity.groups()))


def _take(identity: Identity) -> _AnyHelper:
    key = _key(identity)
    with _pool_lock:
        idle = _idle.get(key, [])
        while idle:
            helper = idle.pop()
            if helper.alive():
                return helper
            helper.close()
    return _SpawnedHelper(identity) if privsep.active() else _Helper(identity)


def _give_back(identity: Identity, helper: _AnyHelper) -> None:
    key = _key(identity)
    with _pool_lock:
        idle = _idle.setdefault(key, [])
        if len(idle) < _IDLE_PER_IDENTITY:
            idle.append(helper)
            return
    helper.close()


def shutdown_helpers() -> None:
    """Stop every idle helper (at shutdown, and between tests)."""
    with _pool_lock:
        helpers = [h for group in _idle.values() for h in group]
        _idle.clear()
        muxes = list(_muxes.values())
        _muxes.clear()
    for helper in helpers:
        helper.close()
    for mux in muxes:
        mux.close()


def run_sync(identity: Identity | None, op: str, params: Params,
             pieces: Callable[[], Iterable[bytes]] | None = None) -> Result:
    """Run one operation as ``identity`` (None: as this process); blocking."""
    source: Iterable[bytes] = pieces() if pieces is not None else ()
    if not switching_needed(identity):
        return OPERATIONS[op](params, source)
    assert identity is not None
    helper = _take(identity)
    try:
        result = helper.call(op, params, source)
    except HelperError:
        helper.close()
        raise
    except BaseException:
        _give_back(identity, helper)  # an operation error: the helper is still in step
        raise
    _give_back(identity, helper)
    return result


def _spool_sync(owner: Identity, service: str, params: Params,
                pieces: Callable[[], Iterable[bytes]]) -> Result:
    if not privsep.active():
        return {**run_sync(None, "mbox", params, pieces), "path": str(params["path"])}
    try:
        sock, path = privsep.start_spool_sync(owner.user, owner.uid, owner.gid, service)
    except privsep.SpawnError as exc:  # a refusal too: mail waits rather than bounces
        raise HelperError(f"mailbox delivery for {owner.user}: {exc}") from exc
    with sock, sock.makefile("wb") as stdin, sock.makefile("rb") as stdout:
        result = _content_and_answer(stdin, stdout, pieces())
    return {**result, "path": path}


async def append_spool(owner: Identity, service: str, params: Params,
                       pieces: Callable[[], Iterable[bytes]]) -> Result:
    """Append to ``owner``'s ``mail_spool_directory`` mailbox; ``size`` and ``path`` written.

    In-process (``params`` as given, ``owner`` in them when we are root),
    except under a root master (:func:`mailhorn.privsep.active`): the worker
    may not write the spool, so the spawner does, with the path and the
    locking of *its* configuration (and the ``-o`` settings of ``service``);
    ``params`` are then not sent at all.
    """
    return await offload(_spool_sync, owner, service, params, pieces)


async def run_as(identity: Identity | None, op: str, params: Params,
                 pieces: Callable[[], Iterable[bytes]] | None = None) -> Result:
    """:func:`run_sync` in a worker thread, so the event loop never waits on disk."""
    return await offload(run_sync, identity, op, params, pieces)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
