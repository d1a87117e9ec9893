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
      seconds exits.

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

import asyncio
import errno
import json
import os
import pwd
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mailhorn import privsep
from mailhorn.config.load import Config
from mailhorn.delivery import mbox
from mailhorn.mailstore import maildir, quota
from mailhorn.mailstore.errors import DiskFull, LockTimeout, QuotaExceeded

#: Seconds an idle helper waits for a request before it exits.
HELPER_IDLE = 600.0
#: Idle helpers kept per identity.
_IDLE_PER_IDENTITY = 4
#: The most bytes read_file returns (.forward and :include: files).
READ_LIMIT = 1024 * 1024

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
    path = Path(str(params["path"]))
    size = int(params.get("size", 0))
    size_limit = int(params.get("size_limit", 0))
    if size_limit > 0 and size > size_limit:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    mode = str(params.get("quota", "none"))
    limit = params.get("limit")
    if mode == "maildirsize" and limit:
        done = maildir.deliver(path, source, quota_limits=quota.QuotaLimits(int(limit)),
                               enforce_quota=True, size_hint=size)
    elif mode == "scan" and limit:
        used, count = (quota.count_usage(quota.quota_root(path)) if params.get("extended")
                       else _inbox_usage(path))
        if used + size > int(limit):
            raise QuotaExceeded(f"Quota exceeded: {used}+{size} bytes of {limit}", used_bytes=used,
                                used_count=count, limit_bytes=int(limit), limit_count=None)
        done = maildir.deliver(path, source, enforce_quota=False)
    else:
        done = maildir.deliver(path, source, size_hint=size)
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


OPERATIONS: dict[str, Callable[[Params, Iterable[bytes]], Result]] = {
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
        frames = _read_frames(stdin)
        try:
            op = OPERATIONS[str(request["op"])]
            answer: dict[str, Any] = {"ok": op(dict(request.get("params") or {}), frames)}
        except HelperError:
            raise
        except Exception as exc:  # every operation error goes back to the caller
            answer = {"error": encode_error(exc)}
        for _ in frames:  # the rest of the content, after an early error
            pass
        stdout.write(json.dumps(answer).encode() + b"\n")
        stdout.flush()


def main(argv: list[str]) -> int:
    """``python -m mailhorn.delivery.privs UID GID GROUPS``: drop privileges, then serve."""
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

class _Helper:
    """A helper this process started (it is root)."""

    def __init__(self, identity: Identity) -> None:
        groups = ",".join(str(g) for g in identity.groups())
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailhorn.delivery.privs", str(identity.uid), str(identity.gid), groups],
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


class _SpawnedHelper:
    """A helper the spawner started for a worker running as ``mail_owner``."""

    def __init__(self, identity: Identity) -> None:
        try:
            self.sock = privsep.start_helper_sync(identity.target())
        except privsep.Refused as exc:
            raise OSError(errno.EPERM, f"delivery as {identity.user} refused: {exc}") from exc
        except privsep.SpawnError as exc:
            raise HelperError(str(exc)) from exc
        self.stdin: IO[bytes] = self.sock.makefile("wb")
        self.stdout: IO[bytes] = self.sock.makefile("rb")

    def alive(self) -> bool:
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not ready  # between requests a helper says nothing; readable means it closed

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
_pool_lock = threading.Lock()


def _take(identity: Identity) -> _AnyHelper:
    key = (identity.uid, identity.gid, tuple(identity.groups()))
    with _pool_lock:
        idle = _idle.get(key, [])
        while idle:
            helper = idle.pop()
            if helper.alive():
                return helper
            helper.close()
    return _SpawnedHelper(identity) if privsep.active() else _Helper(identity)


def _give_back(identity: Identity, helper: _AnyHelper) -> None:
    key = (identity.uid, identity.gid, tuple(identity.groups()))
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
    for helper in helpers:
        helper.close()


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


async def run_as(identity: Identity | None, op: str, params: Params,
                 pieces: Callable[[], Iterable[bytes]] | None = None) -> Result:
    """:func:`run_sync` in a worker thread, so the event loop never waits on disk."""
    return await asyncio.to_thread(run_sync, identity, op, params, pieces)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
